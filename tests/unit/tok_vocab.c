/* tests/unit/tok_vocab.c: every ../shared/vocab/X.gguf with X.gguf.inp / X.gguf.out is
 * tokenized string by string (no BOS, no special parsing, as llama.cpp's test-tokenizer-0)
 * and compared id for id with the reference; then each string goes through decode(encode(s))
 * and through piece-by-piece streaming with tok_utf8_complete.
 *
 * Framing (llama.cpp's): .inp is split on "\n__ggml_vocab_test__\n" (a trailing separator
 * ends the last string); .out holds one line of space-separated ids per string. */
#include <stdbool.h>
#include <utf8proc.h>

#include "t.h"

#include "gguf/gguf.h"
#include "tok/tok.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

typedef struct vcase {
    const char *s;
    size_t len;
    int32_t ids[512];
    int n_ids;
} vcase;

/* Splits the .inp/.out pair into cases; returns how many. */
static int read_cases(const char *inp, size_t inp_len, char *out, vcase *c, int max)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sl = sizeof sep - 1, pos = 0;
    int n = 0;
    while (pos < inp_len && n < max) {
        const char *m = memmem(inp + pos, inp_len - pos, sep, sl);
        size_t end = m ? (size_t)(m - inp) : inp_len;
        c[n].s = inp + pos;
        c[n].len = end - pos;
        n++;
        if (!m) break;
        pos = end + sl;
    }
    char *line = out; /* lines may be empty (the empty string has no ids) */
    for (int i = 0; i < n; i++) {
        c[i].n_ids = 0;
        if (!line || !*line) break;
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *tsave = NULL;
        for (char *w = strtok_r(line, " \t\r", &tsave); w && c[i].n_ids < 512;
             w = strtok_r(NULL, " \t\r", &tsave))
            c[i].ids[c[i].n_ids++] = (int32_t)strtol(w, NULL, 10);
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static void print_ids(const char *what, const int32_t *ids, int64_t n)
{
    fprintf(stderr, "    %s:", what);
    for (int64_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* True when b[0..bl) is the NFC form of a[0..al). */
static bool nfc_equal(const char *a, size_t al, const char *b, size_t bl)
{
    utf8proc_uint8_t *n = NULL;
    utf8proc_ssize_t nl = utf8proc_map((const utf8proc_uint8_t *)a, (utf8proc_ssize_t)al, &n,
                                       UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    bool eq = nl >= 0 && (size_t)nl == bl && !memcmp(n, b, bl);
    free(n);
    return eq;
}

enum { RT_EXACT, RT_NFC, RT_NONE };

/* Runs all checks on one vocab. rt: what decode(encode(s)) gives back: s, NFC(s) (Qwen 2
 * normalizes to NFC) or nothing comparable (WordPiece lowercases and drops accents). */
static void check_vocab_rt(const char *name, int rt)
{
    bool nfc = rt == RT_NFC;
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "vocab/%s.gguf", name);
    snprintf(path, sizeof path, "%s", t_shared(rel));
    size_t il, ol;
    char ip[1100], op[1100];
    snprintf(ip, sizeof ip, "%s.inp", path);
    snprintf(op, sizeof op, "%s.out", path);
    char *inp = slurp(ip, &il), *out = slurp(op, &ol);
    T_ASSERT(inp && out);
    static vcase c[128];
    int n = read_cases(inp, il, out, c, 128);
    T_ASSERT(n > 0);

    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    tok *t;
    int rc = tok_load(&t, f, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    T_EQ(rc, 0);
    gguf_close(f);

    int bad_ids = 0, bad_rt = 0, bad_stream = 0, rt_nfc = 0;
    for (int i = 0; i < n; i++) {
        int32_t ids[2048];
        int64_t k = tok_encode(t, c[i].s, c[i].len, 0, ids, 2048);
        T_ASSERT(k <= 2048);
        if (k != c[i].n_ids || memcmp(ids, c[i].ids, sizeof *ids * (size_t)k)) {
            bad_ids++;
            fprintf(stderr, "  %s #%d \"%.*s\"\n", name, i, (int)c[i].len, c[i].s);
            print_ids("want", c[i].ids, c[i].n_ids);
            print_ids("got ", ids, k);
        }
        /* round trip */
        char dec[8192];
        size_t dl = tok_decode(t, ids, k, 0, dec, sizeof dec);
        T_ASSERT(dl < sizeof dec);
        bool same = dl == c[i].len && !memcmp(dec, c[i].s, dl);
        if (!same && nfc && nfc_equal(c[i].s, c[i].len, dec, dl)) {
            rt_nfc++;
            fprintf(stderr, "  %s #%d round trip gives NFC(s): \"%.*s\"\n", name, i, (int)c[i].len,
                    c[i].s);
        } else if (rt != RT_NONE && !same) {
            bad_rt++;
            fprintf(stderr, "  %s #%d round trip: \"%.*s\" -> \"%s\"\n", name, i, (int)c[i].len,
                    c[i].s, dec);
        }
        /* streaming: pieces one token at a time, holding back incomplete UTF-8 */
        char acc[8192], pend[1100];
        size_t an = 0, pn = 0;
        bool split_char = false;
        for (int64_t j = 0; j < k; j++) {
            char p[1024];
            size_t l = tok_piece(t, ids[j], 0, p, sizeof p);
            T_ASSERT(l <= sizeof p && pn + l <= sizeof pend);
            memcpy(pend + pn, p, l);
            pn += l;
            size_t ok = tok_utf8_complete(pend, pn);
            T_ASSERT(pn - ok <= 3);
            /* what is emitted must not end inside a valid, completable sequence */
            if (ok && ok < pn && ((unsigned char)pend[ok] & 0xc0) == 0x80) split_char = true;
            memcpy(acc + an, pend, ok);
            an += ok;
            memmove(pend, pend + ok, pn - ok);
            pn -= ok;
        }
        memcpy(acc + an, pend, pn);
        an += pn;
        /* the concatenated pieces equal decode, except SentencePiece's dropped prefix space */
        size_t skip = (an == dl + 1 && acc[0] == ' ') ? 1 : 0;
        if (split_char || an - skip != dl || memcmp(acc + skip, dec, dl)) bad_stream++;
    }
    if (rt == RT_NONE)
        fprintf(stderr, "# %s: ids %d/%d, round trip not defined, streaming %d/%d\n", name,
                n - bad_ids, n, n - bad_stream, n);
    else
        fprintf(stderr,
                "# %s: ids %d/%d, round trip %d/%d (%d of them only up to NFC), "
                "streaming %d/%d\n",
                name, n - bad_ids, n, n - bad_rt, n, rt_nfc, n - bad_stream, n);
    tok_free(t);
    free(inp);
    free(out);
    T_EQ(bad_ids, 0);
    T_EQ(bad_stream, 0);
    T_EQ(bad_rt, 0);
}

static void check_vocab(const char *name)
{
    check_vocab_rt(name, RT_EXACT);
}

TEST(tok_vocab_llama_spm)
{
    check_vocab("ggml-vocab-llama-spm");
}
TEST(tok_vocab_llama2_lenml)
{
    check_vocab("ggml-vocab-llama2-lenml");
}
TEST(tok_vocab_phi3)
{
    check_vocab("ggml-vocab-phi-3");
}
TEST(tok_vocab_llama3)
{
    check_vocab("ggml-vocab-llama3");
}
TEST(tok_vocab_llama_bpe)
{
    check_vocab("ggml-vocab-llama-bpe");
}
TEST(tok_vocab_qwen2)
{
    check_vocab_rt("ggml-vocab-qwen2", RT_NFC);
}
TEST(tok_vocab_qwen3)
{
    check_vocab_rt("ggml-vocab-qwen3", RT_NFC);
}
TEST(tok_vocab_gpt2)
{
    check_vocab("ggml-vocab-gpt-2");
}

/* WordPiece: ids must match; decoding is lossy (lowercase, no accents), so no round trip. */
TEST(tok_vocab_bert_bge)
{
    check_vocab_rt("ggml-vocab-bert-bge", RT_NONE);
}
