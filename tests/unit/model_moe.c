/* Mixtures of experts (model/moe.c): a sequence gets the same bits alone and in a batch with
 * others (its tokens' experts grouped with the other sequence's), quantized and packed, on
 * two workers. Files whose experts are wrong: model_bind.c. The numerics against references
 * are in model_arch.c (numpy) and the README (llama.cpp). */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/make.h"
#include "model/model.h"
#include "t.h"
#include "t_gguf.h"

enum { N = 12, VOCAB = 512 };

/* A model file loaded with an F16 cache and two workers (max_batch tokens a batch). */
typedef struct loaded {
    gguf_file *f;
    model *m;
    kv_store *kv;
    kl_workers *w;
} loaded;

static loaded load(const char *path, int max_batch)
{
    kl_err err = {0};
    loaded L;
    T_EQ(gguf_open(&L.f, path, &err), 0);
    model_opts o = {.max_batch_tokens = max_batch, .max_ctx = 64, .n_workers = 2};
    if (model_load(&L.m, L.f, &o, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
    const model_hparams *hp = model_hparams_of(L.m);
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F16, 4u << 20};
    T_EQ(kv_store_create(&L.kv, &kc, &err), 0);
    L.w = kl_workers_create(2);
    return L;
}

static void unload(loaded *L)
{
    kl_workers_destroy(L->w);
    kv_store_destroy(L->kv);
    model_free(L->m);
    gguf_close(L->f);
}

/* Logits of the batch: sequence 0 (tokens a) alone when b is NULL, else a and b interleaved
 * as two sequences; a's rows into la. */
static void run(const char *path, const int32_t *a, const int32_t *b, float *la)
{
    kl_err err = {0};
    loaded L = load(path, 2 * N);
    int32_t blocks[2] = {0, 1}, tok[2 * N], pos[2 * N], seq[2 * N];
    bool want[2 * N];
    model_seq sq[2] = {{&blocks[0], 1}, {&blocks[1], 1}};
    int n = 0;
    for (int i = 0; i < N; i++) {
        tok[n] = a[i], pos[n] = i, seq[n] = 0, want[n++] = true;
        if (b) tok[n] = b[i], pos[n] = i, seq[n] = 1, want[n++] = true;
    }
    float *l = malloc(sizeof(float) * (size_t)n * VOCAB);
    model_batch batch = {.n = n,
                         .token = tok,
                         .pos = pos,
                         .seq = seq,
                         .want_logits = want,
                         .n_seqs = b ? 2 : 1,
                         .seqs = sq};
    T_EQ(model_forward(L.m, L.w, L.kv, &batch, l, &err), 0);
    for (int i = 0; i < N; i++)
        memcpy(la + (size_t)i * VOCAB, l + (size_t)i * (b ? 2 : 1) * VOCAB, sizeof(float) * VOCAB);
    free(l);
    unload(&L);
}

/* Mixtral, and deepseek2 (its latent attention's per-head products too, over head-major rows
 * of both sequences). */
TEST(model_moe_batch_invariance)
{
    const char *types[] = {"q8_0", "q4_k", "f16"};
    for (int t = 0; t < 6; t++) {
        model_make_opts o;
        model_make_defaults(&o);
        o.dim = 256, o.ffn = 256, o.experts = 8, o.experts_used = 2, o.std = 0.15f;
        o.arch = t < 3 ? "llama" : "deepseek2";
        o.type = (kl_dtype)kl_dtype_from_name(types[t % 3]);
        const char *path = t_tmp("mix.gguf");
        kl_err err = {0};
        T_EQ(model_make(&o, path, &err), 0);
        int32_t a[N], b[N];
        for (int i = 0; i < N; i++)
            a[i] = (i * 37 + 3) % VOCAB, b[i] = (i * 101 + 50) % VOCAB;
        float *alone = malloc(sizeof(float) * N * VOCAB),
              *mixed = malloc(sizeof(float) * N * VOCAB);
        run(path, a, NULL, alone);
        run(path, a, b, mixed);
        if (memcmp(alone, mixed, sizeof(float) * N * VOCAB))
            t_fail(__FILE__, __LINE__, "%s %s: a sequence's logits change in a batch", o.arch,
                   types[t % 3]);
        free(alone), free(mixed);
    }
}

/* Expert load (model_expert_load, /metrics' kiln_moe_expert_tokens_total): after two batches
 * of N tokens each, every choice of every MoE layer counted once: the counts sum to 2N x
 * experts used x MoE layers (deepseek2's leading dense layer not among them), no expert
 * above 2N per layer, more than one expert chosen; a dense model has none. */
TEST(model_moe_expert_load_counts_every_choice)
{
    const char *archs[] = {"llama", "deepseek2", "llama"};
    for (int a = 0; a < 3; a++) {
        model_make_opts o;
        model_make_defaults(&o);
        o.arch = archs[a], o.layers = 3, o.std = 0.15f, o.experts_used = 2;
        o.experts = a < 2 ? 4 : 0; /* the last: a dense llama */
        const char *path = t_tmp("load.gguf");
        kl_err err = {0};
        T_EQ(model_make(&o, path, &err), 0);
        loaded L = load(path, N);
        int32_t blocks[4] = {0, 1, 2, 3}, tok[N], pos[N], seq[N] = {0};
        bool want[N] = {0};
        model_seq sq = {blocks, 4};
        float *l = malloc(sizeof(float) * N * VOCAB);
        for (int step = 0; step < 2; step++) {
            for (int i = 0; i < N; i++)
                tok[i] = (i * 37 + 11 * step + 3) % VOCAB, pos[i] = step * N + i;
            want[N - 1] = true;
            model_batch b = {.n = N,
                             .token = tok,
                             .pos = pos,
                             .seq = seq,
                             .want_logits = want,
                             .n_seqs = 1,
                             .seqs = &sq};
            T_EQ(model_forward(L.m, L.w, L.kv, &b, l, &err), 0);
        }
        int ne;
        const uint64_t *counts = model_expert_load(L.m, &ne);
        if (a == 2) {
            T_ASSERT(counts == NULL);
            T_EQ(ne, 0);
        } else {
            int moe_layers = a == 1 ? o.layers - 1 : o.layers; /* deepseek2: 1 dense first */
            uint64_t sum = 0;
            int used = 0;
            T_EQ(ne, 4);
            for (int e = 0; e < ne; e++) {
                T_ASSERT(counts[e] <= (uint64_t)(2 * N * moe_layers));
                sum += counts[e], used += counts[e] > 0;
            }
            T_EQ(sum, (uint64_t)(2 * N * 2 * moe_layers));
            T_ASSERT(used > 1);
        }
        free(l);
        unload(&L);
    }
}
