#include "t.h"

#include <sys/stat.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "kv/store.h"
#include "model/make.h"
#include "model/model.h"
#include "t_model.h"
#include "tok/tok.h"

static const char *tpath(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    T_ASSERT(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc(*n + 1);
    T_EQ(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static uint32_t u32_of(gguf_file *f, const char *key)
{
    uint32_t v = 0;
    kl_err err = {0};
    T_EQ(gguf_get_u32(f, key, &v, &err), 0);
    return v;
}

TEST(model_make_defaults_read_back)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *p = tpath("m.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, p, &err), 0);
    gguf_file *f;
    T_EQ(gguf_open(&f, p, &err), 0);
    const char *s;
    T_EQ(gguf_get_str(f, "general.architecture", &s, &err), 0);
    T_STREQ(s, "llama");
    T_EQ(u32_of(f, "llama.embedding_length"), 64);
    T_EQ(u32_of(f, "llama.block_count"), 2);
    T_EQ(u32_of(f, "llama.attention.head_count"), 4);
    T_EQ(u32_of(f, "llama.attention.head_count_kv"), 2);
    T_EQ(u32_of(f, "llama.feed_forward_length"), 192);
    T_EQ(u32_of(f, "llama.context_length"), 2048);
    T_EQ(u32_of(f, "llama.rope.dimension_count"), 16);
    T_EQ(u32_of(f, "general.file_type"), 0);
    float theta;
    T_EQ(gguf_get_f32(f, "llama.rope.freq_base", &theta, &err), 0);
    T_NEAR(theta, 10000.0, 0);
    T_EQ(gguf_n_tensors(f), 2 * 9 + 3);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.1.ffn_down.weight");
    T_ASSERT(t);
    T_EQ(t->ne[0], 192);
    T_EQ(t->ne[1], 64);
    T_ASSERT(gguf_find_tensor(f, "output.weight"));
    t = gguf_find_tensor(f, "blk.0.attn_k.weight");
    T_EQ(t->ne[1], 32);
    /* Norms are 1.0; weights have mean ~0 and std ~0.02. */
    const float *norm = gguf_find_tensor(f, "blk.0.ffn_norm.weight")->data;
    for (int i = 0; i < 64; i++)
        T_ASSERT(norm[i] == 1.0f);
    t = gguf_find_tensor(f, "token_embd.weight");
    const float *x = t->data;
    double sum = 0, sq = 0;
    int64_t n = t->ne[0] * t->ne[1];
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i], sq += (double)x[i] * (double)x[i];
    T_NEAR(sum / (double)n, 0.0, 0.001);
    T_NEAR(sqrt(sq / (double)n), 0.02, 0.001);
    gguf_close(f);
}

TEST(model_make_same_bytes_whatever_the_threads)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.type = KL_Q4_0;
    kl_err err = {0};
    const char *a = tpath("a.gguf"), *b = tpath("b.gguf"), *c = tpath("c.gguf");
    o.threads = 1;
    T_EQ(model_make(&o, a, &err), 0);
    o.threads = 3;
    T_EQ(model_make(&o, b, &err), 0);
    o.seed = 7;
    T_EQ(model_make(&o, c, &err), 0);
    size_t na, nb, nc;
    char *x = slurp(a, &na), *y = slurp(b, &nb), *z = slurp(c, &nc);
    T_EQ(na, nb);
    T_MEMEQ(x, y, na);
    T_EQ(na, nc);
    T_ASSERT(memcmp(x, z, na) != 0);
    free(x);
    free(y);
    free(z);
}

TEST(model_make_q8_0_tied_with_vocab_from)
{
    const char *vocab = t_shared("vocab/ggml-vocab-llama-spm.gguf");
    model_make_opts o;
    model_make_defaults(&o);
    o.type = KL_Q8_0;
    o.tied = true;
    o.vocab_from = vocab;
    o.dim = 96;
    o.heads = 6;
    o.kv_heads = 3;
    o.ffn = 100; /* not a multiple of 32: ffn_down stays F32 */
    const char *p = tpath("q.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, p, &err), 0);
    gguf_file *f, *v;
    T_EQ(gguf_open(&f, p, &err), 0);
    T_EQ(gguf_open(&v, vocab, &err), 0);
    T_EQ(u32_of(f, "general.file_type"), 7);
    T_ASSERT(!gguf_find_tensor(f, "output.weight"));
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    T_EQ(e->type, KL_Q8_0);
    T_EQ(e->ne[1], 32000);
    T_EQ(u32_of(f, "llama.vocab_size"), 32000);
    T_EQ(gguf_find_tensor(f, "blk.0.ffn_down.weight")->type, KL_F32);
    T_EQ(gguf_find_tensor(f, "blk.0.ffn_up.weight")->type, KL_Q8_0);
    T_EQ(gguf_find_tensor(f, "blk.0.attn_norm.weight")->type, KL_F32);
    /* Every tokenizer.* key of the vocab file is there with the same value. */
    int copied = 0;
    for (int64_t i = 0; i < gguf_n_kv(v); i++) {
        const gguf_kv *a = gguf_kv_at(v, i);
        if (strncmp(a->key, "tokenizer.", 10)) continue;
        const gguf_kv *b = gguf_find_kv(f, a->key);
        T_ASSERT(b);
        T_EQ(b->type, a->type);
        if (a->type == GGUF_ARRAY) {
            T_EQ(b->v.arr.n, a->v.arr.n);
            T_EQ(b->v.arr.nbytes, a->v.arr.nbytes);
            T_MEMEQ(b->v.arr.data, a->v.arr.data, a->v.arr.nbytes);
        } else if (a->type == GGUF_STRING) {
            T_EQ(b->v.str.len, a->v.str.len);
            T_MEMEQ(b->v.str.ptr, a->v.str.ptr, a->v.str.len);
        } else {
            T_EQ(b->v.u64, a->v.u64);
        }
        copied++;
    }
    T_ASSERT(copied >= 5);
    /* Dequantized weights look like the F32 ones would. */
    float row[96];
    kl_dequantize_row(KL_Q8_0, e->data, row, 96);
    double sq = 0;
    for (int i = 0; i < 96; i++)
        sq += (double)row[i] * (double)row[i];
    T_ASSERT(sqrt(sq / 96) > 0.01 && sqrt(sq / 96) < 0.03);
    gguf_close(f);
    gguf_close(v);
}

TEST(model_make_synthetic_vocab_tokenizes)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.vocab = 2000;
    const char *p = tpath("v.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, p, &err), 0);
    gguf_file *f;
    T_EQ(gguf_open(&f, p, &err), 0);
    tok *t;
    T_EQ(tok_load(&t, f, &err), 0);
    T_EQ(tok_n_vocab(t), 2000);
    T_EQ(tok_bos(t), 1);
    T_EQ(tok_eos(t), 2);
    /* Every piece is unique. */
    for (int32_t i = 0; i < 2000; i++)
        T_EQ(tok_find(t, tok_text(t, i)), i);
    T_STREQ(tok_text(t, 3 + 0x41), "<0x41>");
    T_STREQ(tok_text(t, 259), "\xe2\x96\x81the");
    const gguf_arr *types;
    T_EQ(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32, &types, &err), 0);
    T_EQ(((const int32_t *)types->data)[100], 6);
    T_EQ(((const int32_t *)types->data)[1999], 1);
    const char *text = "the cat saw a big red ball\nzq \xc3\xa9!";
    int32_t ids[128];
    int64_t n = tok_encode(t, text, strlen(text), TOK_ADD_BOS, ids, 128);
    T_ASSERT(n > 5 && n < 40);
    T_EQ(ids[0], 1);
    T_EQ(ids[1], 259); /* "▁the" */
    char back[256];
    tok_decode(t, ids, n, 0, back, sizeof back);
    T_STREQ(back, text);
    tok_free(t);
    gguf_close(f);
}

TEST(model_make_rejects_bad_options)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.heads = 5;
    const char *p = tpath("bad.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, p, &err), KL_EINVAL);
    T_STREQ(err.msg, "dim 64 is not a multiple of heads 5");
    struct stat st;
    T_ASSERT(stat(p, &st) != 0);
    model_make_defaults(&o);
    o.vocab = 100;
    T_EQ(model_make(&o, p, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "needs 259");
    model_make_defaults(&o);
    o.vocab_from = tpath("missing.gguf");
    T_EQ(model_make(&o, p, &err), KL_EIO);
    T_CONTAINS(err.msg, "missing.gguf: cannot open");
    T_ASSERT(stat(p, &st) != 0);
    model_make_defaults(&o);
    o.arch = "gpt2";
    T_EQ(model_make(&o, p, &err), KL_EUNSUP);
}

/* Teacher-forced over a 40-token "document" of distinct ids and then its first 20 again, the
 * share of the repeat's positions (after its first token) whose argmax is the document's next
 * token. */
static double quoted_share(const char *path)
{
    enum { DOC = 40, REP = 20 };
    kl_err err = {0};
    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    model *m;
    model_opts mo = {.max_batch_tokens = DOC + REP, .max_ctx = 256};
    T_EQ(model_load(&m, f, &mo, &err), 0);
    const model_hparams *hp = model_hparams_of(m);
    kv_store *kv;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F32, 1u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int32_t blocks[8] = {0, 1, 2, 3, 4, 5, 6, 7}, ids[DOC + REP];
    for (int i = 0; i < DOC; i++)
        ids[i] = 3 + (i * 397 + 11) % (hp->n_vocab - 3); /* distinct: 397 is prime */
    for (int i = 0; i < REP; i++)
        ids[DOC + i] = ids[i];
    model_seq sq = {blocks, 8};
    t_batch tb;
    float *logits = malloc(sizeof *logits * (size_t)(DOC + REP) * (size_t)hp->n_vocab);
    T_EQ(model_forward(m, NULL, kv, t_batch_seq(&tb, &sq, ids, DOC + REP, 0), logits, &err), 0);
    int hits = 0;
    for (int t = DOC + 1; t < DOC + REP; t++) {
        const float *l = logits + (size_t)t * (size_t)hp->n_vocab;
        int best = 0;
        for (int v = 1; v < hp->n_vocab; v++)
            best = l[v] > l[best] ? v : best;
        hits += best == ids[t - DOC + 1];
    }
    free(logits);
    kv_store_destroy(kv);
    model_free(m);
    gguf_close(f);
    return hits / (double)(REP - 1);
}

/* --copy: a model whose weights make greedy decoding quote its input (model/make_copy.c): every
 * position of a repeated passage predicts the passage's next token, in F32 and Q8_0, where a
 * random model of the same shape predicts none; shapes it cannot build are refused. */
TEST(model_make_copy_quotes_its_input)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 256, o.heads = 8, o.kv_heads = 2, o.ffn = 64, o.layers = 4, o.vocab = 1000;
    kl_err err = {0};
    T_EQ(model_make(&o, tpath("random.gguf"), &err), 0);
    T_ASSERT(quoted_share(tpath("random.gguf")) < 0.2);
    o.copy = true;
    T_EQ(model_make(&o, tpath("copy.gguf"), &err), KL_EINVAL);
    T_CONTAINS(err.msg, "--copy needs --rope-theta 1000000 or more");
    o.rope_theta = 1e7f;
    T_EQ(model_make(&o, tpath("copy.gguf"), &err), 0);
    T_ASSERT(quoted_share(tpath("copy.gguf")) == 1.0);
    o.type = KL_Q8_0;
    T_EQ(model_make(&o, tpath("copy8.gguf"), &err), 0);
    T_ASSERT(quoted_share(tpath("copy8.gguf")) == 1.0);
    o.type = KL_F32, o.kv_heads = 4;
    T_EQ(model_make(&o, tpath("bad.gguf"), &err), KL_EINVAL);
    T_CONTAINS(err.msg, "--copy needs dim = 4 x kv-heads x head size");
    o.kv_heads = 2, o.tied = true;
    T_EQ(model_make(&o, tpath("bad.gguf"), &err), KL_EINVAL);
    T_CONTAINS(err.msg, "untied llama");
}
