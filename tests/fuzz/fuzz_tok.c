/* tests/fuzz/fuzz_tok.c: random bytes (invalid UTF-8, NULs, half special tokens) through
 * tok_encode with and without special parsing, with a too-small and an exact output buffer,
 * then tok_decode, tok_piece and streaming through tok_utf8_complete.
 *
 * The vocab is loaded once: $KILN_FUZZ_VOCAB, else ../shared/vocab/ggml-vocab-llama3.gguf.
 * Checks: the two encodes agree; decode(encode(s)) == s without special parsing (true for
 * byte-level BPE without NFC and for SentencePiece with byte fallback; set
 * KILN_FUZZ_NO_ROUNDTRIP=1 for other vocabs); streaming never holds back more than 3 bytes
 * and reproduces decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tok *T;
static int roundtrip = 1;

static void load_once(void)
{
    if (T) return;
    const char *path = getenv("KILN_FUZZ_VOCAB");
    if (!path) path = "../shared/vocab/ggml-vocab-llama3.gguf";
    if (getenv("KILN_FUZZ_NO_ROUNDTRIP")) roundtrip = 0;
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, path, &err) || tok_load(&T, f, &err)) {
        fprintf(stderr, "fuzz_tok: %s\n", err.msg);
        abort();
    }
    gguf_close(f);
}

static void check(const char *s, size_t n, unsigned flags)
{
    int32_t small[4];
    int64_t cnt = tok_encode(T, s, n, flags, small, 4);
    if (cnt < 0) abort();
    int32_t *ids = malloc(sizeof *ids * (size_t)(cnt + 1));
    if (tok_encode(T, s, n, flags, ids, cnt) != cnt) abort();
    for (int64_t i = 0; i < cnt && i < 4; i++)
        if (ids[i] != small[i]) abort();
    for (int64_t i = 0; i < cnt; i++)
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(T)) abort();

    size_t need = tok_decode(T, ids, cnt, 0, NULL, 0);
    char *dec = malloc(need + 1);
    if (tok_decode(T, ids, cnt, 0, dec, need + 1) != need || dec[need]) abort();
    if (roundtrip && !(flags & TOK_PARSE_SPECIAL) && (need != n || memcmp(dec, s, n))) abort();

    /* streaming: pieces one at a time, never more than 3 bytes held back */
    char *acc = malloc(need + 64), pend[1100];
    size_t an = 0, pn = 0;
    for (int64_t i = 0; i < cnt; i++) {
        char p[1024];
        size_t l = tok_piece(T, ids[i], 0, p, sizeof p);
        if (l > sizeof p || pn + l > sizeof pend) abort();
        memcpy(pend + pn, p, l);
        pn += l;
        size_t ok = tok_utf8_complete(pend, pn);
        if (ok > pn || pn - ok > 3) abort();
        if (an + ok > need + 1) abort();
        memcpy(acc + an, pend, ok);
        an += ok;
        memmove(pend, pend + ok, pn - ok);
        pn -= ok;
    }
    memcpy(acc + an, pend, pn);
    an += pn;
    size_t skip = (an == need + 1 && acc[0] == ' ') ? 1 : 0; /* SentencePiece's prefix space */
    if (an - skip != need || memcmp(acc + skip, dec, need)) abort();
    free(acc);
    free(dec);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    if (size > 1 << 16) return 0;
    check((const char *)data, size, 0);
    check((const char *)data, size, TOK_PARSE_SPECIAL | TOK_ADD_BOS);
    return 0;
}
