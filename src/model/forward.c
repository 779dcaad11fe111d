/* model/forward.c: the layer loop over one flat batch (see model.h), the same for every
 * architecture (model/arch.c): the quirks live in the per-token steps between the matmuls.
 * Per layer: norm → Q/K/V projections (+ biases, Q/K norms) → RoPE → attention through the
 * paged cache → output projection (+ post-norm) + residual → norm → gated FFN (SwiGLU or
 * GeGLU; GELU alone for starcoder2; or a mixture of experts, model/moe.c) (+ post-norm) +
 * residual. Each projection is one matmul over
 * all the batch's tokens, so the weights are read once per step however many sequences the batch
 * holds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/internal.h"

/* y (n, w->rows) = x (n, w->cols) W^T */
kl_mm_out model_mm_out(const model_w *w, float *y)
{
    return (kl_mm_out){w->type, w->packed ? w->packed : w->data, w->packed != NULL, w->rows, y,
                       w->rows};
}

void model_proj(model *m, kl_workers *wk, const model_w *w, const float *x, int n, float *y)
{
    kl_mm_out o = model_mm_out(w, y);
    kl_matmul_multi(wk, &o, 1, w->cols, x, w->cols, n, m->s.mm);
}

/* Projections of the same input in one pass of the workers (see kl_matmul_multi). */
void model_proj2(model *m, kl_workers *wk, const model_w *w0, float *y0, const model_w *w1,
                 float *y1, const float *x, int n)
{
    kl_mm_out o[2] = {model_mm_out(w0, y0), model_mm_out(w1, y1)};
    kl_matmul_multi(wk, o, 2, w0->cols, x, w0->cols, n, m->s.mm);
}

static void proj3(model *m, kl_workers *wk, const model_layer *ly, const float *x, int n)
{
    kl_mm_out o[3] = {model_mm_out(&ly->wq, m->s.q), model_mm_out(&ly->wk, m->s.k),
                      model_mm_out(&ly->wv, m->s.v)};
    kl_matmul_multi(wk, o, 3, ly->wq.cols, x, ly->wq.cols, n, m->s.mm);
}

/* Adds bias (NULL: nothing) to row y of dim values. */
static void add_bias(float *y, const float *bias, int dim)
{
    if (bias) kl_axpy_f32(y, 1.f, bias, dim);
}

/* The norm before a sublayer, as the architecture has it: RMSNorm, LayerNorm (with its bias,
 * if any), or none (olmo2: the input as it is). */
static void pre_norm(const model *m, float *out, const float *x, const float *w, const float *b)
{
    int dim = m->hp.dim;
    if (!w)
        memcpy(out, x, sizeof(float) * (size_t)dim);
    else if (m->arch->norm == MODEL_NORM_LAYER)
        kl_layernorm(out, x, w, b, dim, m->hp.norm_eps);
    else
        kl_rmsnorm(out, x, w, dim, m->hp.norm_eps);
}

/* A sublayer's output o (dim) on its way into the residual: bias, post-norm (gemma2/3,
 * olmo2), granite's residual scale. */
static void sublayer_out(const model *m, float *o, const float *bias, const float *post)
{
    int dim = m->hp.dim;
    add_bias(o, bias, dim);
    if (post) kl_rmsnorm(o, o, post, dim, m->hp.norm_eps);
    if (m->hp.residual_scale != 1.f)
        for (int i = 0; i < dim; i++)
            o[i] *= m->hp.residual_scale;
}

/* An encoder's post-norm (ARCH_BERT): the residual sum x itself is LayerNormed. */
static void post_ln(const model *m, float *x, const float *w, const float *b)
{
    if (w) kl_layernorm(x, x, w, b, m->hp.dim, m->hp.norm_eps);
}

/* Row i's FFN output (xb) added to the residual x, after layer ly; command-r's parallel
 * block adds its attention output (xo) too, after the FFN's, as llama.cpp sums them. */
