/* model/make.c: `kiln model make`: a GGUF with random weights, of any architecture Kiln runs
 * (model/arch.c lists its tensors; the keys are llama.cpp's, so the files load there too).
 *
 * Each tensor row r is generated from its own PRNG stream (seeded from the seed, the tensor's
 * name and r), so the file is the same whatever the thread count. Rows are generated and
 * quantized in chunks by the workers, and each chunk is streamed to the writer. */
#include "model/make.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/workers.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/vocab_synth.h"

void model_make_defaults(model_make_opts *o)
{
    memset(o, 0, sizeof *o);
    o->arch = "llama";
    o->dim = 64;
    o->layers = 2;
    o->heads = 4;
    o->kv_heads = 2;
    o->ffn = 192;
    o->vocab = 512;
    o->ctx = 2048;
    o->type = KL_F32;
    o->seed = 42;
    o->rope_theta = 10000.0f;
    o->norm_eps = 1e-5f;
    o->std = 0.02f;
    o->threads = 2;
    o->experts_used = 2;
    o->q_lora = -1;
    o->dense_lead = 1;
    o->experts_shared = 1;
}

uint32_t model_file_type(kl_dtype t)
{
    switch (t) { /* llama_ftype: a K type alone is its _M mix */
    case KL_F16:
        return 1;
    case KL_Q4_0:
        return 2;
    case KL_Q4_1:
        return 3;
    case KL_Q8_0:
        return 7;
    case KL_Q5_0:
        return 8;
    case KL_Q5_1:
        return 9;
    case KL_Q2_K:
        return 10;
    case KL_Q3_K:
        return 12;
    case KL_Q4_K:
        return 15;
    case KL_Q5_K:
        return 17;
    case KL_Q6_K:
        return 18;
    case KL_IQ4_NL:
        return 25;
    case KL_IQ4_XS:
        return 30;
    case KL_BF16:
        return 32;
    case KL_TQ1_0:
        return 36;
    case KL_TQ2_0:
        return 37;
    default:
        return 0;
    }
}

const char *model_quant_types(char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int t = 0; t < KL_DTYPE_COUNT; t++)
        if (kl_quantize_supports((kl_dtype)t) && at < n)
            at += (size_t)snprintf(buf + at, n - at, "%s%s", at ? " " : "", kl_dtype_get(t)->name);
    return buf;
}

/* Fills x[0..n) with approximately normal values of standard deviation sd: the sum of four
 * 16-bit uniforms from one 64-bit draw (Irwin-Hall, variance 1/3 per unit), centred and
 * scaled. Bounded by +-3.46 sd, which is what small random weights want anyway. */
void model_fill_normal(kl_rng *r, float *x, int64_t n, float sd)
{
    const float k = sd * 1.7320508f / 65536.0f;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = kl_rng_next(r);
        uint32_t s = (uint32_t)(v & 0xffff) + (uint32_t)((v >> 16) & 0xffff) +
                     (uint32_t)((v >> 32) & 0xffff) + (uint32_t)(v >> 48);
        x[i] = ((float)s - 131070.0f) * k;
    }
}

uint64_t model_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef struct mtensor {
    char name[64];
    kl_dtype type;
    int n_dims;
    int64_t ne[3];
    bool ones;     /* a norm: all 1.0 */
    uint64_t hash; /* of the name its rows are generated from: its own, or its stack's */
    int64_t row0;  /* its first row's index in that stream (expert e of a split stack: e x rows) */
} mtensor;

typedef struct chunk_job {
    const model_make_opts *o;
    const mtensor *t;
    uint64_t tseed;
    float sd;
    int64_t row0, rows; /* rows of this chunk */
    size_t row_bytes;
    uint8_t *out;   /* (rows, row_bytes) */
    float *scratch; /* (threads, ne[0]) */
} chunk_job;

