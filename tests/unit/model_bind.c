/* model/load.c binds a model from its metadata as llama.cpp does and refuses what it cannot
 * run by name. RoPE scaling: none, linear, yarn (linear when the type is absent); any other
 * type is refused (YaRN was silently ignored, so a YaRN model ran as the unscaled one; the
 * angles themselves are checked against the formulas in kernels_ref_rope_yarn_matches_formula).
 * Mixture-of-Experts files are refused as such. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/make.h"
#include "model/model.h"
#include "t.h"
#include "t_gguf.h"
#include "t_model.h"

/* Loads path, runs tokens 0..n-1 of one sequence, writes n rows of logits. Returns the
 * model's hparams (copied). */
static model_hparams run(const char *path, int n, float *logits)
{
    kl_err err = {0};
    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    model *m;
    model_opts o = {.max_batch_tokens = n, .max_ctx = 256};
    T_EQ(model_load(&m, f, &o, &err), 0);
    model_hparams hp = *model_hparams_of(m);
    kv_store *kv;
    kv_store_config kc = {hp.n_layers, hp.n_kv_heads * hp.head_dim, 16, KL_F32, 1u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int32_t blocks[16], tok[T_BATCH_MAX];
    for (int i = 0; i < 16; i++)
        blocks[i] = i;
    for (int i = 0; i < n; i++)
        tok[i] = (i * 37 + 5) % hp.n_vocab;
    model_seq sq = {blocks, 16};
    t_batch tb;
    T_EQ(model_forward(m, NULL, kv, t_batch_seq(&tb, &sq, tok, n, 0), logits, &err), 0);
    kv_store_destroy(kv);
    model_free(m);
    gguf_close(f);
    return hp;
}

static int load_rc(const char *path, kl_err *err)
{
    gguf_file *f;
    T_EQ(gguf_open(&f, path, err), 0);
    model *m = NULL;
    model_opts o = {0};
    int rc = model_load(&m, f, &o, err);
    model_free(m);
    gguf_close(f);
    return rc;
}

TEST(model_rope_scaling_bound_from_metadata)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.std = 0.2f; /* sharp enough that positions matter */
    const char *src = t_tmp("m.gguf"), *yarn = t_tmp("yarn.gguf"), *lin = t_tmp("lin.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, src, &err), 0);
    const t_kv kv[] = {{"llama.rope.scaling.factor", 'f', NULL, 4},
                       {"llama.rope.scaling.original_context_length", 'u', NULL, 512},
                       {"llama.rope.scaling.type", 's', "yarn", 0}};
    t_gguf_copy(src, yarn, kv, 3, NULL);
    t_gguf_copy(src, lin, kv, 1, NULL); /* no type: linear, as llama.cpp */
    enum { N = 24 };
    int nv = o.vocab;
    float *l0 = malloc(sizeof(float) * N * (size_t)nv),
          *l1 = malloc(sizeof(float) * N * (size_t)nv),
          *l2 = malloc(sizeof(float) * N * (size_t)nv);
    model_hparams h0 = run(src, N, l0), h1 = run(yarn, N, l1), h2 = run(lin, N, l2);
    T_ASSERT(!strcmp(h0.rope_scaling, "linear") && h0.rope_factor == 1.0f);
    T_ASSERT(!strcmp(h1.rope_scaling, "yarn") && h1.rope_factor == 4.0f);
    T_EQ(h1.n_ctx_orig, 512);
    T_EQ(h0.n_ctx_orig, 2048); /* the training context when the file has none */
    T_ASSERT(!strcmp(h2.rope_scaling, "linear") && h2.rope_factor == 4.0f);
    /* position 0 has no rotation (YaRN scales q and k alike, one key: the same output);
     * later positions see the scaled angles */
    T_MEMEQ(l1, l0, sizeof(float) * (size_t)nv);
    T_MEMEQ(l2, l0, sizeof(float) * (size_t)nv);
    double d1 = 0, d2 = 0;
    for (size_t i = (size_t)nv; i < (size_t)N * (size_t)nv; i++)
        d1 += fabs((double)(l1[i] - l0[i])), d2 += fabs((double)(l2[i] - l1[i]));
    T_ASSERT(d1 > 1e-3 * N * nv); /* YaRN is not ignored */
    T_ASSERT(d2 > 1e-3 * N * nv); /* and differs from plain interpolation */
    free(l0), free(l1), free(l2);

    /* a scaling type Kiln does not implement is refused by name, never ignored */
    const t_kv lr = {"llama.rope.scaling.type", 's', "longrope", 0};
    t_gguf_copy(src, yarn, &lr, 1, NULL);
    T_EQ(load_rc(yarn, &err), KL_EUNSUP);
    T_CONTAINS(err.msg, "rope scaling type 'longrope' is not supported");
    const t_kv neg[] = {{"llama.rope.scaling.factor", 'f', NULL, -2}, kv[2]};
    t_gguf_copy(src, yarn, neg, 2, NULL);
    T_EQ(load_rc(yarn, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "bad rope scaling");
}

/* A file that says it is a Mixtral (llama with experts) is bound as one: without its expert
 * tensors it is refused naming the router, not as a file missing blk.0.ffn_gate.weight
 * (model_moe.c has the architectures without experts). */
TEST(model_load_refuses_moe_by_name)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *src = t_tmp("m.gguf"), *moe = t_tmp("moe.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, src, &err), 0);
    const t_kv kv[] = {{"llama.expert_count", 'u', NULL, 8},
                       {"llama.expert_used_count", 'u', NULL, 2}};
    const char *drop[] = {"blk.0.ffn_gate.weight", "blk.1.ffn_gate.weight", NULL};
    t_gguf_copy(src, moe, kv, 2, drop);
    T_EQ(load_rc(moe, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "missing tensor blk.0.ffn_gate_inp.weight");
}

/* Experts where the architecture has none (gemma), more used than there are, a qwen2moe
 * without experts, an expert stack of the wrong count: each refused, saying so. */
TEST(model_moe_bad_experts_refused)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *dense = t_tmp("g.gguf"), *mix = t_tmp("mix.gguf"), *bad = t_tmp("bad.gguf");
    kl_err err = {0};
    o.arch = "gemma";
    T_EQ(model_make(&o, dense, &err), 0);
    const t_kv g[] = {{"gemma.expert_count", 'u', NULL, 8},
                      {"gemma.expert_used_count", 'u', NULL, 2}};
    t_gguf_copy(dense, bad, g, 2, NULL);
    T_EQ(load_rc(bad, &err), KL_EUNSUP);
    T_CONTAINS(err.msg, "a Mixture-of-Experts gemma model (8 experts, 2 used per token)");

    o.arch = "llama", o.experts = 4;
    T_EQ(model_make(&o, mix, &err), 0);
    const t_kv used[] = {{"llama.expert_used_count", 'u', NULL, 5}};
    t_gguf_copy(mix, bad, used, 1, NULL);
    T_EQ(load_rc(bad, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "it has 4 and 5");
    const t_kv count[] = {{"llama.expert_count", 'u', NULL, 3}};
    t_gguf_copy(mix, bad, count, 1, NULL);
    T_EQ(load_rc(bad, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "ffn_gate_inp.weight has shape [64, 4, 1], expected [64, 3, 1]");

    o.arch = "qwen2moe", o.experts = 0;
    T_EQ(model_make(&o, bad, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "qwen2moe is a Mixture-of-Experts architecture");
    o.arch = "qwen2", o.experts = 4;
    T_EQ(model_make(&o, bad, &err), KL_EINVAL);
}

/* The older layout, one 2-D tensor per expert (blk.N.ffn_gate.E.weight ...; same logits as
 * the stacked file: model_moe.c), loads; each way it can be wrong is refused naming the
 * tensor: an expert missing, one of another type than expert 0 or of the wrong shape, an
 * expert past the count or spelled otherwise, a stack and an expert's own tensor both. */
TEST(model_moe_split_experts_refused)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.experts = 4, o.experts_split = true;
    const char *split = t_tmp("split.gguf"), *other = t_tmp("other.gguf"), *bad = t_tmp("bad.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, split, &err), 0);
    T_EQ(load_rc(split, &err), 0);

    const char *drop[] = {"blk.1.ffn_up.2.weight", NULL};
    t_gguf_copy(split, bad, NULL, 0, drop);
    T_EQ(load_rc(bad, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "missing tensor blk.1.ffn_up.2.weight (expert 2 of 4: this file has "
                        "blk.1.ffn_up_exps.weight one tensor per expert)");

    o.type = KL_F16;
    T_EQ(model_make(&o, other, &err), 0);
    const t_graft type[] = {{"blk.0.ffn_down.1.weight", "blk.0.ffn_down.1.weight"}};
    t_gguf_graft(split, bad, other, type, 1);
    T_EQ(load_rc(bad, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "tensor blk.0.ffn_down.1.weight has type f16 but "
                        "blk.0.ffn_down.0.weight has f32");

    o.type = KL_F32, o.ffn = 128;
    T_EQ(model_make(&o, other, &err), 0);
    const t_graft shape[] = {{"blk.0.ffn_gate.3.weight", "blk.0.ffn_gate.3.weight"}};
    t_gguf_graft(split, bad, other, shape, 1);
    T_EQ(load_rc(bad, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "tensor blk.0.ffn_gate.3.weight has shape [64, 128, 1], expected "
                        "[64, 192, 1]");

    const char *extra[] = {"blk.0.ffn_up.4.weight", "blk.0.ffn_up.01.weight",
                           "blk.0.ffn_up.-1.weight"};
    for (int i = 0; i < 3; i++) {
        const t_graft more[] = {{extra[i], "blk.0.ffn_up.1.weight"}};
        t_gguf_graft(split, bad, split, more, 1);
        T_EQ(load_rc(bad, &err), KL_EUNSUP);
        T_CONTAINS(err.msg, extra[i]);
        T_CONTAINS(err.msg, "is not part of a llama model");
    }

    o.ffn = 192, o.experts_split = false; /* a stack, and expert 0 of it again on its own */
    T_EQ(model_make(&o, other, &err), 0);
    const t_graft both[] = {{"blk.1.ffn_gate.0.weight", "blk.1.ffn_gate.0.weight"}};
    t_gguf_graft(other, bad, split, both, 1);
    T_EQ(load_rc(bad, &err), KL_EUNSUP);
    T_CONTAINS(err.msg, "tensor blk.1.ffn_gate.0.weight is not part of a llama model");

    o.experts = 0, o.experts_split = true;
    T_EQ(model_make(&o, bad, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "--experts-split needs experts");
}
