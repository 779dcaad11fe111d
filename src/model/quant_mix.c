/* model/quant_mix.c: which type each tensor gets in a quantization mix (Q4_K_M, Q3_K_S, ...),
 * with llama.cpp's rules (its llama-quant.cpp, llama_tensor_get_type, Feb 2025 tree), so that
 * `kiln model quantize F32.gguf OUT Q4_K_M` writes the same per-tensor types as
 * `llama-quantize F32.gguf OUT Q4_K_M`. Rules that need an importance matrix are not here; of
 * the IQ mixes only IQ4_NL and IQ4_XS are offered (the types Kiln writes). */
#include "model/quant_mix.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

// clang-format off
static const qmix mixes[] = {
    /* name     file_type  default    (llama_ftype) */
    {"f32",     0,  KL_F32},
    {"f16",     1,  KL_F16},
    {"bf16",    32, KL_BF16},
    {"q4_0",    2,  KL_Q4_0},
    {"q4_1",    3,  KL_Q4_1},
    {"q5_0",    8,  KL_Q5_0},
    {"q5_1",    9,  KL_Q5_1},
    {"q8_0",    7,  KL_Q8_0},
    {"q2_k",    10, KL_Q2_K},
    {"q3_k_s",  11, KL_Q3_K},
    {"q3_k_m",  12, KL_Q3_K},
    {"q3_k_l",  13, KL_Q3_K},
    {"q4_k_s",  14, KL_Q4_K},
    {"q4_k_m",  15, KL_Q4_K},
    {"q5_k_s",  16, KL_Q5_K},
    {"q5_k_m",  17, KL_Q5_K},
    {"q6_k",    18, KL_Q6_K},
    {"iq4_nl",  25, KL_IQ4_NL},
    {"iq4_xs",  30, KL_IQ4_XS},
    {"tq1_0",   36, KL_TQ1_0},
    {"tq2_0",   37, KL_TQ2_0},
};
// clang-format on

const qmix *qmix_find(const char *name)
{
    /* llama-quantize's aliases: a K type without a size is its _M mix */
    static const char *const alias[][2] = {
        {"q3_k", "q3_k_m"}, {"q4_k", "q4_k_m"}, {"q5_k", "q5_k_m"}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (!strcasecmp(name, alias[i][0])) name = alias[i][1];
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        if (!strcasecmp(name, mixes[i].name)) return &mixes[i];
    return NULL;
}

const char *qmix_names(void)
{
    return "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s "
           "q5_k_m q6_k iq4_nl iq4_xs tq1_0 tq2_0 (q3_k q4_k q5_k: the _m mixes)";
}

static bool contains(const char *s, const char *part)
{
    return strstr(s, part) != NULL;
}

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), m = strlen(end);
    return n >= m && !strcmp(s + n - m, end);
}

bool qmix_quantizes(const gguf_tensor *t)
{
    const char *n = t->name;
    if (!ends_with(n, "weight") || t->n_dims < 2 || contains(n, "_norm.weight")) return false;
    static const char *const never[] = {
        "ffn_gate_inp.weight",      "ssm_conv1d.weight",          "time_mix_first.weight",
        "time_mix_w1.weight",       "time_mix_w2.weight",         "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (contains(n, never[i])) return false;
    return strcmp(n, "position_embd.weight") && strcmp(n, "token_types.weight");
}

static uint32_t u32_or(const gguf_file *f, const char *arch, const char *key, uint32_t dflt)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v;
    return gguf_get_u32(f, full, &v, NULL) == 0 ? v : dflt;
}

