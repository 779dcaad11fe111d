/* tests/fuzz/fuzz_grammar_walk.h: what the grammar fuzz targets do with a grammar that
 * compiled: walk a small vocabulary through it, checking that every masked token is
 * accepted, that the mask count matches its bits, and that the end token is allowed exactly
 * when the output may end. pick drives the walk. */
#ifndef KILN_FUZZ_GRAMMAR_WALK_H
#define KILN_FUZZ_GRAMMAR_WALK_H
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

/* Small limits, so one input takes milliseconds. */
static void fuzz_grammar_limits(gram_limits *lim)
{
    gram_limits_defaults(lim);
    lim->max_ms = 200;
    lim->max_states = 20000;
    lim->max_tables = (size_t)4 << 20;
}

static void fuzz_grammar_walk(gram *g, const uint8_t *pick, size_t n_pick)
{
    static const char *pieces[] = {"{", "}",  "\"", "a",    ":",    ",",        "[", "]",
                                   "0", "1",  " ",  "true", "null", "\"a\"",    "-", ".",
                                   "e", "\n", "b",  "(",    ")",    "\xc3\xa9", "",  "x"};
    enum { NV = sizeof pieces / sizeof *pieces };
    uint32_t len[NV];
    bool end[NV] = {0};
    for (int i = 0; i < NV; i++)
        len[i] = (uint32_t)strlen(pieces[i]);
    end[NV - 2] = true; /* the empty piece is the end token */
    kl_err err;
    gram_vocab *v;
    if (gram_vocab_create(&v, NV, pieces, len, end, &err)) return;
    gram_matcher *m;
    if (gram_matcher_create(&m, g, v, &err)) {
        gram_vocab_free(v);
        return;
    }
    uint32_t mask[1];
    for (size_t k = 0; k < 64; k++) {
        int32_t n = gram_matcher_mask(m, mask);
        if (n != __builtin_popcount(mask[0])) abort();
        if (gram_mask_has(mask, NV - 2) != gram_matcher_can_end(m)) abort();
        if (!n) break;
        int want = (int)(k < n_pick ? pick[k] : 0) % n, t = 0;
        for (;; t++)
            if (gram_mask_has(mask, t) && want-- == 0) break;
        if (!gram_matcher_accept(m, t)) abort();
        if (t == NV - 2) break;
    }
    gram_matcher_free(m);
    gram_vocab_free(v);
}
#endif
