/* tests/unit/tok_api.c: the tokenizer API beyond the vocab test strings: llama.cpp's own
 * prompt ids for stories260K, special tokens with and without TOK_PARSE_SPECIAL, BOS,
 * end-of-generation ids, decode's buffer contract, the UTF-8 hold-back rule, load errors,
 * the word-by-word SentencePiece shortcut and concurrent use from several threads. */
#include <jansson.h>
#include <pthread.h>

#include "t.h"

#include "gguf/gguf.h"
#include "tok/internal.h"
#include "tok/tok.h"

static tok *load(const char *rel)
{
    const char *path = t_shared(rel);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    tok *t = NULL;
    int rc = tok_load(&t, f, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    T_EQ(rc, 0);
    gguf_close(f);
    return t;
}

/* llama.cpp tokenized these prompts (BOS, no special parsing) and generated greedy_ids. */
TEST(tok_stories260k_matches_llama_cpp)
{
    tok *t = load("models/stories260K.gguf");
    json_error_t je;
    json_t *lines = NULL;
    FILE *f = fopen(t_shared("reference/stories260K.jsonl"), "r");
    T_ASSERT(f);
    char line[1 << 16];
    int n_prompts = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, &je);
        T_ASSERT(j);
        const char *prompt = json_string_value(json_object_get(j, "prompt"));
        json_t *want = json_object_get(j, "prompt_ids"), *gen = json_object_get(j, "greedy_ids");
        const char *gtext = json_string_value(json_object_get(j, "greedy_text"));
        T_ASSERT(prompt && want && gen && gtext);
        int32_t ids[4096];
        int64_t n = tok_encode(t, prompt, strlen(prompt), TOK_ADD_BOS, ids, 4096);
        T_EQ(n, json_array_size(want));
        for (int64_t i = 0; i < n; i++)
            T_EQ(ids[i], json_integer_value(json_array_get(want, i)));
        /* the continuation's pieces are llama.cpp's greedy_text */
        char text[8192];
        size_t tl = 0;
        for (size_t i = 0; i < json_array_size(gen); i++) {
            int32_t id = (int32_t)json_integer_value(json_array_get(gen, i));
            tl += tok_piece(t, id, 0, text + tl, sizeof text - tl);
            T_ASSERT(tl < sizeof text);
        }
        text[tl] = 0;
        T_STREQ(text, gtext);
        /* and decoding prompt + continuation gives prompt + greedy_text, minus the prefix
         * space SentencePiece decoding drops when the prompt is empty */
        int64_t m = n;
        for (size_t i = 0; i < json_array_size(gen); i++)
            ids[m++] = (int32_t)json_integer_value(json_array_get(gen, i));
        char all[16384], want_all[16384];
        tok_decode(t, ids, m, 0, all, sizeof all);
        snprintf(want_all, sizeof want_all, "%s%s", prompt,
                 !*prompt && gtext[0] == ' ' ? gtext + 1 : gtext);
        T_STREQ(all, want_all);
        json_decref(j);
        n_prompts++;
    }
    fclose(f);
    json_decref(lines);
    T_ASSERT(n_prompts > 0);
    T_EQ(tok_bos(t), 1);
    T_EQ(tok_eos(t), 2);
    T_ASSERT(tok_wants_bos(t));
    T_ASSERT(tok_is_eog(t, 2));
    T_ASSERT(!tok_is_eog(t, 261));
    tok_free(t);
}