static void chunk_run(void *ctx, int ith, int nth)
{
    chunk_job *j = ctx;
    int64_t cols = j->t->ne[0];
    float *x = j->scratch + (size_t)ith * (size_t)cols;
    for (int64_t r = j->rows * ith / nth; r < j->rows * (ith + 1) / nth; r++) {
        int64_t row = j->t->row0 + j->row0 + r; /* in the tensor's (or its stack's) rows */
        if (j->o->copy) {
            model_copy_row(j->o, j->t->name, row, cols, x);
        } else {
            kl_rng g;
            kl_rng_seed(&g, j->tseed + (uint64_t)row * 0x9e3779b97f4a7c15ull);
            model_fill_normal(&g, x, cols, j->sd);
        }
        kl_quantize_row(j->t->type, x, j->out + (size_t)r * j->row_bytes, cols);
    }
}

/* Streams one tensor's rows into w. Returns 0 or the writer's error code. */
static int write_tensor(gguf_writer *w, kl_workers *pool, const mtensor *t,
                        const model_make_opts *o, uint8_t *buf, size_t buf_bytes, float *scratch)
{
    size_t row_bytes = kl_dtype_row_bytes(t->type, t->ne[0]);
    int64_t rows = t->n_dims > 1 ? t->ne[1] * t->ne[2] : 1; /* a 3-D stack: all its rows */
    if (t->ones) {
        float *x = (float *)buf; /* a norm is one F32 row */
        for (int64_t i = 0; i < t->ne[0]; i++)
            x[i] = 1.0f;
        return gguf_writer_write(w, x, (size_t)t->ne[0] * sizeof(float));
    }
    int64_t per = (int64_t)(buf_bytes / row_bytes);
    chunk_job j = {.o = o,
                   .t = t,
                   .tseed = o->seed ^ t->hash,
                   .sd = o->std,
                   .row_bytes = row_bytes,
                   .out = buf,
                   .scratch = scratch};
    for (int64_t r = 0; r < rows; r += per) {
        j.row0 = r;
        j.rows = rows - r < per ? rows - r : per;
        kl_workers_run(pool, chunk_run, &j);
        int rc = gguf_writer_write(w, buf, (size_t)j.rows * row_bytes);
        if (rc) return rc;
    }
    return 0;
}

/* Experts: the MoE architectures need them, the others (but llama: Mixtral) have none. */
static int check_experts(const model_make_opts *o, const model_arch *a, kl_err *err)
{
    if (!o->experts && (a->quirks & ARCH_MOE_ONLY))
        return kl_errf(err, KL_EINVAL, "%s is a Mixture-of-Experts architecture: --experts N",
                       a->name);
    if (o->experts && !(a->quirks & ARCH_EXPERTS))
        return kl_errf(err, KL_EINVAL,
                       "%s has no experts (llama, qwen2moe, qwen3moe and deepseek2 do)", a->name);
    if (o->experts < 0 || o->experts > MODEL_MAX_EXPERTS ||
        (o->experts && (o->experts_used < 1 || o->experts_used > o->experts)))
        return kl_errf(err, KL_EINVAL, "experts %d, used %d: 1 <= used <= experts <= %d",
                       o->experts, o->experts_used, MODEL_MAX_EXPERTS);
    if (o->ffn_shared < 0) return kl_errf(err, KL_EINVAL, "--ffn-shared is negative");
    if (o->experts_split && !o->experts)
        return kl_errf(err, KL_EINVAL, "--experts-split needs experts (--experts N)");
    if (!(a->quirks & ARCH_MOE_DEEPSEEK)) return 0;
    if (o->dense_lead < 0 || o->dense_lead > o->layers || o->experts_shared < 1 ||
        o->experts_shared > 64)
        return kl_errf(err, KL_EINVAL, "deepseek2: 0 <= dense-lead <= layers, 1 <= shared <= 64");
    if (!o->experts && o->dense_lead < o->layers)
        return kl_errf(err, KL_EINVAL,
                       "deepseek2 is a Mixture-of-Experts architecture past its dense layers: "
                       "--experts N");
    if (o->q_lora < -1 || o->kv_lora < 0 || o->q_lora > (1 << 20) || o->kv_lora > (1 << 20) ||
        (o->dim / o->heads) % 4)
        return kl_errf(err, KL_EINVAL,
                       "deepseek2: ranks must be sane and the head (dim/heads) a multiple of 4");
    return 0;
}