static void ffn_residual(const model *m, const model_layer *ly, int i)
{
    int dim = m->hp.dim;
    float *x = m->s.x + (size_t)i * dim, *xb = m->s.xb + (size_t)i * dim;
    sublayer_out(m, xb, ly->b_down, ly->ffn_post_norm);
    kl_axpy_f32(x, 1.f, xb, dim);
    if (m->arch->quirks & ARCH_PARALLEL) kl_axpy_f32(x, 1.f, m->s.xo + (size_t)i * dim, dim);
    post_ln(m, x, ly->layer_out_norm, ly->layer_out_norm_b);
}

/* Q/K norms (per head, or of the whole row with ARCH_QK_NORM_FULL), RoPE with angles cs (NULL:
 * none, the positions are in the embeddings: ARCH_ABS_POS), and
 * the query scale, over the heads of row t (heads * hd). */
static void heads_prepare(const model *m, const model_layer *ly, float *t, int heads,
                          const float *norm, const float *cs, float scale)
{
    int hd = m->hp.head_dim;
    bool full = m->arch->quirks & ARCH_QK_NORM_FULL;
    if (norm && full) kl_rmsnorm(t, t, norm, heads * hd, m->hp.norm_eps);
    for (int h = 0; h < heads; h++) {
        float *head = t + (size_t)h * hd;
        if (norm && !full) kl_rmsnorm(head, head, norm, hd, m->hp.norm_eps);
        if (cs) kl_rope(head, ly->rope->n_rot, cs, m->hp.rope_neox);
        if (scale != 1.f)
            for (int d = 0; d < hd; d++)
                head[d] *= scale;
    }
}

/* The per-token steps between the matmuls, run over the batch's rows split across the workers
 * when the batch is big enough to pay for the hand-off (prompts, batched decoding). */
typedef enum {
    ROWS_ATTN_IN, /* the previous layer's FFN residual (l > 0), then the attention norm */
    ROWS_HEADS,   /* QKV biases, Q/K norms, RoPE, query scale */
    ROWS_FFN_IN,  /* the attention residual, then the FFN norm */
    ROWS_ACT,     /* SwiGLU, GeGLU or GELU */
    ROWS_RESID,   /* the last layer's FFN residual */
} rows_stage;

#define ROWS_PARALLEL_MIN 8

typedef struct {
    model *m;
    const model_batch *b;
    int layer;
    rows_stage stage;
} rows_job;

static void rows_one(const rows_job *j, int i)
{
    model *m = j->m;
    model_scratch *s = &m->s;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[j->layer];
    int dim = hp->dim, ff = hp->hidden_dim;
    float *x = s->x + (size_t)i * dim, *xb = s->xb + (size_t)i * dim;
    switch (j->stage) {
    case ROWS_ATTN_IN:
        if (j->layer > 0) ffn_residual(m, ly - 1, i);
        pre_norm(m, xb, x, ly->attn_norm, ly->attn_norm_b);
        break;
    case ROWS_HEADS: {
        float *q = s->q + (size_t)i * m->q_dim, *k = s->k + (size_t)i * m->kv_dim;
        float cs[MODEL_MAX_HEAD_DIM]; /* n_rot values */
        add_bias(q, ly->bq, m->q_dim);
        add_bias(k, ly->bk, m->kv_dim);
        add_bias(s->v + (size_t)i * m->kv_dim, ly->bv, m->kv_dim);
        bool rope = !(m->arch->quirks & ARCH_ABS_POS);
        if (rope) kl_rope_angles(ly->rope, j->b->pos[i], cs);
        heads_prepare(m, ly, q, hp->n_heads, ly->q_norm, rope ? cs : NULL, m->q_scale);
        heads_prepare(m, ly, k, hp->n_kv_heads, ly->k_norm, rope ? cs : NULL, 1.f);
        break;
    }
    case ROWS_FFN_IN: {
        float *xo = s->xo + (size_t)i * dim;
        sublayer_out(m, xo, ly->bo, ly->attn_post_norm);
        if (m->arch->quirks & ARCH_PARALLEL) break; /* the FFN reads the attention's input */
        kl_axpy_f32(x, 1.f, xo, dim);
        post_ln(m, x, ly->attn_out_norm, ly->attn_out_norm_b);
        pre_norm(m, xb, x, ly->ffn_norm, ly->ffn_norm_b);
        break;
    }
    case ROWS_ACT: {
        size_t at = (size_t)i * ff;
        if (m->arch->ffn == MODEL_FFN_SWIGLU)
            kl_swiglu(s->hb + at, s->hb + at, s->hb2 + at, ff);
        else if (m->arch->ffn == MODEL_FFN_GEGLU)
            kl_geglu(s->hb + at, s->hb + at, s->hb2 + at, ff);
        else
            kl_gelu_bias(s->hb + at, ly->b_up, ff);
        break;
    }
    case ROWS_RESID:
        ffn_residual(m, ly, i);
        break;
    }
}

