/* model/arch.c: the architectures Kiln runs, one row each, and the tensors each one has. The
 * loader binds exactly these tensors (a file with any other is refused, as llama.cpp does, so
 * a variant Kiln does not know never runs half-bound) and `kiln model make` writes them; the
 * layer loop (forward.c) reads the quirks. Adding an architecture is a row here plus the
 * quirks it needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"

#define R MODEL_NORM_RMS
#define L MODEL_NORM_LAYER
static const model_arch archs[] = {
    /* name        neox   norm ffn               quirks                          swa period */
    {"llama", false, R, MODEL_FFN_SWIGLU, ARCH_EXPERTS | ARCH_MOE_NORM, 0}, /* Mixtral */
    {"qwen2", true, R, MODEL_FFN_SWIGLU, ARCH_QKV_BIAS, 0},
    {"qwen3", true, R, MODEL_FFN_SWIGLU, ARCH_QK_NORM, 0},
    {"gemma", true, R, MODEL_FFN_GEGLU, ARCH_EMB_SCALE | ARCH_Q_SCALE | ARCH_TIED, 0},
    {"gemma2", true, R, MODEL_FFN_GEGLU,
     ARCH_EMB_SCALE | ARCH_Q_SCALE | ARCH_TIED | ARCH_POST_NORMS | ARCH_SOFTCAP, -2},
    {"gemma3", true, R, MODEL_FFN_GEGLU,
     ARCH_EMB_SCALE | ARCH_Q_SCALE | ARCH_POST_NORMS | ARCH_QK_NORM | ARCH_LOCAL_ROPE, 6},
    {"phi3", true, R, MODEL_FFN_SWIGLU, ARCH_FUSED | ARCH_Q_SCALE | ARCH_ROPE_LONG, 0},
    {"granite", false, R, MODEL_FFN_SWIGLU, ARCH_GRANITE, 0},
    {"olmo2", true, R, MODEL_FFN_SWIGLU, ARCH_QK_NORM_FULL | ARCH_POST_NORMS | ARCH_NO_PRE_NORMS,
     0},
    {"command-r", false, L, MODEL_FFN_SWIGLU, ARCH_PARALLEL | ARCH_TIED | ARCH_LOGIT_SCALE, 0},
    {"starcoder2", true, L, MODEL_FFN_GELU, ARCH_BIASES, 0},
    {"qwen2moe", true, R, MODEL_FFN_SWIGLU,
     ARCH_QKV_BIAS | ARCH_EXPERTS | ARCH_MOE_ONLY | ARCH_SHARED_EXPERT, 0},
    {"qwen3moe", true, R, MODEL_FFN_SWIGLU,
     ARCH_QK_NORM | ARCH_EXPERTS | ARCH_MOE_ONLY | ARCH_MOE_NORM, 0},
    {"deepseek2", false, R, MODEL_FFN_SWIGLU, ARCH_MLA | ARCH_EXPERTS | ARCH_MOE_DEEPSEEK, 0},
    {"bert", true, L, MODEL_FFN_GELU, ARCH_BERT | ARCH_ABS_POS | ARCH_BIASES, 0},
    {"nomic-bert", true, L, MODEL_FFN_SWIGLU, ARCH_BERT | ARCH_FUSED_QKV, 0},
};
#undef R
#undef L

const model_arch *model_arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(archs[i].name, name)) return &archs[i];
    return NULL;
}

const char *model_arch_names(void)
{
    return "llama, qwen2, qwen3, gemma, gemma2, gemma3, phi3, granite, olmo2, command-r, "
           "starcoder2, qwen2moe, qwen3moe, deepseek2, bert, nomic-bert";
}

bool model_arch_swa_layer(const model_arch *a, int l)
{
    if (a->swa_period == -2) return l % 2 == 0;
    if (a->swa_period > 0) return l % a->swa_period < a->swa_period - 1;
    return true;
}

typedef struct lister {
    model_tensor *out;
    int n;
} lister;

