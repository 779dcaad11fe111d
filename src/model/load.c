/* model/load.c: reads the hyperparameters of a llama-family GGUF (llama, qwen2, qwen3) and
 * binds every weight to a view of the mapping after checking its shape and dtype, then
 * allocates the forward pass's scratch. Nothing is copied: the file must outlive the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"

typedef struct loader {
    gguf_file *f;
    const char *arch;
    const model_arch *a;
    kl_err *err;
} loader;

/* Reads "<arch>.<key>" as u32 into *out; absent keeps *out when optional. Returns 0/KL_E*. */
static int get_u32(loader *L, const char *key, int *out, bool optional)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->arch, key);
    uint32_t v;
    int rc = gguf_get_u32(L->f, full, &v, L->err);
    if (rc == KL_ENOTFOUND && optional) return 0;
    if (rc == KL_ENOTFOUND)
        return kl_errf(L->err, KL_EBADFILE, "%s: missing metadata key %s", gguf_path(L->f), full);
    if (rc) return rc;
    if (v > (1u << 24))
        return kl_errf(L->err, KL_EBADFILE, "%s: %s = %u is out of range", gguf_path(L->f), full,
                       v);
    *out = (int)v;
    return 0;
}

static int get_f32(loader *L, const char *key, float *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->arch, key);
    int rc = gguf_get_f32(L->f, full, out, L->err);
    if (rc == KL_ENOTFOUND) return 0;
    if (rc) return rc;
    if (!isfinite(*out))
        return kl_errf(L->err, KL_EBADFILE, "%s: %s is not finite", gguf_path(L->f), full);
    return 0;
}

/* Finds tensor name with the given shape (cols = ne[0], rows = ne[1]; rows 0 for 1-D;
 * experts = ne[2] for a 3-D stack, else 0). Returns NULL with err set when absent (unless
 * optional), misshapen or of an unusable type. */
static const gguf_tensor *find3(loader *L, const char *name, int64_t cols, int64_t rows,
                                int64_t experts, bool optional)
{
    const gguf_tensor *t = gguf_find_tensor(L->f, name);
    if (!t) {
        if (!optional) kl_errf(L->err, KL_EBADFILE, "%s: missing tensor %s", gguf_path(L->f), name);
        return NULL;
    }
    bool ok = experts
                  ? t->n_dims == 3 && t->ne[0] == cols && t->ne[1] == rows && t->ne[2] == experts
              : rows ? t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows
                     : t->n_dims == 1 && t->ne[0] == cols;
    if (!ok) {
        kl_errf(L->err, KL_EBADFILE,
                "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                gguf_path(L->f), name, (long long)t->ne[0], (long long)t->ne[1],
                (long long)(t->n_dims > 2 ? t->ne[2] : 1), (long long)cols,
                (long long)(rows ? rows : 1), (long long)(experts ? experts : 1));
        return NULL;
    }
    return t;
}

static const gguf_tensor *find(loader *L, const char *name, int64_t cols, int64_t rows,
                               bool optional)
{
    return find3(L, name, cols, rows, 0, optional);
}

static int bind_vec(loader *L, const char *name, int64_t n, bool optional, const float **out)
{
    *out = NULL;
    const gguf_tensor *t = find(L, name, n, 0, optional);
    if (!t) return optional && !gguf_find_tensor(L->f, name) ? 0 : KL_EBADFILE;
    if (t->type != KL_F32)
        return kl_errf(L->err, KL_EUNSUP, "%s: tensor %s is %s; 1-D tensors must be f32",
                       gguf_path(L->f), name, kl_dtype_get(t->type)->name);
    *out = t->data;
    return 0;
}

/* Binds a matrix, or a stack of experts matrices (experts > 0) to w[0..experts). */
static int bind_mat(loader *L, const char *name, int64_t cols, int64_t rows, int64_t experts,
                    model_w *w)
{
    const gguf_tensor *t = find3(L, name, cols, rows, experts, false);
    if (!t) return KL_EBADFILE;
    if (!kl_matmul_supports(t->type))
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: tensor %s has type %s, which Kiln's matmul does not support",
                       gguf_path(L->f), name, kl_dtype_get(t->type)->name);
    size_t bytes = kl_dtype_row_bytes(t->type, cols) * (size_t)rows;
    for (int64_t e = 0; e < (experts ? experts : 1); e++)
        w[e] = (model_w){(const uint8_t *)t->data + (size_t)e * bytes, t->type, rows, cols, NULL};
    return 0;
}

/* Whether the file holds any expert of stack t one tensor each (the older layout). */
static bool has_split_experts(loader *L, const model_tensor *t)
{
    char name[GGUF_MAX_NAME];
    for (int64_t e = 0; e < t->experts; e++) {
        model_expert_name(t->name, e, name);
        if (gguf_find_tensor(L->f, name)) return true;
    }
    return false;
}

/* Binds stack t from one 2-D tensor per expert, as Mixtral files converted before mid-2024
 * have them (blk.N.ffn_gate.E.weight for blk.N.ffn_gate_exps.weight). Each expert's view is
 * its own tensor, as it is a slice of a 3-D stack: nothing is copied, and packing (or not)
 * reads, packs and releases each expert as it does a stack's. Every expert must be there, of
 * the stack's shape, and all of one type (the matmul scratch and the grouped products take
 * the first expert's); an error names the tensor. */