static void rows_part(void *ctx, int ith, int nth)
{
    const rows_job *j = ctx;
    int n = j->b->n;
    for (int i = (int)((int64_t)n * ith / nth); i < (int64_t)n * (ith + 1) / nth; i++)
        rows_one(j, i);
}

static void rows_run(model *m, kl_workers *w, const model_batch *b, int layer, rows_stage stage)
{
    rows_job j = {m, b, layer, stage};
    if (w && b->n >= ROWS_PARALLEL_MIN)
        kl_workers_run(w, rows_part, &j);
    else
        rows_part(&j, 0, 1);
}

/* The projections each adapter may update after each matmul (model/lora.c): an adapter's
 * update is added to the base projection's output, before biases, as llama.cpp adds it. */
static const lora_slot QKV[] = {LORA_Q, LORA_K, LORA_V}, O[] = {LORA_O},
                       GATE_UP[] = {LORA_GATE, LORA_UP}, UP[] = {LORA_UP}, DOWN[] = {LORA_DOWN};

/* The FFN of layer l over xb (n rows), into xb: gate and up (or up alone), the activation,
 * down, each with the batch's adapters (lora); or a mixture of experts (model/moe.c). */
static void ffn(model *m, kl_workers *w, const model_batch *b, int l, bool lora)
{
    const model_layer *ly = &m->layers[l];
    model_scratch *s = &m->s;
    int n = b->n;
    if (ly->router.data) {
        model_moe_ffn(m, w, l, n);
        return;
    }
    if (ly->w_gate.data) {
        model_proj2(m, w, &ly->w_gate, s->hb, &ly->w_up, s->hb2, s->xb, n);
        if (lora) model_lora_add(m, w, l, GATE_UP, 2, s->xb, (float *[]){s->hb, s->hb2});
    } else {
        model_proj(m, w, &ly->w_up, s->xb, n, s->hb);
        if (lora) model_lora_add(m, w, l, UP, 1, s->xb, (float *[]){s->hb}); /* up in hb */
    }
    rows_run(m, w, b, l, ROWS_ACT);
    model_proj(m, w, &ly->w_down, s->hb, n, s->xb);
    if (lora) model_lora_add(m, w, l, DOWN, 1, s->hb, (float *[]){s->xb});
}

/* Adds row r of table t (a token type, a position) to x (dim). */
static void add_row(const model_w *t, int64_t r, float *x, float *tmp)
{
    size_t rb = kl_dtype_row_bytes(t->type, t->cols);
    kl_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, tmp, (int)t->cols);
    kl_axpy_f32(x, 1.f, tmp, (int)t->cols);
}

/* An encoder's inputs (ARCH_BERT): each token's embedding plus token type 0 (llama.cpp's, for
 * every token) plus its position's embedding (ARCH_ABS_POS), LayerNormed. */