static int check_opts(const model_make_opts *o, kl_err *err)
{
    if (!o->arch || !model_arch_find(o->arch))
        return kl_errf(err, KL_EUNSUP, "architecture '%s' is not supported (%s)",
                       o->arch ? o->arch : "(null)", model_arch_names());
    if (o->swa < 0) return kl_errf(err, KL_EINVAL, "sliding window %d is negative", o->swa);
    if (o->dim <= 0 || o->layers <= 0 || o->heads <= 0 || o->kv_heads <= 0 || o->ffn <= 0 ||
        o->ctx <= 0 || o->dim > (1 << 20) || o->ffn > (1 << 22) || o->layers > 4096 ||
        o->ffn_shared > (1 << 22))
        return kl_errf(err, KL_EINVAL, "sizes must be positive (and sane)");
    if (o->dim % o->heads)
        return kl_errf(err, KL_EINVAL, "dim %d is not a multiple of heads %d", o->dim, o->heads);
    if (o->heads % o->kv_heads)
        return kl_errf(err, KL_EINVAL, "heads %d is not a multiple of kv-heads %d", o->heads,
                       o->kv_heads);
    if ((o->dim / o->heads) % 2)
        return kl_errf(err, KL_EINVAL, "head size %d is odd (rope needs pairs)", o->dim / o->heads);
    if (!o->vocab_from && (o->vocab < 259 || o->vocab > (1 << 22)))
        return kl_errf(err, KL_EINVAL, "vocab %d: a synthetic vocab needs 259 to 4194304 tokens",
                       o->vocab);
    if (!kl_quantize_supports(o->type)) {
        char names[256];
        return kl_errf(err, KL_EINVAL, "type must be one of %s",
                       model_quant_types(names, sizeof names));
    }
    if (!(o->std > 0.0f && o->std < 10.0f) || !(o->rope_theta > 0.0f) || !(o->norm_eps > 0.0f))
        return kl_errf(err, KL_EINVAL, "std, rope theta and eps must be positive");
    if (o->copy && model_copy_check(o, err)) return KL_EINVAL;
    return check_experts(o, model_arch_find(o->arch), err);
}

/* Copies every tokenizer.* key of vocab_from into w; *n_vocab is its token count, *n_types its
 * tokenizer.ggml.token_type_count (BERT's segment types; 0 when it has none). */
static int copy_vocab(gguf_writer *w, const char *vocab_from, int *n_vocab, int *n_types,
                      kl_err *err)
{
    gguf_file *v;
    int rc = gguf_open(&v, vocab_from, err);
    if (rc) return rc;
    const gguf_arr *toks;
    rc = gguf_get_arr(v, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err);
    if (rc == KL_ENOTFOUND)
        rc = kl_errf(err, KL_EBADFILE, "%s: no tokenizer.ggml.tokens", vocab_from);
    if (!rc && (toks->n == 0 || toks->n > INT32_MAX))
        rc = kl_errf(err, KL_EBADFILE, "%s: %llu tokens", vocab_from, (unsigned long long)toks->n);
    if (!rc) {
        *n_vocab = (int)toks->n;
        uint32_t nt = 0;
        if (gguf_get_u32(v, "tokenizer.ggml.token_type_count", &nt, err) || nt > 64) nt = 0;
        *n_types = (int)nt;
        for (int64_t i = 0; i < gguf_n_kv(v); i++) {
            const gguf_kv *kv = gguf_kv_at(v, i);
            if (!strncmp(kv->key, "tokenizer.", 10)) gguf_writer_copy_kv(w, kv);
        }
    }
    gguf_close(v);
    return rc;
}