static void add(lister *ls, const char *name, int l, int64_t cols, int64_t rows, bool norm,
                model_w *mat, const float **vec)
{
    model_tensor *t = &ls->out[ls->n++];
    char full[GGUF_MAX_NAME];
    if (l >= 0)
        snprintf(full, sizeof full, "blk.%d.%s", l, name);
    else
        snprintf(full, sizeof full, "%s", name);
    snprintf(t->name, sizeof t->name, "%s", full);
    t->cols = cols, t->rows = rows, t->norm = norm, t->mat = mat, t->vec = vec;
    t->experts = 0, t->optional = false, t->split = false;
}

/* A stack of n_expert matrices (rows, cols) bound to mats[0..n_expert): one 3-D tensor, or in
 * older files one 2-D tensor per expert (model_expert_name; the loader takes either). */
static void add_experts(lister *ls, const char *name, int l, int64_t cols, int64_t rows,
                        int64_t n_expert, model_w *mats)
{
    add(ls, name, l, cols, rows, false, mats, NULL);
    ls->out[ls->n - 1].experts = n_expert;
}

/* A mixture's FFN (see model/moe.c): the router (and DeepSeek-V3's selection bias), the
 * experts, the shared expert (gated but for deepseek2). */
static void add_moe(lister *ls, const model_arch *a, const model_hparams *hp, int l,
                    model_layer *ly)
{
    int64_t dim = hp->dim, ff = hp->ff_exp, sh = hp->ff_shexp, E = hp->n_expert;
    bool deepseek = a->quirks & ARCH_MOE_DEEPSEEK;
    add(ls, "ffn_gate_inp.weight", l, dim, E, false, ly ? &ly->router : NULL, NULL);
    if (deepseek) {
        add(ls, "exp_probs_b.bias", l, E, 0, false, NULL, ly ? &ly->exp_probs_b : NULL);
        ls->out[ls->n - 1].optional = true;
    }
    add_experts(ls, "ffn_gate_exps.weight", l, dim, ff, E, ly ? ly->exp_gate : NULL);
    add_experts(ls, "ffn_down_exps.weight", l, ff, dim, E, ly ? ly->exp_down : NULL);
    add_experts(ls, "ffn_up_exps.weight", l, dim, ff, E, ly ? ly->exp_up : NULL);
    if (!(a->quirks & ARCH_SHARED_EXPERT) && !deepseek) return;
    if (!deepseek)
        add(ls, "ffn_gate_inp_shexp.weight", l, dim, 0, false, NULL, ly ? &ly->sh_gate_inp : NULL);
    add(ls, "ffn_gate_shexp.weight", l, dim, sh, false, ly ? &ly->sh_gate : NULL, NULL);
    add(ls, "ffn_down_shexp.weight", l, sh, dim, false, ly ? &ly->sh_down : NULL, NULL);
    add(ls, "ffn_up_shexp.weight", l, dim, sh, false, ly ? &ly->sh_up : NULL, NULL);
}

/* Multi-head latent attention's projections (model/mla.c). */
static void add_mla(lister *ls, const model_hparams *hp, int l, model_layer *ly)
{
    int64_t dim = hp->dim, qd = (int64_t)hp->n_heads * hp->qk_dim;
    int64_t nope = hp->qk_dim - hp->n_rot;
#define M(f) (ly ? &ly->f : NULL)
    if (hp->q_lora) {
        add(ls, "attn_q_a.weight", l, dim, hp->q_lora, false, M(wq_a), NULL);
        add(ls, "attn_q_a_norm.weight", l, hp->q_lora, 0, true, NULL, M(q_a_norm));
        add(ls, "attn_q_b.weight", l, hp->q_lora, qd, false, M(wq_b), NULL);
    } else {
        add(ls, "attn_q.weight", l, dim, qd, false, M(wq), NULL);
    }
    add(ls, "attn_kv_a_mqa.weight", l, dim, hp->kv_lora + hp->n_rot, false, M(wkv_a), NULL);
    add(ls, "attn_kv_a_norm.weight", l, hp->kv_lora, 0, true, NULL, M(kv_a_norm));
    add(ls, "attn_kv_b.weight", l, hp->kv_lora, (int64_t)hp->n_heads * (nope + hp->v_head_dim),
        false, M(wkv_b), NULL);
#undef M
}

