/* Mixtures of experts (model/moe.c): a sequence gets the same bits alone and in a batch with
 * others (its tokens' experts grouped with the other sequence's), quantized and packed, on
 * two workers; a file with one tensor per expert (the older layout) gives the same bits as
 * the stacked file of the same weights. Files whose experts are wrong: model_bind.c. The
 * numerics against references are in model_arch.c (numpy) and the README (llama.cpp). */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/make.h"
#include "model/model.h"
#include "t.h"
#include "t_gguf.h"
#include "t_model.h"

enum { N = 12, VOCAB = 512 };

/* A model file loaded with an F16 cache and two workers (max_batch tokens a batch). */
typedef struct loaded {
    gguf_file *f;
    model *m;
    kv_store *kv;
    kl_workers *w;
} loaded;

static loaded load(const char *path, int max_batch, bool no_repack)
{
    kl_err err = {0};
    loaded L;
    T_EQ(gguf_open(&L.f, path, &err), 0);
    model_opts o = {
        .max_batch_tokens = max_batch, .max_ctx = 64, .n_workers = 2, .no_repack = no_repack};
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
 * as two sequences; a's rows into la. Packed unless no_repack. */
static void run(const char *path, const int32_t *a, const int32_t *b, float *la, bool no_repack)
{
    kl_err err = {0};
    loaded L = load(path, 2 * N, no_repack);
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
        run(path, a, NULL, alone, false);
        run(path, a, b, mixed, false);
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
        loaded L = load(path, N, false);
        int32_t blocks[4] = {0, 1, 2, 3}, tok[N];
        model_seq sq = {blocks, 4};
        float *l = malloc(sizeof(float) * N * VOCAB);
        t_batch tb;
        for (int step = 0; step < 2; step++) {
            for (int i = 0; i < N; i++)
                tok[i] = (i * 37 + 11 * step + 3) % VOCAB;
            model_batch *b = t_batch_seq(&tb, &sq, tok, N, step * N);
            memset(tb.want, 0, sizeof(bool) * (N - 1)); /* the last row's logits only */
            T_EQ(model_forward(L.m, L.w, L.kv, b, l, &err), 0);
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

/* Expert e's bytes of each 3-D stack of the stacked file are the bytes of its own tensor in
 * the split one (blk.N.ffn_gate.E.weight ...), which has every other tensor as it is. */
static void check_same_weights(const char *stacked, const char *split, int experts)
{
    kl_err err = {0};
    gguf_file *a, *b;
    T_EQ(gguf_open(&a, stacked, &err), 0);
    T_EQ(gguf_open(&b, split, &err), 0);
    int64_t stacks = 0;
    for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
        const gguf_tensor *t = gguf_tensor_at(a, i);
        if (t->n_dims < 3) {
            const gguf_tensor *u = gguf_find_tensor(b, t->name);
            T_ASSERT(u && u->type == t->type && u->nbytes == t->nbytes);
            T_ASSERT(!memcmp(u->data, t->data, t->nbytes));
            continue;
        }
        stacks++;
        T_EQ(t->ne[2], experts);
        T_ASSERT(gguf_find_tensor(b, t->name) == NULL);
        size_t bytes = t->nbytes / (size_t)experts;
        char name[256];
        size_t n = strlen(t->name) - strlen("_exps.weight");
        for (int e = 0; e < experts; e++) {
            snprintf(name, sizeof name, "%.*s.%d.weight", (int)n, t->name, e);
            const gguf_tensor *u = gguf_find_tensor(b, name);
            if (!u) t_fail(__FILE__, __LINE__, "%s: no %s", split, name);
            T_ASSERT(u->n_dims == 2 && u->ne[0] == t->ne[0] && u->ne[1] == t->ne[1]);
            T_ASSERT(u->type == t->type && u->nbytes == bytes);
            T_ASSERT(!memcmp(u->data, (const uint8_t *)t->data + (size_t)e * bytes, bytes));
        }
    }
    T_ASSERT(stacks > 0);
    T_EQ(gguf_n_tensors(b), gguf_n_tensors(a) + stacks * (experts - 1));
    gguf_close(b);
    gguf_close(a);
}

/* The older layout (one 2-D tensor per expert: Mixtral files converted before mid-2024) loads
 * and gives the same logits, bit for bit, as the stacked file of the same weights, packed and
 * on the file's own layout (KILN_NO_REPACK), quantized or not; for each architecture with
 * experts (Kiln binds either layout whatever the architecture). Two sequences in one batch,
 * so several experts run in each pass. */
TEST(model_moe_split_experts_same_logits)
{
    static const struct {
        const char *arch, *type;
    } cases[] = {{"llama", "f32"},     {"llama", "q8_0"},   {"llama", "q4_k"},
                 {"qwen2moe", "q8_0"}, {"qwen3moe", "f16"}, {"deepseek2", "q8_0"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        model_make_opts o;
        model_make_defaults(&o);
        o.dim = 256, o.ffn = 256, o.experts = 4, o.experts_used = 2, o.std = 0.15f;
        o.arch = cases[c].arch;
        o.type = (kl_dtype)kl_dtype_from_name(cases[c].type);
        const char *stacked = t_tmp("stacked.gguf"), *split = t_tmp("split.gguf");
        kl_err err = {0};
        T_EQ(model_make(&o, stacked, &err), 0);
        o.experts_split = true;
        T_EQ(model_make(&o, split, &err), 0);
        check_same_weights(stacked, split, o.experts);
        int32_t a[N], b[N];
        for (int i = 0; i < N; i++)
            a[i] = (i * 37 + 3) % VOCAB, b[i] = (i * 101 + 50) % VOCAB;
        float *ls = malloc(sizeof(float) * N * VOCAB), *lp = malloc(sizeof(float) * N * VOCAB);
        for (int nr = 0; nr < 2; nr++) {
            run(stacked, a, b, ls, nr);
            run(split, a, b, lp, nr);
            if (memcmp(ls, lp, sizeof(float) * N * VOCAB))
                t_fail(__FILE__, __LINE__, "%s %s%s: the split file's logits differ", o.arch,
                       cases[c].type, nr ? " (not packed)" : "");
        }
        free(ls), free(lp);
    }
}