int qmix_start(qmix_state *q, const qmix *mix, bool pure, int embd_type, int output_type,
               const gguf_file *f, kl_err *err)
{
    memset(q, 0, sizeof *q);
    q->mix = mix;
    q->pure = pure;
    q->embd_type = embd_type;
    q->output_type = output_type;
    const char *arch = "";
    if (gguf_get_str(f, "general.architecture", &arch, NULL)) arch = "";
    snprintf(q->arch, sizeof q->arch, "%s", arch);
    q->n_layer = (int)u32_or(f, arch, "block_count", 0);
    uint32_t n_head = u32_or(f, arch, "attention.head_count", 0);
    uint32_t n_head_kv = u32_or(f, arch, "attention.head_count_kv", n_head);
    q->n_gqa = n_head_kv ? (int)(n_head / n_head_kv) : 0;
    q->n_expert = (int)u32_or(f, arch, "expert_count", 0);
    /* llama.cpp's model type 70B (8 KV heads share attn_v: it gets more bits) */
    q->is_70b = q->n_layer == 80 &&
                ((!strcmp(arch, "llama") && n_head != n_head_kv) || !strcmp(arch, "deci") ||
                 !strcmp(arch, "qwen2") || !strcmp(arch, "olmo"));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const char *n = gguf_tensor_at(f, i)->name;
        if (contains(n, "attn_v.weight") || contains(n, "attn_qkv.weight") ||
            contains(n, "attn_kv_b.weight"))
            q->n_attention_wv++;
        else if (!strcmp(n, "output.weight"))
            q->has_output = true;
    }
    (void)err;
    return 0;
}

static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool fits(kl_dtype t, int64_t cols)
{
    const kl_dtype_info *d = kl_dtype_get(t);
    return d && cols % d->block_elems == 0;
}

/* The layer of an FFN tensor: its place among its kind (dense models, as llama.cpp counts),
 * or the number in its name (experts, which llama.cpp does not count in order). */
static int layer_of(const qmix_state *q, int counter, const char *name, kl_err *err)
{
    if (q->n_expert <= 1) return counter;
    int il;
    if (sscanf(name, "blk.%d.", &il) != 1 || il < 0 || il >= q->n_layer)
        return kl_errf(err, KL_EBADFILE, "tensor %s: no layer number in 0..%d in its name", name,
                       q->n_layer - 1);
    return il;
}