/* The shapes of the model o describes, as the loader will read them. */
static model_hparams hparams_of(const model_make_opts *o, int n_vocab)
{
    model_hparams hp = {.n_vocab = n_vocab,
                        .dim = o->dim,
                        .n_layers = o->layers,
                        .n_heads = o->heads,
                        .n_kv_heads = o->kv_heads,
                        .head_dim = o->dim / o->heads,
                        .hidden_dim = o->ffn,
                        .n_expert = o->experts,
                        .n_expert_used = o->experts_used,
                        .ff_exp = o->ffn,
                        .ff_shexp = o->ffn_shared ? o->ffn_shared : o->ffn};
    const model_arch *a = model_arch_find(o->arch);
    if (a && (a->quirks & ARCH_MLA)) { /* DeepSeek-V2's proportions: 128 + 64 and 128 */
        int hd = o->dim / o->heads;
        hp.n_kv_heads = o->heads;
        hp.qk_dim = hd + hd / 2, hp.n_rot = hd / 2, hp.v_head_dim = hd;
        hp.q_lora = o->q_lora >= 0 ? o->q_lora : o->layers == 27 ? 0 : o->dim / 2;
        hp.kv_lora = o->kv_lora ? o->kv_lora : o->dim / 2;
        hp.n_dense_lead = o->dense_lead, hp.n_expert_shared = o->experts_shared;
        hp.ff_shexp = o->ffn * o->experts_shared;
        hp.expert_gating = o->sigmoid ? MODEL_GATING_SIGMOID : MODEL_GATING_SOFTMAX;
        if (o->dense_lead >= o->layers) hp.n_expert = hp.n_expert_used = 0;
    }
    return hp;
}

/* experts > 0: a 3-D stack of that many (rows, cols) matrices. A router (ffn_gate_inp) stays
 * F32, as llama.cpp's quantizer leaves it. */
static void add_tensor(mtensor *t, const char *name, kl_dtype type, int64_t cols, int64_t rows,
                       int64_t experts, bool norm)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = experts ? 3 : rows ? 2 : 1;
    t->ne[0] = cols, t->ne[1] = rows ? rows : 1, t->ne[2] = experts ? experts : 1;
    t->ones = norm;
    t->hash = model_hash_name(name), t->row0 = 0;
    /* as llama.cpp's converter and quantizer leave them */
    bool f32 = strstr(name, "ffn_gate_inp.") || !strcmp(name, "token_types.weight") ||
               !strcmp(name, "position_embd.weight");
    t->type = !rows || kl_dtype_row_bytes(type, cols) == 0 || f32 ? KL_F32 : type;
}

/* Room for the tensors list_tensors writes. */
static int64_t max_tensors(const model_make_opts *o, const model_hparams *hp)
{
    int64_t split = o->experts_split ? 3 * (int64_t)hp->n_expert * hp->n_layers : 0;
    return model_arch_max_tensors(hp) + 3 + split;
}

/* Lists the model's tensors in file order into ts (room for max_tensors): the embedding, the
 * architecture's tensors (model/arch.c, the list the loader binds; with experts_split each
 * stack as its experts' own tensors, each expert's rows generated as the stack's), the output
 * unless tied. */
static int list_tensors(const model_make_opts *o, const model_arch *a, int n_vocab, int n_types,
                        mtensor *ts)
{
    model_hparams hp = hparams_of(o, n_vocab);
    model_tensor *mt = malloc(sizeof *mt * (size_t)model_arch_max_tensors(&hp));
    if (!mt) return -1;
    int n = 0, k = model_arch_tensors(a, &hp, NULL, mt);
    add_tensor(&ts[n++], "token_embd.weight", o->type, o->dim, n_vocab, 0, false);
    if (a->quirks & ARCH_BERT) /* an encoder's other inputs (the loader's own) */
        add_tensor(&ts[n++], "token_types.weight", o->type, o->dim, n_types, 0, false);
    if (a->quirks & ARCH_ABS_POS)
        add_tensor(&ts[n++], "position_embd.weight", o->type, o->dim, o->ctx, 0, false);
    for (int i = 0; i < k; i++) {
        if (mt[i].optional && hp.expert_gating != MODEL_GATING_SIGMOID) continue;
        if (!mt[i].experts || !o->experts_split) {
            add_tensor(&ts[n++], mt[i].name, o->type, mt[i].cols, mt[i].rows, mt[i].experts,
                       mt[i].norm);
            continue;
        }
        for (int64_t e = 0; e < mt[i].experts; e++) {
            char name[GGUF_MAX_NAME];
            model_expert_name(mt[i].name, e, name);
            add_tensor(&ts[n], name, o->type, mt[i].cols, mt[i].rows, 0, false);
            ts[n].hash = model_hash_name(mt[i].name), ts[n++].row0 = e * mt[i].rows;
        }
    }
    if (!o->tied && !(a->quirks & (ARCH_TIED | ARCH_BERT)))
        add_tensor(&ts[n++], "output.weight", o->type, o->dim, n_vocab, 0, false);
    free(mt);
    return n;
}