static int bind_split_experts(loader *L, model_tensor *t)
{
    char name[GGUF_MAX_NAME], first[GGUF_MAX_NAME];
    kl_dtype type = KL_F32;
    for (int64_t e = 0; e < t->experts; e++) {
        model_expert_name(t->name, e, name);
        const gguf_tensor *g = gguf_find_tensor(L->f, name);
        if (!g)
            return kl_errf(L->err, KL_EBADFILE,
                           "%s: missing tensor %s (expert %lld of %lld: this file has %s one "
                           "tensor per expert)",
                           gguf_path(L->f), name, (long long)e, (long long)t->experts, t->name);
        int rc = bind_mat(L, name, t->cols, t->rows, 0, &t->mat[e]);
        if (rc) return rc;
        if (e == 0) {
            type = g->type;
            snprintf(first, sizeof first, "%s", name);
        } else if (g->type != type) {
            return kl_errf(L->err, KL_EBADFILE,
                           "%s: tensor %s has type %s but %s has %s: the experts of one "
                           "layer's projection must share a type",
                           gguf_path(L->f), name, kl_dtype_get(g->type)->name, first,
                           kl_dtype_get(type)->name);
        }
    }
    t->split = true;
    return 0;
}

/* Binds t: a stack of experts as a 3-D tensor or, when the file has none, one tensor per
 * expert; a matrix; a vector. */
static int bind_tensor(loader *L, model_tensor *t)
{
    if (!t->mat) return bind_vec(L, t->name, t->cols, t->optional, t->vec);
    if (t->experts && !gguf_find_tensor(L->f, t->name) && has_split_experts(L, t))
        return bind_split_experts(L, t);
    return bind_mat(L, t->name, t->cols, t->rows, t->experts, t->mat);
}

/* The keys only some architectures have (see arch.c): sliding window, soft-capping, scales. */
static int read_quirks(loader *L, model_hparams *hp)
{
    unsigned q = L->a->quirks;
    int rc;
    hp->emb_scale = hp->residual_scale = hp->logit_scale = 1.f;
    if ((rc = get_u32(L, "attention.sliding_window", &hp->n_swa, true))) return rc;
    if ((rc = get_u32(L, "pooling_type", &hp->pooling, true))) return rc;
    if (hp->pooling > MODEL_POOL_LAST)
        return kl_errf(L->err, KL_EUNSUP,
                       "%s.pooling_type %d is not supported (0-3: none, mean, "
                       "cls, last)",
                       L->arch, hp->pooling);
    if (!strcmp(L->a->name, "gemma2") && !gguf_find_kv(L->f, "gemma2.attention.sliding_window"))
        hp->n_swa = 4096; /* llama.cpp's default for Gemma 2 files without the key */
    if (q & ARCH_SOFTCAP) {
        hp->softcap_attn = 50.f, hp->softcap_final = 30.f; /* llama.cpp's defaults */
        if ((rc = get_f32(L, "attn_logit_softcapping", &hp->softcap_attn)) ||
            (rc = get_f32(L, "final_logit_softcapping", &hp->softcap_final)))
            return rc;
    }
    if (q & ARCH_GRANITE) {
        if ((rc = get_f32(L, "embedding_scale", &hp->emb_scale)) ||
            (rc = get_f32(L, "residual_scale", &hp->residual_scale)) ||
            (rc = get_f32(L, "logit_scale", &hp->logit_scale)))
            return rc;
    }
    if ((q & ARCH_LOGIT_SCALE) && (rc = get_f32(L, "logit_scale", &hp->logit_scale))) return rc;
    if (q & ARCH_BERT) { /* an encoder: attends both ways unless the file says it is causal */
        char key[128];
        bool causal = false;
        snprintf(key, sizeof key, "%s.attention.causal", L->arch);
        if (gguf_find_kv(L->f, key) && (rc = gguf_get_bool(L->f, key, &causal, L->err))) return rc;
        hp->non_causal = !causal;
        hp->encoder_only = true;
    }
    if (hp->n_swa < 0 || hp->softcap_attn < 0 || hp->softcap_final < 0 || !(hp->emb_scale > 0) ||
        !(hp->residual_scale > 0) || !(hp->logit_scale > 0))
        return kl_errf(L->err, KL_EBADFILE, "%s: bad sliding window, soft-capping or scale",
                       gguf_path(L->f));
    return 0;
}

/* A mixture's expert counts: 1 to MODEL_MAX_EXPERTS experts, 1 to all of them used. */
static int check_expert_counts(loader *L, const model_hparams *hp)
{
    if (hp->n_expert < 1 || hp->n_expert > MODEL_MAX_EXPERTS || hp->n_expert_used < 1 ||
        hp->n_expert_used > hp->n_expert)
        return kl_errf(L->err, KL_EBADFILE,
                       "%s: a Mixture-of-Experts model needs %s.expert_count (1 to %d) and "
                       "expert_used_count (1 to the count); it has %d and %d",
                       gguf_path(L->f), L->arch, MODEL_MAX_EXPERTS, hp->n_expert,
                       hp->n_expert_used);
    return 0;
}

static int get_bool(loader *L, const char *key, bool *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", L->arch, key);
    int rc = gguf_get_bool(L->f, full, out, L->err);
    return rc == KL_ENOTFOUND ? 0 : rc;
}

/* deepseek2's FFN as llama.cpp reads it: leading_dense_block_count dense layers (the
 * feed_forward_length wide), then experts (expert_feed_forward_length wide) with
 * expert_shared_count ungated shared experts fused into one, routed by expert_gating_func
 * (absent: softmax; sigmoid for DeepSeek-V3, with a selection bias exp_probs_b), the chosen
 * weights renormalised when expert_weights_norm and scaled by expert_weights_scale.
 * DeepSeek-V3's grouped routing (n_group, topk_group) is not in llama.cpp's Feb 2025 tree
 * nor in its files: the experts are chosen among all of them. */