TEST(tok_llama3_special_tokens)
{
    tok *t = load("vocab/ggml-vocab-llama3.gguf");
    const char *s = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    int32_t ids[64];
    int64_t n = tok_encode(t, s, strlen(s), TOK_PARSE_SPECIAL | TOK_ADD_BOS, ids, 64);
    T_ASSERT(n >= 6);
    T_EQ(ids[0], 128000);
    T_EQ(ids[1], 128006);
    T_EQ(ids[n - 1], 128009);
    bool has_end_header = false;
    for (int64_t i = 0; i < n; i++)
        has_end_header |= ids[i] == 128007;
    T_ASSERT(has_end_header);
    /* rendered back with TOK_RENDER_SPECIAL, and dropped without it */
    char out[256];
    tok_decode(t, ids + 1, n - 1, TOK_RENDER_SPECIAL, out, sizeof out);
    T_STREQ(out, s);
    tok_decode(t, ids, n, 0, out, sizeof out);
    T_STREQ(out, "user\n\nHi");
    /* without TOK_PARSE_SPECIAL the same text is plain text */
    n = tok_encode(t, s, strlen(s), 0, ids, 64);
    for (int64_t i = 0; i < n; i++)
        T_ASSERT(ids[i] < 128000);
    tok_decode(t, ids, n, 0, out, sizeof out);
    T_STREQ(out, s);
    /* half a special token is text too */
    n = tok_encode(t, "<|eot_id", 8, TOK_PARSE_SPECIAL, ids, 64);
    for (int64_t i = 0; i < n; i++)
        T_ASSERT(ids[i] < 128000);

    T_EQ(tok_find(t, "<|eot_id|>"), 128009);
    T_STREQ(tok_text(t, 128009), "<|eot_id|>");
    T_ASSERT(tok_text(t, -1) == NULL && tok_text(t, 128256) == NULL);
    T_ASSERT(tok_is_eog(t, 128009) && tok_is_eog(t, 128001) && !tok_is_eog(t, 128000));
    T_ASSERT(tok_is_control(t, 128000) && !tok_is_control(t, 9906));
    T_ASSERT(tok_wants_bos(t));
    T_EQ(tok_n_vocab(t), 128256);
    char p[64];
    T_EQ(tok_piece(t, 128009, 0, p, sizeof p), 0);
    T_EQ(tok_piece(t, 128009, TOK_RENDER_SPECIAL, p, sizeof p), 10);
    T_EQ(tok_piece(t, 999999, 0, p, sizeof p), 0);
    tok_free(t);
}

TEST(tok_qwen_special_and_bos)
{
    tok *t = load("vocab/ggml-vocab-qwen3.gguf");
    T_ASSERT(!tok_wants_bos(t));
    const char *s = "<|im_start|>user\nhello<|im_end|>";
    int32_t ids[32];
    int64_t n = tok_encode(t, s, strlen(s), TOK_PARSE_SPECIAL, ids, 32);
    T_EQ(ids[0], 151644);
    T_EQ(ids[n - 1], 151645);
    T_ASSERT(tok_is_eog(t, 151645) && tok_is_eog(t, 151643));
    tok_free(t);
}

/* SentencePiece: a special token is followed by the prefix space again, as in llama.cpp. */
TEST(tok_spm_special_and_prefix)
{
    tok *t = load("vocab/ggml-vocab-llama-spm.gguf");
    int32_t a[16], b[16], c[16];
    int64_t na = tok_encode(t, "Hello</s>world", 14, TOK_PARSE_SPECIAL, a, 16);
    int64_t nb = tok_encode(t, "Hello", 5, 0, b, 16);
    int64_t nc = tok_encode(t, "world", 5, 0, c, 16);
    T_EQ(na, nb + 1 + nc);
    T_MEMEQ(a, b, sizeof *b * (size_t)nb);
    T_EQ(a[nb], 2);
    T_MEMEQ(a + nb + 1, c, sizeof *c * (size_t)nc);
    /* decode drops exactly one leading space, after leading control tokens */
    int32_t ids[16];
    int64_t n = tok_encode(t, "  two", 5, TOK_ADD_BOS, ids, 16);
    T_EQ(ids[0], 1);
    char out[32];
    T_EQ(tok_decode(t, ids, n, 0, out, sizeof out), 5);
    T_STREQ(out, "  two");
    /* byte fallback: a character outside the vocab becomes <0xNN> tokens */
    n = tok_encode(t, "\xf0\x9f\x98\x81", 4, 0, ids, 16); /* 😁 */
    T_EQ(n, 5);
    T_EQ(ids[1], 243); /* <0xF0> */
    T_STREQ(tok_text(t, ids[1]), "<0xF0>");
    tok_decode(t, ids, n, 0, out, sizeof out);
    T_STREQ(out, "\xf0\x9f\x98\x81");
    tok_free(t);
}

/* Cutting SentencePiece text into words before merging gives the same ids as merging the
 * whole fragment at once. */