/* Writes <arch>.key = v. */
static void set_u32(gguf_writer *w, const char *arch, const char *key, uint32_t v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_writer_set_u32(w, k, v);
}

static void set_f32(gguf_writer *w, const char *arch, const char *key, float v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_writer_set_f32(w, k, v);
}

/* deepseek2's keys (llama.cpp requires all of them but q_lora_rank in V2-Lite files and the
 * gating function), with DeepSeek-V2-Lite's YaRN multiplier (no effect without scaling). */
static void set_deepseek2(gguf_writer *w, const model_hparams *hp, const char *an)
{
    char k[128];
    set_u32(w, an, "leading_dense_block_count", (uint32_t)hp->n_dense_lead);
    if (hp->q_lora) set_u32(w, an, "attention.q_lora_rank", (uint32_t)hp->q_lora);
    set_u32(w, an, "attention.kv_lora_rank", (uint32_t)hp->kv_lora);
    set_u32(w, an, "attention.key_length", (uint32_t)hp->qk_dim);
    set_u32(w, an, "attention.value_length", (uint32_t)hp->v_head_dim);
    set_u32(w, an, "expert_feed_forward_length", (uint32_t)hp->ff_exp);
    set_u32(w, an, "expert_shared_count", (uint32_t)hp->n_expert_shared);
    bool v3 = hp->expert_gating == MODEL_GATING_SIGMOID;
    set_f32(w, an, "expert_weights_scale", v3 ? 2.5f : 1.f);
    snprintf(k, sizeof k, "%s.expert_weights_norm", an);
    gguf_writer_set_bool(w, k, v3);
    set_u32(w, an, "expert_gating_func", (uint32_t)hp->expert_gating);
    set_f32(w, an, "rope.scaling.yarn_log_multiplier", 0.0707f);
}

static void set_hparams(gguf_writer *w, const model_make_opts *o, const model_arch *a, int n_vocab)
{
    const char *an = a->name;
    model_hparams hp = hparams_of(o, n_vocab);
    gguf_writer_set_str(w, "general.architecture", an);
    gguf_writer_set_str(w, "general.name", o->copy ? "kiln-copy" : "kiln-random");
    gguf_writer_set_u32(w, "general.file_type", model_file_type(o->type));
    if (o->type != KL_F32 && o->type != KL_F16 && o->type != KL_BF16)
        gguf_writer_set_u32(w, "general.quantization_version", 2);
    set_u32(w, an, "vocab_size", (uint32_t)n_vocab);
    set_u32(w, an, "context_length", (uint32_t)o->ctx);
    set_u32(w, an, "embedding_length", (uint32_t)o->dim);
    set_u32(w, an, "block_count", (uint32_t)o->layers);
    set_u32(w, an, "feed_forward_length", (uint32_t)o->ffn);
    set_u32(w, an, "attention.head_count", (uint32_t)o->heads);
    set_u32(w, an, "attention.head_count_kv", (uint32_t)hp.n_kv_heads);
    set_u32(w, an, "rope.dimension_count", (uint32_t)(hp.n_rot ? hp.n_rot : o->dim / o->heads));
    set_f32(w, an, "rope.freq_base", o->rope_theta);
    set_f32(w, an,
            a->norm == MODEL_NORM_RMS ? "attention.layer_norm_rms_epsilon"
                                      : "attention.layer_norm_epsilon",
            o->norm_eps);
    /* the keys llama.cpp requires of some architectures, with typical values */
    int swa = o->swa;
    if (!swa && !strcmp(an, "gemma2")) swa = 4096;
    if (!swa && !strcmp(an, "gemma3")) swa = 512;
    if (swa || !strcmp(an, "phi3")) set_u32(w, an, "attention.sliding_window", (uint32_t)swa);
    if (a->quirks & ARCH_SOFTCAP) {
        set_f32(w, an, "attn_logit_softcapping", 50.f);
        set_f32(w, an, "final_logit_softcapping", 30.f);
    }
    if (a->quirks & ARCH_GRANITE) {
        set_f32(w, an, "embedding_scale", 12.f);
        set_f32(w, an, "residual_scale", 0.22f);
        set_f32(w, an, "logit_scale", 8.f);
        set_f32(w, an, "attention.scale", 0.0078125f);
    }
    if (a->quirks & ARCH_LOGIT_SCALE) set_f32(w, an, "logit_scale", 0.0625f);
    if (o->experts) {
        set_u32(w, an, "expert_count", (uint32_t)o->experts);
        set_u32(w, an, "expert_used_count", (uint32_t)o->experts_used);
    }
    if (a->quirks & ARCH_MOE_ONLY) set_u32(w, an, "expert_feed_forward_length", (uint32_t)o->ffn);
    if (a->quirks & ARCH_MOE_DEEPSEEK) set_deepseek2(w, &hp, an);
    if (a->quirks & ARCH_SHARED_EXPERT)
        set_u32(w, an, "expert_shared_feed_forward_length",
                (uint32_t)(o->ffn_shared ? o->ffn_shared : o->ffn));
    if (a->quirks & ARCH_BERT) { /* an encoder; bge-style CLS pooling, nomic-embed's mean */
        char k[128];
        snprintf(k, sizeof k, "%s.attention.causal", an);
        gguf_writer_set_bool(w, k, false);
        set_u32(w, an, "pooling_type", a->quirks & ARCH_ABS_POS ? 2 : 1);
    }
}