static int read_deepseek_moe(loader *L, model_hparams *hp)
{
    int rc, gating = 0;
    if ((rc = get_u32(L, "leading_dense_block_count", &hp->n_dense_lead, false)) ||
        (rc = get_u32(L, "expert_shared_count", &hp->n_expert_shared, false)) ||
        (rc = get_u32(L, "expert_gating_func", &gating, true)) ||
        (rc = get_bool(L, "expert_weights_norm", &hp->expert_norm)))
        return rc;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_weights_scale", L->arch);
    if (!gguf_find_kv(L->f, key))
        return kl_errf(L->err, KL_EBADFILE, "%s: missing metadata key %s", gguf_path(L->f), key);
    if ((rc = get_f32(L, "expert_weights_scale", &hp->expert_scale))) return rc;
    if (gating > MODEL_GATING_SIGMOID)
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: %s.expert_gating_func %d is not supported (1 softmax, 2 sigmoid)",
                       gguf_path(L->f), L->arch, gating);
    hp->expert_gating = gating ? gating : MODEL_GATING_SOFTMAX;
    if (hp->n_dense_lead > hp->n_layers)
        return kl_errf(L->err, KL_EBADFILE, "%s: %d leading dense layers of %d", gguf_path(L->f),
                       hp->n_dense_lead, hp->n_layers);
    if (hp->n_dense_lead == hp->n_layers) { /* no mixture at all */
        hp->n_expert = hp->n_expert_used = 0;
        return 0;
    }
    if ((rc = check_expert_counts(L, hp))) return rc;
    if (hp->n_expert_shared < 1)
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: a deepseek2 model without shared experts (expert_shared_count 0) "
                       "is a variant Kiln does not support",
                       gguf_path(L->f));
    if ((rc = get_u32(L, "expert_feed_forward_length", &hp->ff_exp, false))) return rc;
    if (hp->ff_exp < 1 || hp->n_expert_shared > (1 << 24) / hp->ff_exp || !(hp->expert_scale > 0))
        return kl_errf(L->err, KL_EBADFILE, "%s: bad expert width %d, shared count %d or scale",
                       gguf_path(L->f), hp->ff_exp, hp->n_expert_shared);
    hp->ff_shexp = hp->ff_exp * hp->n_expert_shared;
    return 0;
}

/* Multi-head latent attention (deepseek2, model/mla.c) as llama.cpp reads it: every query
 * head attends with a key of attention.key_length (its last rope.dimension_count dims
 * rotated, shared by the heads) and a value of attention.value_length, from a compressed
 * latent of attention.kv_lora_rank; the query is low-rank (attention.q_lora_rank) when the
 * file has attn_q_a (llama.cpp tells by the layer count: 27 layers, V2-Lite, have attn_q).
 * The heads are as many as the query's: a file saying otherwise is a variant. */
static int read_mla(loader *L, model_hparams *hp)
{
    int rc;
    hp->v_head_dim = hp->dim / hp->n_heads;
    if ((rc = get_u32(L, "attention.kv_lora_rank", &hp->kv_lora, false)) ||
        (rc = get_u32(L, "attention.value_length", &hp->v_head_dim, true)) ||
        (rc = get_f32(L, "rope.scaling.yarn_log_multiplier", &hp->yarn_log_mul)))
        return rc;
    if (gguf_find_tensor(L->f, "blk.0.attn_q_a.weight") &&
        (rc = get_u32(L, "attention.q_lora_rank", &hp->q_lora, false)))
        return rc;
    if (hp->n_kv_heads != hp->n_heads)
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: a deepseek2 model with %d KV heads for %d query heads is a variant "
                       "Kiln does not support (multi-head latent attention has one per head)",
                       gguf_path(L->f), hp->n_kv_heads, hp->n_heads);
    if (hp->kv_lora < 1 || hp->q_lora < 0 || hp->v_head_dim < 1 || hp->n_rot >= hp->head_dim)
        return kl_errf(L->err, KL_EBADFILE,
                       "%s: bad latent attention shape (kv rank %d, key %d with %d rotated, "
                       "value %d)",
                       gguf_path(L->f), hp->kv_lora, hp->head_dim, hp->n_rot, hp->v_head_dim);
    /* the cache holds the latent and the rotated key part: one KV head (model/mla.c) */
    hp->qk_dim = hp->head_dim;
    hp->head_dim = hp->kv_lora + hp->n_rot;
    hp->n_kv_heads = 1;
    return 0;
}

/* A mixture of experts (model/moe.c): <arch>.expert_count experts per layer, of which
 * expert_used_count run per token, each expert_feed_forward_length wide (Mixtral: the
 * feed_forward_length), and qwen2moe's shared expert (expert_shared_feed_forward_length,
 * else the feed_forward_length, as llama.cpp). An architecture without experts that has
 * them is refused by name. */
static int read_experts(loader *L, model_hparams *hp)
{
    int rc;
    if ((rc = get_u32(L, "expert_count", &hp->n_expert, true)) ||
        (rc = get_u32(L, "expert_used_count", &hp->n_expert_used, true)))
        return rc;
    unsigned q = L->a->quirks;
    hp->expert_gating = MODEL_GATING_SOFTMAX;
    hp->expert_norm = q & ARCH_MOE_NORM;
    hp->expert_scale = 1.f;
    if (q & ARCH_MOE_DEEPSEEK) return read_deepseek_moe(L, hp);
    bool inp = gguf_find_tensor(L->f, "blk.0.ffn_gate_inp.weight") != NULL;
    if ((hp->n_expert > 0 || inp) && !(q & ARCH_EXPERTS))
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: a Mixture-of-Experts %s model (%d experts, %d used per token); Kiln "
                       "runs experts in llama (Mixtral), qwen2moe, qwen3moe and deepseek2 "
                       "models only",
                       gguf_path(L->f), L->a->name, hp->n_expert, hp->n_expert_used);
    if (!hp->n_expert && !inp && !(q & ARCH_MOE_ONLY)) return 0;
    if ((rc = check_expert_counts(L, hp))) return rc;
    hp->ff_exp = hp->hidden_dim;
    if (q & ARCH_MOE_ONLY) hp->ff_exp = hp->hidden_dim / hp->n_expert_used; /* llama.cpp's */
    if ((rc = get_u32(L, "expert_feed_forward_length", &hp->ff_exp, true))) return rc;
    if (q & ARCH_SHARED_EXPERT) {
        hp->ff_shexp = hp->hidden_dim;
        if ((rc = get_u32(L, "expert_shared_feed_forward_length", &hp->ff_shexp, true))) return rc;
    }
    if (hp->ff_exp < 1 || ((q & ARCH_SHARED_EXPERT) && hp->ff_shexp < 1))
        return kl_errf(L->err, KL_EBADFILE, "%s: bad expert feed-forward length %d / %d",
                       gguf_path(L->f), hp->ff_exp, hp->ff_shexp);
    return 0;
}

