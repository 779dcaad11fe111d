/* LoRA adapters (model/lora.c): made by `model make-lora`, read and checked against the base
 * model (each bad file refused with a message naming the tensor), and computed: the logits of
 * base + adapter equal those of a model whose weights are merged (W + scale B A, written by
 * this test), two adapters stacked those of both merged, and a batch mixing sequences on several
 * adapters and on the base gives each sequence the bits it gets alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/workers.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/make.h"
#include "t.h"
#include "t_gguf.h"

static void make_base(const char *path, int dim, bool tied)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = dim;
    o.ffn = 2 * dim + 32;
    o.std = 0.2f;
    o.tied = tied;
    kl_err err = {0};
    T_EQ(model_make(&o, path, &err), 0);
}

static void make_lora(const char *base, const char *path, int rank, const char *targets,
                      kl_dtype type, uint64_t seed)
{
    model_make_lora_opts o;
    model_make_lora_defaults(&o);
    o.base_path = base;
    o.rank = rank;
    o.alpha = 2.f * (float)rank;
    o.targets = targets;
    o.type = type;
    o.seed = seed;
    o.std = 0.1f;
    kl_err err = {0};
    T_EQ(model_make_lora(&o, path, &err), 0);
}

typedef struct loaded {
    gguf_file *f;
    model *m;
} loaded;

static loaded load_model(const char *path, int max_rank)
{
    loaded L;
    kl_err err = {0};
    T_EQ(gguf_open(&L.f, path, &err), 0);
    model_opts o = {.max_batch_tokens = 64, .max_ctx = 128, .max_lora_rank = max_rank};
    T_EQ(model_load(&L.m, L.f, &o, &err), 0);
    return L;
}

static void unload(loaded *L)
{
    model_free(L->m);
    gguf_close(L->f);
}

/* Loads adapter path for m; returns the code, the message in err. */
static int load_lora(const model *m, const char *path, model_lora **a, kl_err *err)
{
    gguf_file *f;
    *a = NULL;
    int rc = gguf_open(&f, path, err);
    if (!rc) rc = model_lora_load(a, m, f, 1.f, err);
    gguf_close(f);
    return rc;
}

/* Runs n_seqs sequences of len tokens each (sequence s: tokens (i * 7 + 13 s) % vocab) in one
 * batch, sequence s on adapter loras[s] (NULL: base); writes every token's logits. */
static void run(const model *mc, kl_workers *w, const model_lora *const *loras, int n_seqs, int len,
                float *logits)
{
    model *m = (model *)mc;
    const model_hparams *hp = model_hparams_of(m);
    kl_err err = {0};
    kv_store *kv;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F32, 1u << 22};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    enum { MAXT = 64, MAXS = 4 };
    int32_t blocks[MAXS][4], tok[MAXT], pos[MAXT], seq[MAXT];
    bool want[MAXT];
    model_seq sq[MAXS];
    for (int s = 0; s < n_seqs; s++) {
        for (int j = 0; j < 4; j++)
            blocks[s][j] = s * 4 + j;
        sq[s] = (model_seq){blocks[s], 4};
    }
    int n = 0;
    for (int i = 0; i < len; i++) /* interleaved: sequences' rows are not contiguous */
        for (int s = 0; s < n_seqs; s++, n++)
            tok[n] = (i * 7 + 13 * s + 1) % hp->n_vocab, pos[n] = i, seq[n] = s, want[n] = true;
    model_batch b = {.n = n,
                     .token = tok,
                     .pos = pos,
                     .seq = seq,
                     .want_logits = want,
                     .n_seqs = n_seqs,
                     .seqs = sq,
                     .lora = loras};
    T_EQ(model_forward(m, w, kv, &b, logits, &err), 0);
    kv_store_destroy(kv);
}

/* Writes base with every adapted weight W replaced by W + scale B A (in double), from the
 * adapter's F16 values: the reference an adapter must match. */