/* The mix's type for t, before the overrides of the token embedding and output types. */
static int mix_type(qmix_state *q, const gguf_tensor *t, kl_dtype *out, kl_err *err)
{
    kl_dtype nt = q->mix->type;
    *out = nt;
    const kl_dtype_info *di = kl_dtype_get(nt);
    if (q->pure || di->block_elems == 1) return 0; /* float mixes: every matrix in the type */
    const int m = q->mix->file_type, nl = q->n_layer;
    const char *name = t->name;
    enum { Q2_K = 10, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M }; /* ftypes */
    enum { IQ4_NL = 25, IQ4_XS = 30 };
    const bool iq4 = m == IQ4_NL || m == IQ4_XS;
    if (!strcmp(name, "output.weight") || (!q->has_output && !strcmp(name, "token_embd.weight"))) {
        if (q->output_type >= 0)
            nt = (kl_dtype)q->output_type;
        else if (!fits(nt, t->ne[0]))
            nt = KL_Q8_0;
        else if (nt != KL_Q8_0)
            nt = KL_Q6_K;
    } else if (!strcmp(name, "token_embd.weight")) {
        if (q->embd_type >= 0)
            nt = (kl_dtype)q->embd_type;
        else if (m == 36 || m == 37) /* TQ1_0, TQ2_0 */
            nt = KL_Q4_K;
    } else if (contains(name, "attn_v.weight")) {
        int i = q->i_attention_wv++;
        if (m == Q2_K)
            nt = q->n_gqa >= 4 ? KL_Q4_K : KL_Q3_K;
        else if (m == Q3_K_M)
            nt = i < 2 ? KL_Q5_K : KL_Q4_K;
        else if (m == Q3_K_L)
            nt = KL_Q5_K;
        else if (iq4 && q->n_gqa >= 4)
            nt = KL_Q5_K;
        else if ((m == Q4_K_M || m == Q5_K_M) && use_more_bits(i, q->n_attention_wv))
            nt = KL_Q6_K;
        else if (m == Q4_K_S && i < 4)
            nt = KL_Q5_K;
        if (q->is_70b && (nt == KL_Q3_K || nt == KL_Q4_K)) nt = KL_Q5_K;
        if (q->n_expert == 8) nt = KL_Q8_0;
    } else if (contains(name, "attn_k.weight")) {
        if (q->n_expert == 8) nt = KL_Q8_0;
    } else if (contains(name, "ffn_down")) {
        int il = layer_of(q, q->i_ffn_down++, name, err);
        if (il < 0) return il;
        if (m == Q2_K)
            nt = KL_Q3_K;
        else if (m == Q3_K_M) /* Falcon's Q3_K branch aside */
            nt = il < nl / 16 ? KL_Q5_K : KL_Q4_K;
        else if (m == Q3_K_L)
            nt = KL_Q5_K;
        else if (m == Q4_K_M) {
            if (use_more_bits(il, nl)) nt = KL_Q6_K;
        } else if (iq4 && il < nl / 8) /* without an importance matrix */
            nt = KL_Q5_K;
        else if (m == Q5_K_M && use_more_bits(il, nl))
            nt = KL_Q6_K;
        else if (m == Q4_K_S && il < nl / 8)
            nt = KL_Q5_K;
    } else if (contains(name, "attn_output.weight")) {
        if (q->n_expert == 8) {
            if (m == Q2_K || m == Q3_K_S || m == Q3_K_M || m == Q4_K_S || m == Q4_K_M || iq4)
                nt = KL_Q5_K;
        } else if (m == Q2_K)
            nt = KL_Q3_K;
        else if (m == Q3_K_M)
            nt = KL_Q4_K;
        else if (m == Q3_K_L)
            nt = KL_Q5_K;
    } else if (contains(name, "attn_qkv.weight")) {
        if (m == Q3_K_M || m == Q3_K_L)
            nt = KL_Q4_K;
        else if (m == Q4_K_M)
            nt = KL_Q5_K;
        else if (m == Q5_K_M)
            nt = KL_Q6_K;
    } else if (contains(name, "ffn_gate")) {
        int il = layer_of(q, q->i_ffn_gate++, name, err);
        if (il < 0) return il;
    } else if (contains(name, "ffn_up")) {
        int il = layer_of(q, q->i_ffn_up++, name, err);
        if (il < 0) return il;
    }
    if (!fits(nt, t->ne[0])) { /* rows that do not fit the blocks */
        switch (nt) {
        case KL_Q2_K:
        case KL_Q3_K:
        case KL_IQ4_XS:
            nt = KL_IQ4_NL;
            break;
        case KL_TQ1_0:
        case KL_TQ2_0:
            nt = KL_Q4_0;
            break;
        case KL_Q4_K:
            nt = KL_Q5_0;
            break;
        case KL_Q5_K:
            nt = KL_Q5_1;
            break;
        case KL_Q6_K:
            nt = KL_Q8_0;
            break;
        default: /* llama.cpp refuses the file ("Unsupported tensor size"): F16 here */
            nt = KL_F16;
            break;
        }
        if (!fits(nt, t->ne[0])) nt = KL_F16;
    }
    *out = nt;
    return 0;
}

int qmix_type(qmix_state *q, const gguf_tensor *t, kl_dtype *out, kl_err *err)
{
    int rc = mix_type(q, t, out, err);
    if (rc) return rc;
    /* as llama-quantize, the overrides win over the mix, --pure and the fallbacks alike */
    int force = -1;
    if (!strcmp(t->name, "token_embd.weight") && q->embd_type >= 0)
        force = q->embd_type;
    else if (!strcmp(t->name, "output.weight") && q->output_type >= 0)
        force = q->output_type;
    if (force < 0) return 0;
    if (!fits((kl_dtype)force, t->ne[0]))
        return kl_errf(err, KL_EINVAL, "tensor %s: rows of %lld do not fit %s's blocks", t->name,
                       (long long)t->ne[0], kl_dtype_get(force)->name);
    *out = (kl_dtype)force;
    return 0;
}