static void embed_encoder(model *m, const model_batch *b)
{
    int dim = m->hp.dim;
    float *tmp = m->s.xo; /* free until the first attention */
    for (int i = 0; i < b->n; i++) {
        float *x = m->s.x + (size_t)i * dim;
        add_row(&m->tok_types, 0, x, tmp);
        if (m->pos_embd.data) add_row(&m->pos_embd, b->pos[i], x, tmp);
        kl_layernorm(x, x, m->emb_norm, m->emb_norm_b, dim, m->hp.norm_eps);
    }
}

/* Gemma's sqrt(dim) and granite's embedding scale on the batch's embeddings. */
static void embed_scale(model *m, int n)
{
    float k = m->arch->quirks & ARCH_EMB_SCALE ? sqrtf((float)m->hp.dim) : m->hp.emb_scale;
    if (k != 1.f)
        for (size_t i = 0; i < (size_t)n * (size_t)m->hp.dim; i++)
            m->s.x[i] *= k;
}

/* Logits as the architecture finishes them: granite divides by its logit scale, command-r
 * multiplies, gemma2 soft-caps. */
static void logit_post(const model *m, float *logits, int rows)
{
    size_t n = (size_t)rows * (size_t)m->hp.n_vocab;
    float k = m->hp.logit_scale;
    if (m->arch->quirks & ARCH_GRANITE) k = 1.f / k;
    if (k != 1.f)
        for (size_t i = 0; i < n; i++)
            logits[i] *= k;
    if (m->hp.softcap_final > 0)
        for (size_t i = 0; i < n; i += (size_t)m->hp.n_vocab)
            kl_softcap(logits + i, m->hp.n_vocab, m->hp.softcap_final);
}

static int check_batch(const model *m, const kv_store *kv, const model_batch *b, kl_err *err)
{
    const kv_store_config *c = kv_store_config_of(kv);
    if (c->n_layers != m->hp.n_layers || c->kv_dim != m->kv_dim)
        return kl_errf(err, KL_EINVAL, "forward: kv cache shape does not match the model");
    const kl_kv_ops *ops = kl_kv_ops_get(c->dtype);
    if (!ops || m->hp.head_dim % ops->block)
        return kl_errf(err, KL_EINVAL, "forward: %s kv cache needs head_dim a multiple of %d",
                       kl_dtype_get(c->dtype)->name, ops ? ops->block : 1);
    if (b->n < 1 || b->n > m->opts.max_batch_tokens)
        return kl_errf(err, KL_EINVAL, "forward: batch of %d tokens (max %d)", b->n,
                       m->opts.max_batch_tokens);
    if (m->hp.non_causal && b->n_seqs > m->opts.max_batch_tokens)
        return kl_errf(err, KL_EINVAL, "forward: %d sequences in a batch (max %d)", b->n_seqs,
                       m->opts.max_batch_tokens);
    int n_logits = 0;
    int32_t nb = kv_store_n_blocks(kv);
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= m->hp.n_vocab)
            return kl_errf(err, KL_EINVAL, "forward: token %d out of range", b->token[i]);
        if (b->seq[i] < 0 || b->seq[i] >= b->n_seqs)
            return kl_errf(err, KL_EINVAL, "forward: bad sequence index %d", b->seq[i]);
        if (b->pos[i] < 0 || b->pos[i] >= m->opts.max_ctx)
            return kl_errf(err, KL_EINVAL, "forward: position %d out of range", b->pos[i]);
        const model_seq *sq = &b->seqs[b->seq[i]];
        int last = b->pos[i] / c->block_tokens;
        if (last >= sq->n_blocks)
            return kl_errf(err, KL_EINVAL, "forward: block table too short for position %d",
                           b->pos[i]);
        for (int j = 0; j <= last; j++)
            if (sq->blocks[j] < 0 || sq->blocks[j] >= nb)
                return kl_errf(err, KL_EINVAL, "forward: bad block id %d", sq->blocks[j]);
        n_logits += b->want_logits && b->want_logits[i];
    }
    if (n_logits && m->hp.encoder_only)
        return kl_errf(err, KL_EINVAL,
                       "forward: a %s model makes embeddings only: it has no logits to give",
                       m->hp.arch);
    if (n_logits > m->opts.max_logits)
        return kl_errf(err, KL_EINVAL, "forward: %d logits rows (max %d)", n_logits,
                       m->opts.max_logits);
    return 0;
}

