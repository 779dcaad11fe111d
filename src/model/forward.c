/* model/forward.c: the llama-family layer loop over one flat batch (see model.h).
 * Per layer: RMSNorm → Q/K/V projections (+ qwen2 biases, qwen3 per-head norms) → RoPE →
 * attention through the paged cache → output projection + residual → RMSNorm → SwiGLU FFN
 * + residual. Each projection is one matmul over all the batch's tokens, so the weights are
 * read once per step however many sequences the batch holds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/internal.h"

/* y (n, w->rows) = x (n, w->cols) W^T */
static kl_mm_out mm_out(const model_w *w, float *y)
{
    return (kl_mm_out){w->type, w->packed ? w->packed : w->data, w->packed != NULL, w->rows, y,
                       w->rows};
}

static void proj(model *m, kl_workers *wk, const model_w *w, const float *x, int n, float *y)
{
    kl_mm_out o = mm_out(w, y);
    kl_matmul_multi(wk, &o, 1, w->cols, x, w->cols, n, m->s.mm);
}

/* Projections of the same input in one pass of the workers (see kl_matmul_multi). */
static void proj2(model *m, kl_workers *wk, const model_w *w0, float *y0, const model_w *w1,
                  float *y1, const float *x, int n)
{
    kl_mm_out o[2] = {mm_out(w0, y0), mm_out(w1, y1)};
    kl_matmul_multi(wk, o, 2, w0->cols, x, w0->cols, n, m->s.mm);
}

static void proj3(model *m, kl_workers *wk, const model_layer *ly, const float *x, int n)
{
    kl_mm_out o[3] = {mm_out(&ly->wq, m->s.q), mm_out(&ly->wk, m->s.k), mm_out(&ly->wv, m->s.v)};
    kl_matmul_multi(wk, o, 3, ly->wq.cols, x, ly->wq.cols, n, m->s.mm);
}

/* Adds bias (NULL: nothing) to row y of dim values. */
static void add_bias(float *y, const float *bias, int dim)
{
    if (bias) kl_axpy_f32(y, 1.f, bias, dim);
}

/* Per-head RMSNorm (qwen3) then RoPE of every head of row t (heads * hd), angles cs. */
static void heads_prepare(const model *m, float *t, int heads, const float *norm, const float *cs)
{
    int hd = m->hp.head_dim;
    for (int h = 0; h < heads; h++) {
        float *head = t + (size_t)h * hd;
        if (norm) kl_rmsnorm(head, head, norm, hd, m->hp.norm_eps);
        kl_rope(head, m->hp.n_rot, cs, m->hp.rope_neox);
    }
}

/* The per-token steps between the matmuls, run over the batch's rows split across the workers
 * when the batch is big enough to pay for the hand-off (prompts, batched decoding). */
typedef enum {
    ROWS_ATTN_IN, /* the previous layer's residual (l > 0), then the attention RMSNorm */
    ROWS_HEADS,   /* QKV biases, per-head norms, RoPE */
    ROWS_FFN_IN,  /* the attention residual, then the FFN RMSNorm */
    ROWS_SWIGLU,
    ROWS_RESID, /* the last layer's FFN residual */
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
    int dim = hp->dim;
    float *x = s->x + (size_t)i * dim, *xb = s->xb + (size_t)i * dim;
    switch (j->stage) {
    case ROWS_ATTN_IN:
        if (j->layer > 0) kl_axpy_f32(x, 1.f, xb, dim);
        kl_rmsnorm(xb, x, ly->attn_norm, dim, hp->norm_eps);
        break;
    case ROWS_HEADS: {
        float *q = s->q + (size_t)i * m->q_dim, *k = s->k + (size_t)i * m->kv_dim;
        float cs[MODEL_MAX_HEAD_DIM]; /* n_rot values */
        add_bias(q, ly->bq, m->q_dim);
        add_bias(k, ly->bk, m->kv_dim);
        add_bias(s->v + (size_t)i * m->kv_dim, ly->bv, m->kv_dim);
        kl_rope_angles(&m->rope, j->b->pos[i], cs);
        heads_prepare(m, q, hp->n_heads, ly->q_norm, cs);
        heads_prepare(m, k, hp->n_kv_heads, ly->k_norm, cs);
        break;
    }
    case ROWS_FFN_IN:
        kl_axpy_f32(x, 1.f, xb, dim);
        kl_rmsnorm(xb, x, ly->ffn_norm, dim, hp->norm_eps);
        break;
    case ROWS_SWIGLU: {
        size_t at = (size_t)i * hp->hidden_dim;
        kl_swiglu(s->hb + at, s->hb + at, s->hb2 + at, hp->hidden_dim);
        break;
    }
    case ROWS_RESID:
        kl_axpy_f32(x, 1.f, xb, dim);
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
    for (int l = 0; l < hp->n_layers; l++) {
        const model_layer *ly = &m->layers[l];
        rows_run(m, w, b, l, ROWS_ATTN_IN);
        proj3(m, w, ly, s->xb, n);
        rows_run(m, w, b, l, ROWS_HEADS);
        model_attention(m, w, kv, l, b);
        proj(m, w, &ly->wo, s->att, n, s->xb);
        rows_run(m, w, b, l, ROWS_FFN_IN);
        proj2(m, w, &ly->w_gate, s->hb, &ly->w_up, s->hb2, s->xb, n);
        rows_run(m, w, b, l, ROWS_SWIGLU);
        proj(m, w, &ly->w_down, s->hb, n, s->xb);
    }
    rows_run(m, w, b, hp->n_layers - 1, ROWS_RESID);
    int r = 0;
    for (int i = 0; i < n; i++)
        if (b->want_logits && b->want_logits[i])
            kl_rmsnorm(s->rows + (size_t)r++ * dim, s->x + (size_t)i * dim, m->output_norm, dim,
                       hp->norm_eps);
    if (r) proj(m, w, &m->output, s->rows, r, logits);
    return 0;
}