static void write_merged(const char *base, const char *adapter, float scale, const char *out)
{
    kl_err err = {0};
    gguf_file *b, *a;
    gguf_writer *w;
    T_EQ(gguf_open(&b, base, &err), 0);
    T_EQ(gguf_open(&a, adapter, &err), 0);
    T_EQ(gguf_writer_open(&w, out, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(b); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(b, i));
    for (int64_t i = 0; i < gguf_n_tensors(b); i++) {
        const gguf_tensor *t = gguf_tensor_at(b, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    gguf_writer_begin_data(w);
    for (int64_t i = 0; i < gguf_n_tensors(b); i++) {
        const gguf_tensor *t = gguf_tensor_at(b, i);
        char na[300], nb[300];
        snprintf(na, sizeof na, "%s.lora_a", t->name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->name);
        const gguf_tensor *A = gguf_find_tensor(a, na), *B = gguf_find_tensor(a, nb);
        if (!A) {
            gguf_writer_write(w, t->data, t->nbytes);
            continue;
        }
        T_EQ(t->type, KL_F32);
        T_EQ(A->type, KL_F16);
        int64_t cols = t->ne[0], rows = t->ne[1], rank = A->ne[1];
        float *W = malloc(t->nbytes);
        memcpy(W, t->data, t->nbytes);
        const uint16_t *ah = A->data, *bh = B->data;
        for (int64_t o = 0; o < rows; o++)
            for (int64_t c = 0; c < cols; c++) {
                double s = 0;
                for (int64_t r = 0; r < rank; r++)
                    s += (double)kl_fp16_to_fp32(bh[o * rank + r]) *
                         (double)kl_fp16_to_fp32(ah[r * cols + c]);
                W[o * cols + c] += (float)(s * (double)scale);
            }
        gguf_writer_write(w, W, t->nbytes);
        free(W);
    }
    T_EQ(gguf_writer_finish(w, &err), 0);
    gguf_close(a);
    gguf_close(b);
}

TEST(model_lora_matches_merged_weights)
{
    const char *base = t_tmp("base.gguf"), *ad = t_tmp("a.gguf"), *merged = t_tmp("m.gguf");
    make_base(base, 64, false);
    make_lora(base, ad, 8, "q,k,v,o,gate,up,down,output", KL_F16, 7);
    write_merged(base, ad, 2.f, merged); /* alpha 2 rank: scale 2 */
    loaded L = load_model(base, 0), M = load_model(merged, 0);
    model_lora *a;
    kl_err err = {0};
    T_EQ(load_lora(L.m, ad, &a, &err), 0);
    const model_lora_info *info = model_lora_info_of(a);
    T_EQ(info->rank, 8);
    T_EQ(info->n_pairs, 2 * 7 + 1);
    int nv = model_hparams_of(L.m)->n_vocab, len = 20;
    float *l0 = malloc(sizeof(float) * (size_t)(len * nv)),
          *l1 = malloc(sizeof(float) * (size_t)(len * nv)),
          *l2 = malloc(sizeof(float) * (size_t)(len * nv));
    const model_lora *one[1] = {a};
    run(L.m, NULL, NULL, 1, len, l0); /* base */
    run(L.m, NULL, one, 1, len, l1);  /* base + adapter */
    run(M.m, NULL, NULL, 1, len, l2); /* merged */
    double d_lora = 0, d_base = 0;
    for (int i = 0; i < len * nv; i++) {
        d_lora = fmax(d_lora, fabs((double)l1[i] - (double)l2[i]));
        d_base = fmax(d_base, fabs((double)l0[i] - (double)l2[i]));
    }
    T_ASSERT(d_base > 0.1);  /* the adapter matters... */
    T_ASSERT(d_lora < 2e-4); /* ...and is applied as its merged weights are */
    free(l0), free(l1), free(l2);
    model_lora_free(a);
    unload(&L), unload(&M);
}

/* Two adapters stacked (llama.cpp's several adapters on one context) equal the weights with
 * both merged, W + s1 B1 A1 + s2 B2 A2; the stack is its own adapter in a mixed batch. */
TEST(model_lora_stack_matches_merged_weights)
{
    char base[4096], a1p[4096], a2p[4096], m1[4096], m2[4096]; /* five: t_tmp keeps four */
    snprintf(base, sizeof base, "%s", t_tmp("base.gguf"));
    snprintf(a1p, sizeof a1p, "%s", t_tmp("a1.gguf"));
    snprintf(a2p, sizeof a2p, "%s", t_tmp("a2.gguf"));
    snprintf(m1, sizeof m1, "%s", t_tmp("m1.gguf"));
    snprintf(m2, sizeof m2, "%s", t_tmp("m2.gguf"));
    make_base(base, 64, false);
    make_lora(base, a1p, 8, "q,k,v,o,gate,up,down,output", KL_F16, 7);
    make_lora(base, a2p, 4, "q,v,down,output", KL_F16, 8);
    write_merged(base, a1p, 2.f, m1); /* alpha 2 rank: scale 2 */
    write_merged(m1, a2p, 2.f * 0.5f, m2);
    loaded L = load_model(base, 0), M = load_model(m2, 0);
    model_lora *parts[2], *st;
    kl_err err = {0};
    T_EQ(load_lora(L.m, a1p, &parts[0], &err), 0);
    gguf_file *f;
    T_EQ(gguf_open(&f, a2p, &err), 0);
    T_EQ(model_lora_load(&parts[1], L.m, f, 0.5f, &err), 0); /* the user's scale 0.5 */
    gguf_close(f);
    T_EQ(model_lora_stack(&st, parts, 2, &err), 0);
    const model_lora_info *info = model_lora_info_of(st);
    T_EQ(info->rank, 8);
    T_EQ(info->n_pairs, 2 * 7 + 1 + 2 * 3 + 1);
    T_ASSERT(info->id != model_lora_info_of(parts[0])->id);
    model_lora *rev;
    model_lora *back[2] = {parts[1], parts[0]};
    T_EQ(model_lora_stack(&rev, back, 2, &err), 0);
    T_ASSERT(model_lora_info_of(rev)->id != info->id); /* the order is part of the identity */
    model_lora *nested;
    T_EQ(model_lora_stack(&nested, (model_lora *[]){st, parts[0]}, 2, &err), KL_EINVAL);

    int nv = model_hparams_of(L.m)->n_vocab, len = 16;
    size_t sz = sizeof(float) * (size_t)(len * nv);
    float *l1 = malloc(sz), *l2 = malloc(sz), *l3 = malloc(sz), *mix = malloc(3 * sz);
    const model_lora *one[1] = {st}, *first[1] = {parts[0]};
    run(L.m, NULL, one, 1, len, l1);   /* base + both */
    run(M.m, NULL, NULL, 1, len, l2);  /* both merged */
    run(L.m, NULL, first, 1, len, l3); /* base + the first alone */
    double d_stack = 0, d_first = 0;
    for (int i = 0; i < len * nv; i++) {
        d_stack = fmax(d_stack, fabs((double)l1[i] - (double)l2[i]));
        d_first = fmax(d_first, fabs((double)l3[i] - (double)l2[i]));
    }
    T_ASSERT(d_first > 0.05); /* the second adapter matters... */
    T_ASSERT(d_stack < 2e-4); /* ...and the stack adds both as their merged weights do */
    /* sequences on the first part, the stack and the base in one batch: the stack's rows are
     * the bits it gives alone */
    kl_workers *w = kl_workers_create(2);
    float *alone = malloc(3 * sz);
    run(L.m, w, (const model_lora *[]){parts[0], st, NULL}, 3, len, mix);
    run(L.m, NULL, (const model_lora *[]){NULL, st, NULL}, 3, len, alone);
    for (int i = 0; i < len; i++)
        T_MEMEQ(mix + (size_t)(i * 3 + 1) * (size_t)nv, alone + (size_t)(i * 3 + 1) * (size_t)nv,
                sizeof(float) * (size_t)nv);
    kl_workers_destroy(w);
    free(l1), free(l2), free(l3), free(mix), free(alone);
    model_lora_free(rev);
    model_lora_free(st);
    model_lora_free(parts[0]), model_lora_free(parts[1]);
    unload(&L), unload(&M);
}

/* Batch invariance across adapters: base, A, B (another rank and targets) and A again in one
 * batch, interleaved, with and without workers: each sequence's logits are the bits it gets
 * alone. */
TEST(model_lora_mixed_batch_gives_each_sequence_its_own_bits)
{
    const char *base = t_tmp("base.gguf"), *pa = t_tmp("a.gguf"), *pb = t_tmp("b.gguf");
    make_base(base, 64, false);
    make_lora(base, pa, 8, "q,k,v,o,gate,up,down", KL_F32, 1);
    make_lora(base, pb, 4, "v,down,output", KL_BF16, 2);
    loaded L = load_model(base, 0);
    model_lora *a, *b;
    kl_err err = {0};
    T_EQ(load_lora(L.m, pa, &a, &err), 0);
    T_EQ(load_lora(L.m, pb, &b, &err), 0);
    T_ASSERT(model_lora_info_of(a)->id != model_lora_info_of(b)->id);
    enum { LEN = 9, S = 4 };
    int nv = model_hparams_of(L.m)->n_vocab;
    float *mixed = malloc(sizeof(float) * (size_t)(S * LEN * nv)),
          *alone = malloc(sizeof(float) * (size_t)(S * LEN * nv));
    const model_lora *loras[S] = {NULL, a, b, a};
    kl_workers *w = kl_workers_create(2);
    for (int pass = 0; pass < 2; pass++) {
        run(L.m, pass ? w : NULL, loras, S, LEN, mixed);
        for (int s = 0; s < S; s++) {
            /* alone: the same tokens as sequence s of the mixed batch */
            const model_lora *one[S] = {NULL, NULL, NULL, NULL};
            one[s] = loras[s];
            run(L.m, pass ? NULL : w, one, S, LEN, alone); /* the others on the base */
            for (int i = 0; i < LEN; i++)
                T_MEMEQ(mixed + (size_t)(i * S + s) * nv, alone + (size_t)(i * S + s) * nv,
                        sizeof(float) * (size_t)nv);
        }
    }
    /* and the adapters do change the logits: sequence 1 (A) differs from the base's */
    run(L.m, NULL, (const model_lora *[]){NULL, NULL, NULL, NULL}, S, LEN, alone);
    T_ASSERT(memcmp(mixed + (size_t)(LEN - 1) * S * nv + nv,
                    alone + (size_t)(LEN - 1) * S * nv + nv, sizeof(float) * (size_t)nv));
    kl_workers_destroy(w);
    free(mixed), free(alone);
    model_lora_free(a), model_lora_free(b);
    unload(&L);
}

/* Writes an adapter for the default base (dim 64, 2 layers) with tensors named names, shapes
 * [ne0, ne1] and every value v. */
static void write_adapter(const char *path, int n, const char *const *names, const int *ne0,
                          const int *ne1, float v)
{
    kl_err err = {0};
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.type", "adapter");
    gguf_writer_set_str(w, "adapter.type", "lora");
    gguf_writer_set_f32(w, "adapter.lora.alpha", 8.f);
    for (int i = 0; i < n; i++)
        gguf_writer_add_tensor(w, names[i], KL_F32, 2, (int64_t[]){ne0[i], ne1[i]});
    gguf_writer_begin_data(w);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < ne0[i] * ne1[i]; k++)
            gguf_writer_write(w, &v, sizeof v);
    T_EQ(gguf_writer_finish(w, &err), 0);
}

static void expect_refused(const model *m, const char *path, const char *what)
{
    model_lora *a;
    kl_err err = {0};
    T_ASSERT(load_lora(m, path, &a, &err) < 0);
    T_ASSERT(a == NULL);
    T_CONTAINS(err.msg, what);
}

TEST(model_lora_bad_adapters_refused_by_name)
{
    char base[512], wide[512], ok[512], bad[512], tied[512];
    snprintf(base, sizeof base, "%s/base.gguf", t_tmpdir());
    snprintf(wide, sizeof wide, "%s/wide.gguf", t_tmpdir());
    snprintf(ok, sizeof ok, "%s/ok.gguf", t_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.gguf", t_tmpdir());
    snprintf(tied, sizeof tied, "%s/tied.gguf", t_tmpdir());
    make_base(base, 64, false);
    loaded L = load_model(base, 8);
    /* not an adapter at all: the base model itself */
    expect_refused(L.m, base, "not a LoRA adapter (general.type is '', expected 'adapter')");
    /* an adapter for a wider model: shapes do not fit, the pair named */
    make_base(wide, 96, false);
    make_lora(wide, ok, 4, "q", KL_F32, 1);
    expect_refused(L.m, ok, "blk.0.attn_q.weight.lora_a [96, 4] and blk.0.attn_q.weight.lora_b");
    /* rank over --max-lora-rank (8 here) */
    make_lora(base, ok, 16, "k", KL_F32, 1);
    expect_refused(L.m, ok, "blk.0.attn_k.weight.lora_a has rank 16, over the limit of 8");
    /* one half of a pair missing */
    make_lora(base, ok, 4, "q,down", KL_F32, 1);
    t_gguf_copy(ok, bad, NULL, 0, (const char *[]){"blk.1.ffn_down.weight.lora_b", NULL});
    expect_refused(L.m, bad, "blk.1.ffn_down.weight.lora_a has no blk.1.ffn_down.weight.lora_b");
    /* another architecture, another adapter type */
    t_gguf_copy(ok, bad, (const t_kv[]){{"general.architecture", 's', "qwen2", 0}}, 1, NULL);
    expect_refused(L.m, bad, "an adapter for architecture 'qwen2', but the base model is 'llama'");
    t_gguf_copy(ok, bad, (const t_kv[]){{"adapter.type", 's', "ia3", 0}}, 1, NULL);
    expect_refused(L.m, bad, "adapter.type is 'ia3', expected 'lora'");
    /* the output head of a model that has none (tied) */
    make_lora(base, ok, 4, "output", KL_F32, 1);
    make_base(tied, 64, true);
    loaded T = load_model(tied, 8);
    expect_refused(T.m, ok, "LoRA tensor output.weight: the base model has no such projection");
    unload(&T);
    /* hand-written files: a layer the model lacks, a stray tensor, non-finite values, ranks
     * that disagree */
    write_adapter(bad, 2,
                  (const char *[]){"blk.7.attn_q.weight.lora_a", "blk.7.attn_q.weight.lora_b"},
                  (const int[]){64, 4}, (const int[]){4, 64}, 0.01f);
    expect_refused(L.m, bad, "LoRA tensor blk.7.attn_q.weight: the base model has no such");
    write_adapter(bad, 1, (const char *[]){"blk.0.attn_q.weight.lora_c"}, (const int[]){64},
                  (const int[]){4}, 0.01f);
    expect_refused(L.m, bad, "tensor blk.0.attn_q.weight.lora_c is not a LoRA tensor");
    write_adapter(bad, 2,
                  (const char *[]){"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"},
                  (const int[]){64, 4}, (const int[]){4, 64}, NAN);
    expect_refused(L.m, bad, "LoRA tensor blk.0.attn_q.weight.lora_a: value nan at row 0");
    write_adapter(bad, 2,
                  (const char *[]){"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"},
                  (const int[]){64, 4}, (const int[]){4, 64}, 1e6f);
    expect_refused(L.m, bad, "out of F16 range");
    write_adapter(bad, 2,
                  (const char *[]){"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"},
                  (const int[]){64, 2}, (const int[]){4, 64}, 0.01f);
    expect_refused(L.m, bad, "lora_a has rank 4 but blk.0.attn_q.weight.lora_b has 2");
    write_adapter(bad, 0, NULL, NULL, NULL, 0.f);
    expect_refused(L.m, bad, "the adapter has no LoRA tensors");
    /* and a good one loads (the checks above are not refusing everything) */
    write_adapter(bad, 2,
                  (const char *[]){"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"},
                  (const int[]){64, 4}, (const int[]){4, 64}, 0.01f);
    model_lora *a;
    kl_err err = {0};
    T_EQ(load_lora(L.m, bad, &a, &err), 0);
    T_NEAR(model_lora_info_of(a)->alpha, 8.f, 0);
    model_lora_free(a);
    unload(&L);
}