/* Grows the per-worker attention scratch when a pool larger than opts.n_workers shows up
 * (once; the forward pass allocates nothing after that). */
static int fit_workers(model *m, kl_workers *w, kl_err *err)
{
    int nw = w ? kl_workers_count(w) : 1;
    if (nw <= m->opts.n_workers) return 0;
    float *ws = realloc(m->s.attn_ws, sizeof(float) * (size_t)nw * m->attn_ws_floats);
    if (!ws) return kl_errf(err, KL_ENOMEM, "forward: out of memory");
    m->s.attn_ws = ws;
    m->opts.n_workers = nw;
    return 0;
}

int model_forward(model *m, kl_workers *w, kv_store *kv, const model_batch *b, float *logits,
                  kl_err *err)
{
    int rc = check_batch(m, kv, b, err);
    if (rc || (rc = fit_workers(m, w, err))) return rc;
    const model_hparams *hp = &m->hp;
    model_scratch *s = &m->s;
    int n = b->n, dim = hp->dim;
    size_t emb_row = kl_dtype_row_bytes(m->tok_embd.type, dim);
    for (int i = 0; i < n; i++)
        kl_dequantize_row(m->tok_embd.type,
                          (const uint8_t *)m->tok_embd.data + (size_t)b->token[i] * emb_row,
                          s->x + (size_t)i * dim, dim);
    embed_scale(m, n);
    if (m->arch->quirks & ARCH_BERT) embed_encoder(m, b);
    model_lora_plan(m, b);
    bool lora = m->lora.n_groups > 0;
    int nl = b->n_layers > 0 && b->n_layers < hp->n_layers ? b->n_layers : hp->n_layers;
    for (int l = 0; l < nl; l++) {
        const model_layer *ly = &m->layers[l];
        rows_run(m, w, b, l, ROWS_ATTN_IN);
        if (m->arch->quirks & ARCH_MLA) {
            model_mla_qkv(m, w, b, l); /* latent attention's q, k, v (model/mla.c) */
        } else {
            proj3(m, w, ly, s->xb, n);
            if (lora) model_lora_add(m, w, l, QKV, 3, s->xb, (float *[]){s->q, s->k, s->v});
            rows_run(m, w, b, l, ROWS_HEADS);
        }
        model_attention(m, w, kv, l, b);
        if (m->arch->quirks & ARCH_MLA) model_mla_values(m, w, l, n);
        model_proj(m, w, &ly->wo, s->att, n, s->xo);
        if (lora) model_lora_add(m, w, l, O, 1, s->att, (float *[]){s->xo});
        rows_run(m, w, b, l, ROWS_FFN_IN);
        ffn(m, w, b, l, lora); /* dense (+ adapters), or a mixture of experts */
    }
    rows_run(m, w, b, nl - 1, ROWS_RESID);
    for (int i = 0, e = 0; b->want_embd && i < n; i++)
        if (b->want_embd[i])
            pre_norm(m, b->embd + (size_t)e++ * dim, s->x + (size_t)i * dim, m->output_norm,
                     m->output_norm_b);
    int r = 0;
    for (int i = 0; i < n; i++)
        if (b->want_logits && b->want_logits[i])
            pre_norm(m, s->rows + (size_t)r++ * dim, s->x + (size_t)i * dim, m->output_norm,
                     m->output_norm_b);
    if (r) model_proj(m, w, &m->output, s->rows, r, logits);
    if (r && m->lora.n_out_groups) model_lora_add(m, w, -1, O, 1, s->rows, (float *[]){logits});
    logit_post(m, logits, r);
    return 0;
}
