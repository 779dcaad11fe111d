/* tests/fuzz/fuzz_tok.c: random bytes (invalid UTF-8, NULs, half special tokens) through
 * tok_encode with and without special parsing, with a too-small and an exact output buffer,
 * then tok_decode, tok_piece and streaming through tok_utf8_complete.
 *
 * Inputs that start with "GGUF" are instead loaded as a vocab file (hostile metadata: bad
 * ids, merges, types, pre names) and, when tok_load accepts them, used on a fixed text.
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

/* data is a GGUF file: tok_load must refuse it cleanly or give a usable tokenizer. */
static void fuzz_load(const uint8_t *data, size_t size)
{
    gguf_file *f;
    kl_err err = {0};
    if (gguf_open_mem(&f, data, size, "fuzz.gguf", &err)) return;
    tok *t = NULL;
    if (tok_load(&t, f, &err) == 0) {
        static const char text[] = "Hello, world! <|eot_id|> \xff\xfe caf\xc3\xa9 \xe4\xb8\xad 123";
        int32_t ids[256];
        int64_t n = tok_encode(t, text, sizeof text - 1, TOK_PARSE_SPECIAL | TOK_ADD_BOS, ids, 256);
        if (n < 0 || n > 256) abort();
        for (int64_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok_n_vocab(t)) abort();
        char out[1024];
        tok_decode(t, ids, n, TOK_RENDER_SPECIAL, out, sizeof out);
        for (int32_t id = 0; id < tok_n_vocab(t) && id < 64; id++) {
            char p[64];
            tok_piece(t, id, TOK_RENDER_SPECIAL, p, sizeof p);
            (void)tok_is_eog(t, id);
        }
        tok_free(t);
    } else if (!err.msg[0]) {
        abort(); /* a refusal always says why */
    }
    gguf_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && !memcmp(data, "GGUF", 4)) {
        fuzz_load(data, size);
        return 0;
    }
    load_once();
    if (size > 1 << 16) return 0;
    check((const char *)data, size, 0);
    check((const char *)data, size, TOK_PARSE_SPECIAL | TOK_ADD_BOS);
    return 0;
}