static int read_hparams(loader *L, model_hparams *hp)
{
    if (!(L->a = model_arch_find(L->arch)))
        return kl_errf(L->err, KL_EUNSUP, "%s: architecture '%s' is not supported (%s)",
                       gguf_path(L->f), L->arch, model_arch_names());
    hp->rope_neox = L->a->neox;
    snprintf(hp->arch, sizeof hp->arch, "%s", L->arch);
    int rc;
    if ((rc = get_u32(L, "embedding_length", &hp->dim, false)) ||
        (rc = get_u32(L, "block_count", &hp->n_layers, false)) ||
        (rc = get_u32(L, "feed_forward_length", &hp->hidden_dim, false)) ||
        (rc = get_u32(L, "attention.head_count", &hp->n_heads, false)))
        return rc;
    hp->n_kv_heads = hp->n_heads;
    hp->n_ctx_train = 2048;
    hp->rope_theta = 10000.f;
    hp->norm_eps = 1e-5f;
    if ((rc = get_u32(L, "attention.head_count_kv", &hp->n_kv_heads, true)) ||
        (rc = get_u32(L, "context_length", &hp->n_ctx_train, true)) ||
        (rc = get_f32(L, "rope.freq_base", &hp->rope_theta)) ||
        (rc = get_f32(L,
                      L->a->norm == MODEL_NORM_RMS ? "attention.layer_norm_rms_epsilon"
                                                   : "attention.layer_norm_epsilon",
                      &hp->norm_eps)) ||
        (rc = read_quirks(L, hp)) || (rc = read_experts(L, hp)))
        return rc;
    if (hp->dim < 1 || hp->n_layers < 1 || hp->n_heads < 1 || hp->hidden_dim < 1 ||
        hp->n_kv_heads < 1 || hp->n_heads % hp->n_kv_heads || hp->dim % hp->n_heads ||
        hp->n_ctx_train < 1)
        return kl_errf(L->err, KL_EBADFILE,
                       "%s: inconsistent hyperparameters (dim %d, heads %d/%d)", gguf_path(L->f),
                       hp->dim, hp->n_heads, hp->n_kv_heads);
    hp->head_dim = hp->dim / hp->n_heads;
    if ((rc = get_u32(L, "attention.key_length", &hp->head_dim, true))) return rc;
    hp->n_rot = hp->head_dim;
    hp->v_head_dim = hp->head_dim;
    if ((rc = get_u32(L, "rope.dimension_count", &hp->n_rot, true))) return rc;
    if ((L->a->quirks & ARCH_MLA) && (rc = read_mla(L, hp))) return rc;
    if (hp->head_dim < 2 || hp->head_dim > MODEL_MAX_HEAD_DIM || hp->n_rot < 2 ||
        hp->n_rot > hp->head_dim || hp->n_rot % 2 || hp->rope_theta <= 0 || !(hp->norm_eps > 0))
        return kl_errf(L->err, KL_EBADFILE, "%s: bad head_dim %d / rope dims %d / theta / eps",
                       gguf_path(L->f), hp->head_dim, hp->n_rot);
    const gguf_tensor *emb = gguf_find_tensor(L->f, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return kl_errf(L->err, KL_EBADFILE, "%s: missing tensor token_embd.weight",
                       gguf_path(L->f));
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 22))
        return kl_errf(L->err, KL_EBADFILE, "%s: bad vocabulary size %lld", gguf_path(L->f),
                       (long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    if ((L->a->quirks & ARCH_BERT) && hp->n_heads * hp->head_dim != hp->dim)
        return kl_errf(L->err, KL_EBADFILE, "%s: %d heads of %d do not make the width %d",
                       gguf_path(L->f), hp->n_heads, hp->head_dim, hp->dim);
    return 0;
}

/* The RoPE of the file, as llama.cpp reads it: rope.scaling.type (none, linear or yarn;
 * linear when absent) with rope.scaling.factor, rope.scaling.attn_factor and, for YaRN,
 * rope.scaling.original_context_length; per-pair divisors in rope_freqs.weight (Llama 3).
 * Any other scaling type is refused by name: ignoring it would run a different model. */
static int make_rope(loader *L, model *m)
{
    model_hparams *hp = &m->hp;
    const float *factors = NULL;
    int rc = bind_vec(L, "rope_freqs.weight", hp->n_rot / 2, true, &factors);
    if (rc) return rc;
    hp->n_ctx_orig = hp->n_ctx_train;
    if ((rc = get_u32(L, "rope.scaling.original_context_length", &hp->n_ctx_orig, true))) return rc;
    if (!factors && (L->a->quirks & ARCH_ROPE_LONG)) { /* phi3: by the context it will serve */
        const char *which = m->opts.max_ctx > hp->n_ctx_orig ? "rope_factors_long.weight"
                                                             : "rope_factors_short.weight";
        if ((rc = bind_vec(L, which, hp->n_rot / 2, true, &factors))) return rc;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    const char *type = "linear";
    if (gguf_find_kv(L->f, key) && (rc = gguf_get_str(L->f, key, &type, L->err))) return rc;
    if (strcmp(type, "none") && strcmp(type, "linear") && strcmp(type, "yarn"))
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: rope scaling type '%s' is not supported (none, linear, yarn)",
                       gguf_path(L->f), type);
    float factor = 0.f, attn_factor = 1.f;
    if ((rc = get_f32(L, "rope.scaling.factor", &factor)) ||
        (!factor && (rc = get_f32(L, "rope.scale_linear", &factor))) ||
        (rc = get_f32(L, "rope.scaling.attn_factor", &attn_factor)))
        return rc;
    if (factor < 0 || !(attn_factor > 0) || hp->n_ctx_orig < 1)
        return kl_errf(L->err, KL_EBADFILE, "%s: bad rope scaling (factor %g, attn_factor %g)",
                       gguf_path(L->f), (double)factor, (double)attn_factor);
    snprintf(hp->rope_scaling, sizeof hp->rope_scaling, "%s", type);
    hp->rope_factor = !strcmp(type, "none") || factor == 0 ? 1.f : factor;
    bool yarn = !strcmp(type, "yarn");
    m->rope = (kl_rope_cfg){.n_rot = hp->n_rot,
                            .scale = powf(hp->rope_theta, -2.0f / (float)hp->n_rot),
                            .factors = factors,
                            .freq_scale = 1.0f / hp->rope_factor,
                            .ext_factor = yarn ? 1.0f : 0.0f,
                            .attn_factor = attn_factor};
    /* llama.cpp's defaults for the ramp: from 32 turns to 1 over the original context */
    if (yarn) kl_rope_yarn_corr(hp->n_rot, hp->n_ctx_orig, hp->rope_theta, 32.f, 1.f, m->rope.corr);
    /* gemma3's sliding-window layers: base 10000, unscaled (llama.cpp's values) */
    m->rope_local = (kl_rope_cfg){.n_rot = hp->n_rot,
                                  .scale = powf(10000.f, -2.0f / (float)hp->n_rot),
                                  .freq_scale = 1.0f,
                                  .attn_factor = 1.0f};
    return 0;
}

/* Where the 1 / sqrt(d) of attention goes: on the scores (llama), or on the queries before
 * attention (gemma, phi3), with Gemma 2/3 27B's own d; granite's attention.scale replaces it. */
static int make_scales(loader *L, model *m)
{
    const model_hparams *hp = &m->hp;
    float d = (float)hp->head_dim, granite = 0.f;
    bool big_gemma = (!strcmp(L->a->name, "gemma2") && hp->n_layers == 46) ||
                     (!strcmp(L->a->name, "gemma3") && hp->n_layers == 62);
    if (big_gemma) d = (float)(hp->dim / hp->n_heads);
    int rc = (L->a->quirks & ARCH_GRANITE) ? get_f32(L, "attention.scale", &granite) : 0;
    if (rc) return rc;
    m->q_scale = 1.f;
    m->kq_scale = granite != 0.f ? granite : 1.f / sqrtf(d);
    if (L->a->quirks & ARCH_Q_SCALE) m->q_scale = 1.f / sqrtf(d), m->kq_scale = 1.f;
    if (L->a->quirks & ARCH_MLA) {
        /* deepseek2, as llama.cpp scales it: YaRN's magnitude (attn_factor times 1 + 0.1
         * ln(factor)) is taken out of RoPE, and the scores are scaled by mscale^2 / sqrt(d)
         * with mscale = attn_factor (1 + yarn_log_multiplier ln(factor)); whatever the
         * scaling type */
        float ln = logf(hp->rope_factor);
        float mscale = m->rope.attn_factor * (1.f + hp->yarn_log_mul * ln);
        m->kq_scale = mscale * mscale / sqrtf((float)hp->qk_dim);
        m->rope.attn_factor = 1.f / (1.f + 0.1f * ln);
    }
    return 0;
}

/* Whether name is expert e < t->experts of the split stack t, spelled as model_expert_name
 * spells it (so blk.0.ffn_up.01.weight is not expert 1). */
static bool is_split_expert(const model_tensor *t, const char *name)
{
    size_t n = strlen(t->name) - strlen("_exps.weight");
    if (strncmp(name, t->name, n) || name[n] != '.' || name[n + 1] < '0' || name[n + 1] > '9')
        return false;
    long long e = strtoll(name + n + 1, NULL, 10);
    if (e >= t->experts) return false;
    char want[GGUF_MAX_NAME];
    model_expert_name(t->name, e, want);
    return !strcmp(want, name);
}

/* Fails unless every tensor of the file was bound (bound: the names, n of them): a tensor
 * Kiln does not read means a variant it does not know (llama.cpp refuses them too). */
static int check_all_used(loader *L, const model_tensor *bound, int n)
{
    for (int64_t i = 0; i < gguf_n_tensors(L->f); i++) {
        const char *name = gguf_tensor_at(L->f, i)->name;
        bool bert = L->a->quirks & ARCH_BERT;
        bool used = !strcmp(name, "token_embd.weight") ||
                    (!bert && !strcmp(name, "output.weight")) ||
                    (bert && !strcmp(name, "token_types.weight")) ||
                    ((L->a->quirks & ARCH_ABS_POS) && !strcmp(name, "position_embd.weight")) ||
                    !strcmp(name, "rope_freqs.weight") || !strncmp(name, "rope_factors_", 13);
        for (int k = 0; k < n && !used; k++)
            used = bound[k].split ? is_split_expert(&bound[k], name) : !strcmp(bound[k].name, name);
        if (!used)
            return kl_errf(L->err, KL_EUNSUP,
                           "%s: tensor %s is not part of a %s model as Kiln knows it (a variant "
                           "Kiln does not support)",
                           gguf_path(L->f), name, L->a->name);
    }
    return 0;
}

/* Row views [r0, r0 + rows) of w (a fused matrix: phi3's attn_qkv and ffn_up). */
static model_w rows_of(const model_w *w, int64_t r0, int64_t rows)
{
    size_t rb = kl_dtype_row_bytes(w->type, w->cols);
    return (model_w){(const uint8_t *)w->data + (size_t)r0 * rb, w->type, rows, w->cols, NULL};
}

/* A table read a row at a time, as token_embd (any type the lookup can dequantize): rows of
 * m's width, at least min_rows of them. */
static int bind_table(loader *L, const model *m, const char *name, int64_t min_rows, model_w *w)
{
    const gguf_tensor *t = gguf_find_tensor(L->f, name);
    if (!t) return kl_errf(L->err, KL_EBADFILE, "%s: missing tensor %s", gguf_path(L->f), name);
    if (t->n_dims != 2 || t->ne[0] != m->hp.dim || t->ne[1] < min_rows)
        return kl_errf(L->err, KL_EBADFILE,
                       "%s: tensor %s has shape [%lld, %lld], expected [%d, %lld or more]",
                       gguf_path(L->f), name, (long long)t->ne[0],
                       (long long)(t->n_dims > 1 ? t->ne[1] : 1), m->hp.dim, (long long)min_rows);
    if (!kl_dequantize_supports(t->type) || !kl_dtype_row_bytes(t->type, m->hp.dim))
        return kl_errf(L->err, KL_EUNSUP, "%s: tensor %s has type %s, which Kiln cannot read",
                       gguf_path(L->f), name, kl_dtype_get(t->type)->name);
    *w = (model_w){t->data, t->type, t->ne[1], t->ne[0], NULL};
    return 0;
}

/* An encoder's own inputs (ARCH_BERT): token_types (row 0 is added to every token: llama.cpp
 * hard-codes type 0) and, with ARCH_ABS_POS, position_embd (a row per position the model
 * serves: opts.max_ctx of them at least). An encoder has no output head. */
static int bind_encoder_inputs(loader *L, model *m)
{
    int rc = bind_table(L, m, "token_types.weight", 1, &m->tok_types);
    if (rc || !(L->a->quirks & ARCH_ABS_POS)) return rc;
    const gguf_tensor *t = gguf_find_tensor(L->f, "position_embd.weight");
    if (t && t->n_dims == 2 && t->ne[1] < m->opts.max_ctx)
        return kl_errf(L->err, KL_EINVAL,
                       "%s: a context of %d tokens, but the model has %lld positions "
                       "(position_embd.weight)",
                       gguf_path(L->f), m->opts.max_ctx, (long long)t->ne[1]);
    return bind_table(L, m, "position_embd.weight", m->opts.max_ctx, &m->pos_embd);
}

static int bind_weights(loader *L, model *m)
{
    const model_hparams *hp = &m->hp;
    unsigned q = L->a->quirks;
    int rc = 0;
    const gguf_tensor *emb = gguf_find_tensor(L->f, "token_embd.weight");
    if (emb->ne[0] != hp->dim || !kl_dtype_row_bytes(emb->type, hp->dim))
        return kl_errf(L->err, KL_EBADFILE, "%s: token_embd.weight has rows of %lld, expected %d",
                       gguf_path(L->f), (long long)emb->ne[0], hp->dim);
    /* every use of a tensor is checked here, so a step never meets a type it cannot read:
     * the embedding is read a row at a time (dequantized), matrices by the matmul */
    if (!kl_dequantize_supports(emb->type))
        return kl_errf(L->err, KL_EUNSUP,
                       "%s: tensor token_embd.weight has type %s, which Kiln's embedding "
                       "lookup cannot read",
                       gguf_path(L->f), kl_dtype_get(emb->type)->name);
    m->tok_embd = (model_w){emb->data, emb->type, hp->n_vocab, hp->dim, NULL};
    if (q & ARCH_BERT) {
        if ((rc = bind_encoder_inputs(L, m))) return rc;
    } else if (gguf_find_tensor(L->f, "output.weight") && !(q & ARCH_TIED)) {
        if ((rc = bind_mat(L, "output.weight", hp->dim, hp->n_vocab, 0, &m->output))) return rc;
    } else {
        if (!kl_matmul_supports(emb->type))
            return kl_errf(L->err, KL_EUNSUP,
                           "%s: tensor token_embd.weight (also the output) has type %s, which "
                           "Kiln's matmul does not support",
                           gguf_path(L->f), kl_dtype_get(emb->type)->name);
        m->output = m->tok_embd;
        m->hp.tied_output = true;
    }
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    size_t E = (size_t)hp->n_expert;
    m->experts = E ? calloc((size_t)hp->n_layers * 3 * E, sizeof *m->experts) : NULL;
    model_tensor *ts = malloc(sizeof *ts * (size_t)model_arch_max_tensors(hp));
    if (!m->layers || !ts || (E && !m->experts)) {
        free(ts);
        return kl_errf(L->err, KL_ENOMEM, "out of memory");
    }
    for (int l = 0; l < hp->n_layers && E; l++) {
        model_w *x = m->experts + (size_t)l * 3 * E;
        m->layers[l].exp_gate = x, m->layers[l].exp_up = x + E, m->layers[l].exp_down = x + 2 * E;
    }
    int n = model_arch_tensors(L->a, hp, m, ts);
    for (int i = 0; i < n && !rc; i++)
        rc = bind_tensor(L, &ts[i]);
    if (!rc) rc = check_all_used(L, ts, n);
    free(ts);
    if (rc) return rc;
    int64_t qd = m->q_dim, kvd = m->kv_dim, ff = hp->hidden_dim;
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *ly = &m->layers[l];
        if (q & (ARCH_FUSED | ARCH_FUSED_QKV)) { /* [q; k; v]: row blocks of one matrix */
            model_w qkv = ly->wq;
            ly->wq = rows_of(&qkv, 0, qd), ly->wk = rows_of(&qkv, qd, kvd);
            ly->wv = rows_of(&qkv, qd + kvd, kvd);
        }
        if (q & ARCH_FUSED) { /* [gate; up] */
            model_w up = ly->w_up;
            ly->w_gate = rows_of(&up, 0, ff), ly->w_up = rows_of(&up, ff, ff);
        }
        bool swa = hp->n_swa > 0 && model_arch_swa_layer(L->a, l);
        ly->window = swa ? hp->n_swa : 0;
        ly->rope = swa && (q & ARCH_LOCAL_ROPE) ? &m->rope_local : &m->rope;
    }
    return 0;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static int alloc_scratch(loader *L, model *m)
{
    const model_hparams *hp = &m->hp;
    model_scratch *s = &m->s;
    size_t n = (size_t)m->opts.max_batch_tokens, nw = (size_t)m->opts.n_workers;
    size_t wide = (size_t)(m->q_dim > hp->dim ? m->q_dim : hp->dim);
    s->x = calloc(n * (size_t)hp->dim, sizeof(float));
    s->xb = calloc(n * wide, sizeof(float));
    s->q = calloc(n * (size_t)m->q_dim, sizeof(float));
    s->k = calloc(n * (size_t)m->kv_dim, sizeof(float));
    s->v = calloc(n * (size_t)m->kv_dim, sizeof(float));
    s->att = calloc(n * (size_t)m->q_dim, sizeof(float));
    s->xo = calloc(n * (size_t)hp->dim, sizeof(float));
    /* a mixture's gate/up rows: one per token and chosen expert, grouped */
    size_t k = (size_t)hp->n_expert_used, E = (size_t)hp->n_expert;
    size_t hidden =
        max_sz(max_sz((size_t)hp->hidden_dim, k * (size_t)hp->ff_exp), (size_t)hp->ff_shexp);
    s->hb = calloc(n * hidden, sizeof(float));
    s->hb2 = calloc(n * hidden, sizeof(float));
    bool moe_ok = true;
    if (E) {
        s->moe_logits = calloc(n * E, sizeof(float));
        s->moe_wt = calloc(n * k, sizeof(float));
        s->moe_sel = calloc(n * k, sizeof(int32_t));
        s->moe_slot = calloc(n * k, sizeof(int32_t));
        s->moe_first = calloc(E + 1, sizeof(int32_t));
        s->moe_load = calloc(E, sizeof(uint64_t));
        s->moe_x = calloc(n * k * (size_t)hp->dim, sizeof(float));
        s->moe_y = calloc(n * k * (size_t)hp->dim, sizeof(float));
        s->moe_sh = calloc(n * (size_t)hp->dim, sizeof(float));
        s->moe_shg = calloc(n, sizeof(float));
        s->moe_runs = calloc(2 * E, sizeof(kl_mm_run));
        moe_ok = s->moe_logits && s->moe_wt && s->moe_sel && s->moe_slot && s->moe_first &&
                 s->moe_load && s->moe_x && s->moe_y && s->moe_sh && s->moe_shg && s->moe_runs;
    }
    bool mla_ok = true;
    if (m->arch->quirks & ARCH_MLA) {
        size_t H = (size_t)hp->n_heads, nope = (size_t)(hp->qk_dim - hp->n_rot);
        size_t lat = (size_t)hp->kv_lora, vd = (size_t)hp->v_head_dim;
        s->mla_qa = calloc(n * (size_t)(hp->q_lora ? hp->q_lora : 1), sizeof(float));
        s->mla_kva = calloc(n * (size_t)(hp->kv_lora + hp->n_rot), sizeof(float));
        s->mla_q = calloc(n * H * (size_t)hp->qk_dim, sizeof(float));
        s->mla_hx = calloc(n * H * max_sz(nope, lat), sizeof(float));
        s->mla_hy = calloc(n * H * max_sz(lat, vd), sizeof(float));
        s->mla_runs = calloc(H, sizeof(kl_mm_run));
        mla_ok = s->mla_qa && s->mla_kva && s->mla_q && s->mla_hx && s->mla_hy && s->mla_runs;
    }
    s->rows = calloc((size_t)m->opts.max_logits * (size_t)hp->dim, sizeof(float));
    size_t group = (size_t)(hp->n_heads / hp->n_kv_heads);
    size_t rows = (size_t)MODEL_ATTN_QT * group;
    m->attn_ws_floats = 6 * rows + rows * MODEL_ATTN_SPAN + 3 * rows * (size_t)hp->head_dim +
                        MODEL_KV_CHUNK * (size_t)hp->head_dim;
    m->attn_ws_floats += m->attn_ws_floats % 2;
    s->attn_ws = calloc(nw * m->attn_ws_floats, sizeof(float));
    s->tiles = calloc(n + 1, sizeof(int32_t));
    s->attn_seg0 = calloc(n + 1, sizeof(int32_t));
    s->attn_part0 = calloc(n + 1, sizeof(int32_t));
    m->attn_parts = MODEL_ATTN_PART_FLOATS / ((size_t)hp->head_dim + 3);
    s->part_m = calloc(m->attn_parts, sizeof(float));
    s->part_s = calloc(m->attn_parts, sizeof(double));
    s->part_a = calloc(m->attn_parts * (size_t)hp->head_dim, sizeof(float));
    s->seq_end = calloc(n, sizeof(int32_t));
    size_t mm = 0;
    int B = m->opts.max_batch_tokens;
    for (int l = 0; l < hp->n_layers; l++) {
        const model_layer *ly = &m->layers[l];
        mm = max_sz(mm, kl_matmul_scratch(ly->wq.type, B, ly->wq.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wk.type, B, ly->wk.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wv.type, B, ly->wv.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wo.type, B, ly->wo.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->w_gate.type, B, ly->w_gate.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->w_up.type, B, ly->w_up.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->w_down.type, B, ly->w_down.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wq_a.type, B, ly->wq_a.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wq_b.type, B, ly->wq_b.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->wkv_a.type, B, ly->wkv_a.cols));
        int hB = B * hp->n_heads; /* latent attention's per-head rows */
        if (ly->uk) mm = max_sz(mm, kl_matmul_scratch(ly->uk[0].type, hB, ly->uk[0].cols));
        if (ly->uv) mm = max_sz(mm, kl_matmul_scratch(ly->uv[0].type, hB, ly->uv[0].cols));
        if (!ly->router.data) continue;
        int kB = B * (int)k; /* the experts' grouped rows */
        mm = max_sz(mm, kl_matmul_scratch(ly->router.type, B, ly->router.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->exp_gate[0].type, kB, ly->exp_gate[0].cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->exp_up[0].type, kB, ly->exp_up[0].cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->exp_down[0].type, kB, ly->exp_down[0].cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->sh_gate.type, B, ly->sh_gate.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->sh_up.type, B, ly->sh_up.cols));
        mm = max_sz(mm, kl_matmul_scratch(ly->sh_down.type, B, ly->sh_down.cols));
    }
    mm = max_sz(mm, kl_matmul_scratch(m->output.type, m->opts.max_logits, m->output.cols));
    s->mm = mm ? aligned_alloc(64, (mm + 63) & ~(size_t)63) : NULL;
    if (!s->x || !s->xb || !s->xo || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->rows || !s->attn_ws || !s->tiles || !s->attn_seg0 || !s->attn_part0 || !s->part_m ||
        !s->part_s || !s->part_a || !s->seq_end || (mm && !s->mm) || !moe_ok || !mla_ok)
        return kl_errf(L->err, KL_ENOMEM, "model: cannot allocate scratch for %zu tokens", n);
    return 0;
}

int model_load(model **out, gguf_file *f, const model_opts *opts, kl_err *err)
{
    *out = NULL;
    loader L = {.f = f, .err = err};
    if (gguf_get_str(f, "general.architecture", &L.arch, err))
        return kl_errf(err, KL_EBADFILE, "%s: missing general.architecture", gguf_path(f));
    model *m = calloc(1, sizeof *m);
    if (!m) return kl_errf(err, KL_ENOMEM, "out of memory");
    m->file = f;
    int rc = read_hparams(&L, &m->hp);
    if (rc) goto fail;
    m->arch = L.a;
    m->opts = *opts;
    if (m->opts.max_batch_tokens < 1) m->opts.max_batch_tokens = 512;
    if (m->opts.max_logits < 1) m->opts.max_logits = m->opts.max_batch_tokens;
    if (m->opts.max_ctx < 1) m->opts.max_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (m->opts.n_workers < 1) m->opts.n_workers = 1;
    m->q_dim = m->hp.n_heads * m->hp.head_dim;
    m->kv_dim = m->hp.n_kv_heads * m->hp.head_dim;
    if ((rc = make_rope(&L, m)) || (rc = make_scales(&L, m)) || (rc = bind_weights(&L, m)) ||
        ((m->arch->quirks & ARCH_MLA) && (rc = model_mla_bind(m, err))) ||
        (rc = alloc_scratch(&L, m)) || (rc = model_lora_scratch_alloc(m, err)))
        goto fail;
    if (!m->opts.no_repack && (rc = model_pack(m, f, err))) goto fail;
    m->opts.pack_cache_dir = NULL; /* the caller's string: read during the load only */
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

void model_free(model *m)
{
    if (!m) return;
    model_unpack(m);
    model_scratch *s = &m->s;
    free(s->x), free(s->xb), free(s->xo), free(s->q), free(s->k), free(s->v), free(s->att);
    free(s->hb), free(s->hb2), free(s->rows), free(s->attn_ws), free(s->tiles), free(s->attn_seg0),
        free(s->attn_part0), free(s->part_m), free(s->part_s), free(s->part_a), free(s->mm);
    free(s->seq_end);
    model_lora_scratch_free(m);
    free(s->moe_logits), free(s->moe_wt), free(s->moe_sel), free(s->moe_slot), free(s->moe_first);
    free(s->moe_load);
    free(s->moe_x), free(s->moe_y), free(s->moe_sh), free(s->moe_shg), free(s->moe_runs);
    free(s->mla_qa), free(s->mla_kva), free(s->mla_q), free(s->mla_hx), free(s->mla_hy);
    free(s->mla_runs);
    model_mla_free(m);
    free(m->experts);
    free(m->layers);
    free(m);
}

const uint64_t *model_expert_load(const model *m, int *n_expert)
{
    *n_expert = m->s.moe_load ? m->hp.n_expert : 0;
    return m->s.moe_load;
}

const model_hparams *model_hparams_of(const model *m)
{
    return &m->hp;
}

uint64_t model_file_faults(const model *m)
{
    return gguf_faults(m->file);
}
const model_opts *model_opts_of(const model *m)
{
    return &m->opts;
}