/* An encoder (ARCH_BERT): the embeddings' LayerNorm, then per layer the attention (Q/K/V
 * apart, or fused), its output and the LayerNorm of its residual sum, the FFN (GELU with
 * biases: bert; SwiGLU: nomic-bert) and the LayerNorm of its residual sum. Every LayerNorm
 * has a bias; ARCH_BIASES: every projection too. (token_types and position_embd are the
 * loader's own, as token_embd.) */
static int bert_tensors(const model_arch *a, const model_hparams *hp, model *m, model_tensor *out)
{
    lister ls = {out, 0};
    bool bias = a->quirks & ARCH_BIASES;
    int64_t dim = hp->dim, kvd = (int64_t)hp->n_kv_heads * hp->head_dim, ff = hp->hidden_dim;
    add(&ls, "token_embd_norm.weight", -1, dim, 0, true, NULL, m ? &m->emb_norm : NULL);
    add(&ls, "token_embd_norm.bias", -1, dim, 0, false, NULL, m ? &m->emb_norm_b : NULL);
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *ly = m ? &m->layers[l] : NULL;
#define M(f) (ly ? &ly->f : NULL)
        if (a->quirks & ARCH_FUSED_QKV) {
            add(&ls, "attn_qkv.weight", l, dim, dim + 2 * kvd, false, M(wq), NULL);
        } else {
            add(&ls, "attn_q.weight", l, dim, dim, false, M(wq), NULL);
            add(&ls, "attn_k.weight", l, dim, kvd, false, M(wk), NULL);
            add(&ls, "attn_v.weight", l, dim, kvd, false, M(wv), NULL);
        }
        if (bias) {
            add(&ls, "attn_q.bias", l, dim, 0, false, NULL, M(bq));
            add(&ls, "attn_k.bias", l, kvd, 0, false, NULL, M(bk));
            add(&ls, "attn_v.bias", l, kvd, 0, false, NULL, M(bv));
        }
        add(&ls, "attn_output.weight", l, dim, dim, false, M(wo), NULL);
        if (bias) add(&ls, "attn_output.bias", l, dim, 0, false, NULL, M(bo));
        add(&ls, "attn_output_norm.weight", l, dim, 0, true, NULL, M(attn_out_norm));
        add(&ls, "attn_output_norm.bias", l, dim, 0, false, NULL, M(attn_out_norm_b));
        if (a->ffn != MODEL_FFN_GELU)
            add(&ls, "ffn_gate.weight", l, dim, ff, false, M(w_gate), NULL);
        add(&ls, "ffn_up.weight", l, dim, ff, false, M(w_up), NULL);
        if (bias) add(&ls, "ffn_up.bias", l, ff, 0, false, NULL, M(b_up));
        add(&ls, "ffn_down.weight", l, ff, dim, false, M(w_down), NULL);
        if (bias) add(&ls, "ffn_down.bias", l, dim, 0, false, NULL, M(b_down));
        add(&ls, "layer_output_norm.weight", l, dim, 0, true, NULL, M(layer_out_norm));
        add(&ls, "layer_output_norm.bias", l, dim, 0, false, NULL, M(layer_out_norm_b));
#undef M
    }
    return ls.n;
}