int model_make(const model_make_opts *o, const char *out_path, kl_err *err)
{
    int rc = check_opts(o, err);
    if (rc) return rc;
    gguf_writer *w;
    if ((rc = gguf_writer_open(&w, out_path, err))) return rc;
    int n_vocab = o->vocab, n_types = 0;
    const model_arch *a = model_arch_find(o->arch);
    set_hparams(w, o, a, n_vocab);
    if (o->vocab_from)
        rc = copy_vocab(w, o->vocab_from, &n_vocab, &n_types, err);
    else
        vocab_synth_write(w, n_vocab); /* its errors stick in the writer */
    if (!rc && !n_types && (a->quirks & ARCH_BERT)) {
        n_types = 2; /* sentences A and B, as BERT has */
        gguf_writer_set_u32(w, "tokenizer.ggml.token_type_count", 2);
    }
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    set_u32(w, a->name, "vocab_size", (uint32_t)n_vocab);
    model_hparams hp = hparams_of(o, n_vocab);
    mtensor *ts = calloc((size_t)max_tensors(o, &hp), sizeof *ts);
    int threads = o->threads < 1 ? 1 : o->threads > 64 ? 64 : o->threads;
    uint8_t *buf = NULL;
    float *scratch = NULL;
    kl_workers *pool = NULL;
    int n = ts ? list_tensors(o, a, n_vocab, n_types, ts) : -1;
    int64_t maxcols = 1; /* the widest row */
    for (int i = 0; i < n; i++)
        maxcols = ts[i].ne[0] > maxcols ? ts[i].ne[0] : maxcols;
    size_t buf_bytes = 4u << 20;
    if ((size_t)maxcols * sizeof(float) > buf_bytes) buf_bytes = (size_t)maxcols * sizeof(float);
    if (n >= 0) {
        buf = malloc(buf_bytes);
        scratch = malloc((size_t)threads * (size_t)maxcols * sizeof(float));
        pool = threads > 1 ? kl_workers_create(threads) : NULL;
    }
    if (n < 0 || !buf || !scratch || (threads > 1 && !pool)) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", out_path);
        goto out;
    }
    for (int i = 0; i < n; i++)
        gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne);
    gguf_writer_begin_data(w);
    for (int i = 0; i < n; i++)
        if (write_tensor(w, pool, &ts[i], o, buf, buf_bytes, scratch)) break;
out:
    kl_workers_destroy(pool);
    free(scratch);
    free(buf);
    free(ts);
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_finish(w, err);
}