TEST(tok_spm_word_split_is_exact)
{
    tok *t = load("vocab/ggml-vocab-llama-spm.gguf");
    T_ASSERT(t->spm_split);
    size_t len;
    FILE *f = fopen(t_shared("vocab/ggml-vocab-llama-spm.gguf.inp"), "rb");
    T_ASSERT(f);
    static char text[1 << 16];
    len = fread(text, 1, sizeof text, f);
    fclose(f);
    static int32_t a[1 << 16], b[1 << 16];
    int64_t na = tok_encode(t, text, len, 0, a, 1 << 16);
    t->spm_split = false;
    int64_t nb = tok_encode(t, text, len, 0, b, 1 << 16);
    T_EQ(na, nb);
    T_MEMEQ(a, b, sizeof *a * (size_t)na);
    tok_free(t);
}

TEST(tok_decode_buffer_contract)
{
    tok *t = load("vocab/ggml-vocab-gpt-2.gguf");
    int32_t ids[16];
    int64_t n = tok_encode(t, "Hello world", 11, 0, ids, 16);
    T_EQ(n, 2);
    char out[8];
    memset(out, 'x', sizeof out);
    T_EQ(tok_decode(t, ids, n, 0, out, 6), 11);
    T_STREQ(out, "Hello"); /* cap - 1 bytes and a NUL, like snprintf */
    T_EQ(out[6], 'x');
    T_EQ(tok_decode(t, ids, n, 0, NULL, 0), 11);
    /* encode reports the full count even when out is too small */
    int32_t one[1];
    T_EQ(tok_encode(t, "Hello world", 11, 0, one, 1), 2);
    T_EQ(one[0], ids[0]);
    T_EQ(tok_encode(t, "", 0, 0, NULL, 0), 0);
    tok_free(t);
}

TEST(tok_utf8_hold_back)
{
    T_EQ(tok_utf8_complete("abc", 3), 3);
    T_EQ(tok_utf8_complete("a\xe2\x82", 3), 1);        /* € cut after 2 of 3 bytes */
    T_EQ(tok_utf8_complete("a\xe2\x82\xac", 4), 4);    /* € complete */
    T_EQ(tok_utf8_complete("\xf0\x9f", 2), 0);         /* 2 of 4 */
    T_EQ(tok_utf8_complete("\xf0\x9f\x98", 3), 0);     /* 3 of 4 */
    T_EQ(tok_utf8_complete("\xf0\x9f\x98\x81", 4), 4); /* complete */
    T_EQ(tok_utf8_complete("\xc3", 1), 0);
    T_EQ(tok_utf8_complete("\xe0\x80", 2), 2); /* overlong: can never complete */
    T_EQ(tok_utf8_complete("\xed\xa0", 2), 2); /* surrogate */
    T_EQ(tok_utf8_complete("\x80\x80\x80\x80", 4), 4);
    T_EQ(tok_utf8_complete("\xff", 1), 1);
    T_EQ(tok_utf8_complete("\xc0", 1), 1);
    T_EQ(tok_utf8_complete("", 0), 0);
}

/* ---- load errors, from GGUF files built in memory ---- */

typedef struct gbuf {
    unsigned char b[4096];
    size_t n;
} gbuf;