int model_arch_tensors(const model_arch *a, const model_hparams *hp, model *m, model_tensor *out)
{
    if (a->quirks & ARCH_BERT) return bert_tensors(a, hp, m, out);
    lister ls = {out, 0};
    unsigned q = a->quirks;
    int64_t dim = hp->dim, qd = (int64_t)hp->n_heads * hp->head_dim,
            kvd = (int64_t)hp->n_kv_heads * hp->head_dim, ff = hp->hidden_dim;
    bool bias = q & ARCH_BIASES, pre = !(q & ARCH_NO_PRE_NORMS);
    add(&ls, "output_norm.weight", -1, dim, 0, true, NULL, m ? &m->output_norm : NULL);
    if (bias) add(&ls, "output_norm.bias", -1, dim, 0, false, NULL, m ? &m->output_norm_b : NULL);
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *ly = m ? &m->layers[l] : NULL;
#define M(f) (ly ? &ly->f : NULL)
        if (pre) add(&ls, "attn_norm.weight", l, dim, 0, true, NULL, M(attn_norm));
        if (pre && bias) add(&ls, "attn_norm.bias", l, dim, 0, false, NULL, M(attn_norm_b));
        if (q & ARCH_MLA) {
            add_mla(&ls, hp, l, ly);
        } else if (q & ARCH_FUSED) {
            add(&ls, "attn_qkv.weight", l, dim, qd + 2 * kvd, false, M(wq), NULL);
        } else {
            add(&ls, "attn_q.weight", l, dim, qd, false, M(wq), NULL);
            add(&ls, "attn_k.weight", l, dim, kvd, false, M(wk), NULL);
            add(&ls, "attn_v.weight", l, dim, kvd, false, M(wv), NULL);
        }
        if (q & (ARCH_QKV_BIAS | ARCH_BIASES)) {
            add(&ls, "attn_q.bias", l, qd, 0, false, NULL, M(bq));
            add(&ls, "attn_k.bias", l, kvd, 0, false, NULL, M(bk));
            add(&ls, "attn_v.bias", l, kvd, 0, false, NULL, M(bv));
        }
        if (q & (ARCH_QK_NORM | ARCH_QK_NORM_FULL)) {
            bool full = q & ARCH_QK_NORM_FULL;
            add(&ls, "attn_q_norm.weight", l, full ? qd : hp->head_dim, 0, true, NULL, M(q_norm));
            add(&ls, "attn_k_norm.weight", l, full ? kvd : hp->head_dim, 0, true, NULL, M(k_norm));
        }
        int64_t od = q & ARCH_MLA ? (int64_t)hp->n_heads * hp->v_head_dim : qd;
        add(&ls, "attn_output.weight", l, od, dim, false, M(wo), NULL);
        if (bias) add(&ls, "attn_output.bias", l, dim, 0, false, NULL, M(bo));
        if (q & ARCH_POST_NORMS)
            add(&ls, "post_attention_norm.weight", l, dim, 0, true, NULL, M(attn_post_norm));
        if (pre && !(q & ARCH_PARALLEL)) {
            add(&ls, "ffn_norm.weight", l, dim, 0, true, NULL, M(ffn_norm));
            if (bias) add(&ls, "ffn_norm.bias", l, dim, 0, false, NULL, M(ffn_norm_b));
        }
        bool moe = hp->n_expert && l >= hp->n_dense_lead;
        if (moe) {
            add_moe(&ls, a, hp, l, ly);
        } else if (q & ARCH_FUSED) {
            add(&ls, "ffn_up.weight", l, dim, 2 * ff, false, M(w_up), NULL);
        } else {
            if (a->ffn != MODEL_FFN_GELU)
                add(&ls, "ffn_gate.weight", l, dim, ff, false, M(w_gate), NULL);
            add(&ls, "ffn_up.weight", l, dim, ff, false, M(w_up), NULL);
        }
        if (bias) add(&ls, "ffn_up.bias", l, ff, 0, false, NULL, M(b_up));
        if (!moe) add(&ls, "ffn_down.weight", l, ff, dim, false, M(w_down), NULL);
        if (bias) add(&ls, "ffn_down.bias", l, dim, 0, false, NULL, M(b_down));
        if (q & ARCH_POST_NORMS)
            add(&ls, "post_ffw_norm.weight", l, dim, 0, true, NULL, M(ffn_post_norm));
#undef M
    }
    return ls.n;
}

int model_arch_max_tensors(const model_hparams *hp)
{
    return 4 + 24 * hp->n_layers;
}

void model_expert_name(const char *stack, int64_t e, char *out)
{
    static const char suffix[] = "_exps.weight"; /* every stack add_moe lists */
    size_t n = strlen(stack), k = sizeof suffix - 1;
    if (n < k || strcmp(stack + n - k, suffix)) abort(); /* not a stack: a caller's bug */
    snprintf(out, GGUF_MAX_NAME, "%.*s.%lld.weight", (int)(n - k), stack, (long long)e);
}