static void put(gbuf *g, const void *p, size_t n)
{
    T_ASSERT(g->n + n <= sizeof g->b);
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void put_u32(gbuf *g, uint32_t v)
{
    put(g, &v, 4);
}
static void put_u64(gbuf *g, uint64_t v)
{
    put(g, &v, 8);
}
static void put_str(gbuf *g, const char *s)
{
    put_u64(g, strlen(s));
    put(g, s, strlen(s));
}
static void kv_str(gbuf *g, const char *k, const char *v)
{
    put_str(g, k);
    put_u32(g, 8);
    put_str(g, v);
}
static void kv_strs(gbuf *g, const char *k, const char *const *v, int n)
{
    put_str(g, k);
    put_u32(g, 9);
    put_u32(g, 8);
    put_u64(g, (uint64_t)n);
    for (int i = 0; i < n; i++)
        put_str(g, v[i]);
}

/* A byte-level BPE vocab with the given pre (NULL: none) and model. */
static int load_mem(const char *model, const char *pre, kl_err *err, tok **t)
{
    static const char *const toks[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a b"};
    gbuf g = {.n = 0};
    put_u32(&g, 0x46554747u);
    put_u32(&g, 3);
    put_u64(&g, 0);
    put_u64(&g, pre ? 4 : 3);
    kv_str(&g, "tokenizer.ggml.model", model);
    if (pre) kv_str(&g, "tokenizer.ggml.pre", pre);
    kv_strs(&g, "tokenizer.ggml.tokens", toks, 3);
    kv_strs(&g, "tokenizer.ggml.merges", merges, 1);
    while (g.n % 32)
        put(&g, "", 1);
    gguf_file *f;
    T_EQ(gguf_open_mem(&f, g.b, g.n, "mem.gguf", err), 0);
    int rc = tok_load(t, f, err);
    gguf_close(f);
    return rc;
}

TEST(tok_load_errors)
{
    kl_err err = {0};
    tok *t = NULL;
    T_EQ(load_mem("gpt2", "no-such-pre", &err, &t), KL_EUNSUP);
    T_STREQ(err.msg, "mem.gguf: unknown pre-tokenizer tokenizer.ggml.pre = 'no-such-pre'");
    T_ASSERT(t == NULL);
    T_EQ(load_mem("gpt2", NULL, &err, &t), KL_EUNSUP);
    T_CONTAINS(err.msg, "tokenizer.ggml.pre is missing");
    T_EQ(load_mem("t5", "default", &err, &t), KL_EUNSUP);
    T_STREQ(err.msg, "mem.gguf: unsupported tokenizer.ggml.model 't5'");
    /* and a well-formed one loads and merges */
    T_EQ(load_mem("gpt2", "gpt-2", &err, &t), 0);
    int32_t ids[4];
    T_EQ(tok_encode(t, "ab", 2, 0, ids, 4), 1);
    T_EQ(ids[0], 2);
    T_EQ(tok_encode(t, "ba", 2, 0, ids, 4), 2);
    tok_free(t);
}

/* ---- threads ---- */

typedef struct job {
    const tok *t;
    const char *text;
    size_t len;
    int32_t *ids;
    int64_t n;
} job;

static void *run_job(void *p)
{
    job *j = p;
    for (int r = 0; r < 20; r++)
        j->n = tok_encode(j->t, j->text, j->len, TOK_PARSE_SPECIAL, j->ids, 1 << 14);
    return NULL;
}

TEST(tok_shared_across_threads)
{
    tok *t = load("vocab/ggml-vocab-qwen3.gguf");
    FILE *f = fopen(t_shared("vocab/ggml-vocab-qwen3.gguf.inp"), "rb");
    T_ASSERT(f);
    static char text[1 << 15];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    static int32_t want[1 << 14], got[4][1 << 14];
    int64_t n = tok_encode(t, text, len, TOK_PARSE_SPECIAL, want, 1 << 14);
    T_ASSERT(n > 0 && n <= 1 << 14);
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){t, text, len, got[i], 0};
        T_EQ(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        T_EQ(jobs[i].n, n);
        T_MEMEQ(got[i], want, sizeof *want * (size_t)n);
    }
    tok_free(t);
}

/* WordPiece: a literal "▁" in the text must not pass for GGUF's word-start mark. Expected ids
 * from Hugging Face's BERT tokenizer (transformers.js) over the same vocab. */
TEST(tok_wpm_literal_word_mark)
{
    tok *t = load("vocab/ggml-vocab-bert-bge.gguf");
    static const int32_t want[] = {2123, 1005, 100, 1005, 1056};
    int32_t ids[16];
    const char *s = "DON'T\xe2\x96\x81"
                    "DON'T";
    T_EQ(tok_encode(t, s, strlen(s), 0, ids, 16), 5);
    T_MEMEQ(ids, want, sizeof want);
    /* [CLS] ... [SEP] with TOK_ADD_BOS */
    int64_t n = tok_encode(t, "hello world", 11, TOK_ADD_BOS, ids, 16);
    T_EQ(n, 4);
    T_EQ(ids[0], 101);
    T_EQ(ids[1], 7592);
    T_EQ(ids[2], 2088);
    T_EQ(ids[3], 102);
    tok_free(t);
}
