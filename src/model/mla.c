/* model/mla.c: multi-head latent attention (DeepSeek-V2/V3: deepseek2 files), the arithmetic
 * of llama.cpp's Feb 2025 tree rearranged so that the cache holds the latent. The query comes
 * straight from attn_q (V2-Lite) or through a low-rank attn_q_a, its RMSNorm and attn_q_b;
 * each head is [nope | rope] (qk_dim - n_rot, n_rot). attn_kv_a_mqa gives a compressed latent
 * c (kv_lora) and one RoPE key part k_r (n_rot) shared by every head; attn_kv_b's rows of head
 * h map RMSNorm(c) to its key part (W_uk[h], nope rows) and its value (W_uv[h], v_head_dim
 * rows). RoPE on (2i, 2i+1) pairs.
 *
 * Head h's score q_nope . (W_uk[h] c) + q_rope . k_r is (W_uk[h]^T q_nope) . c + q_rope . k_r,
 * and its output W_uv[h] (sum_p a_p c_p): so the cache holds [c | k_r] once per token as one
 * KV head of kv_lora + n_rot (head_dim), each query head is [W_uk[h]^T q_nope | q_rope] in that
 * space, and W_uv[h] applies to the attention's output (the first kv_lora of each head). The
 * value rows are the same [c | k_r] (the kernels read V from the cache's V half; the extra
 * n_rot outputs are dropped). Per token and layer the cache holds 2 (kv_lora + n_rot) values
 * instead of the expanded keys' and values' heads: 1152 rather than 5120 for V2-Lite (16
 * heads of 192 + 128). The per-head products of all heads run in one pass of the workers
 * (kl_matmul_runs over head-major rows). */
#include <stdlib.h>
#include <string.h>

#include "model/internal.h"

typedef enum { MLA_NORMS, MLA_HEADS, MLA_QUERIES, MLA_GATHER, MLA_VALUES } mla_stage;

typedef struct {
    model *m;
    const model_batch *b;
    const model_layer *ly;
    int n;
    mla_stage stage;
} mla_job;

static void mla_row(const mla_job *j, int i)
{
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = j->ly;
    model_scratch *s = &m->s;
    int H = hp->n_heads, qk = hp->qk_dim, rot = hp->n_rot, nope = qk - rot, lat = hp->kv_lora;
    int D = hp->head_dim, vd = hp->v_head_dim, n = j->n;
    float *kva = s->mla_kva + (size_t)i * (lat + rot);
    float *q = s->q + (size_t)i * m->q_dim, *att = s->att + (size_t)i * m->q_dim;
    switch (j->stage) {
    case MLA_NORMS: /* the low-rank query's and the latent's norms */
        if (ly->wq_a.data) {
            float *qa = s->mla_qa + (size_t)i * hp->q_lora;
            kl_rmsnorm(qa, qa, ly->q_a_norm, hp->q_lora, hp->norm_eps);
        }
        kl_rmsnorm(kva, kva, ly->kv_a_norm, lat, hp->norm_eps);
        break;
    case MLA_HEADS: { /* RoPE; the cached row [c | k_r] as K and V; q_nope head-major */
        float cs[MODEL_MAX_HEAD_DIM];
        kl_rope_angles(ly->rope, j->b->pos[i], cs);
        kl_rope(kva + lat, rot, cs, false);
        memcpy(s->k + (size_t)i * D, kva, sizeof(float) * (size_t)D);
        memcpy(s->v + (size_t)i * D, kva, sizeof(float) * (size_t)D);
        const float *qi = s->mla_q + (size_t)i * H * qk;
        for (int h = 0; h < H; h++) {
            const float *qh = qi + (size_t)h * qk;
            memcpy(s->mla_hx + ((size_t)h * n + i) * nope, qh, sizeof(float) * (size_t)nope);
            float *pe = q + (size_t)h * D + lat;
            memcpy(pe, qh + nope, sizeof(float) * (size_t)rot);
            kl_rope(pe, rot, cs, false);
        }
        break;
    }
    case MLA_QUERIES: /* W_uk[h]^T q_nope into each query head's latent part */
        for (int h = 0; h < H; h++)
            memcpy(q + (size_t)h * D, s->mla_hy + ((size_t)h * n + i) * lat,
                   sizeof(float) * (size_t)lat);
        break;
    case MLA_GATHER: /* each head's latent output, head-major */
        for (int h = 0; h < H; h++)
            memcpy(s->mla_hx + ((size_t)h * n + i) * lat, att + (size_t)h * D,
                   sizeof(float) * (size_t)lat);
        break;
    case MLA_VALUES: /* W_uv[h] o_h into att as (n, H * v_head_dim) rows for attn_output */
        for (int h = 0; h < H; h++)
            memcpy(s->att + ((size_t)i * H + h) * vd, s->mla_hy + ((size_t)h * n + i) * vd,
                   sizeof(float) * (size_t)vd);
        break;
    }
}

static void mla_part(void *ctx, int ith, int nth)
{
    const mla_job *j = ctx;
    for (int i = (int)((int64_t)j->n * ith / nth); i < (int64_t)j->n * (ith + 1) / nth; i++)
        mla_row(j, i);
}

static void mla_rows(model *m, kl_workers *w, const model_batch *b, int layer, int n, mla_stage st)
{
    mla_job j = {m, b, &m->layers[layer], n, st};
    if (w && n >= 8)
        kl_workers_run(w, mla_part, &j);
    else
        mla_part(&j, 0, 1);
}

/* mla_hy = per head h, its n rows of mla_hx (cols wide) times ws[h]^T: one pass. */
static void per_head(model *m, kl_workers *w, const model_w *ws, int n, int cols)
{
    int H = m->hp.n_heads, out = (int)ws[0].rows;
    kl_mm_run *runs = m->s.mla_runs;
    for (int h = 0; h < H; h++)
        runs[h] = (kl_mm_run){model_mm_out(&ws[h], m->s.mla_hy + (size_t)h * n * out), h * n, n};
    kl_matmul_runs(w, runs, H, cols, m->s.mla_hx, cols, H * n, m->s.mm);
}

void model_mla_qkv(model *m, kl_workers *w, const model_batch *b, int layer)
{
    const model_layer *ly = &m->layers[layer];
    model_scratch *s = &m->s;
    const model_hparams *hp = &m->hp;
    int n = b->n;
    /* the query (or its low-rank form) and the latent read the same normed input */
    if (ly->wq_a.data)
        model_proj2(m, w, &ly->wq_a, s->mla_qa, &ly->wkv_a, s->mla_kva, s->xb, n);
    else
        model_proj2(m, w, &ly->wq, s->mla_q, &ly->wkv_a, s->mla_kva, s->xb, n);
    mla_rows(m, w, b, layer, n, MLA_NORMS);
    if (ly->wq_a.data) model_proj(m, w, &ly->wq_b, s->mla_qa, n, s->mla_q);
    mla_rows(m, w, b, layer, n, MLA_HEADS);
    per_head(m, w, ly->uk, n, hp->qk_dim - hp->n_rot);
    mla_rows(m, w, b, layer, n, MLA_QUERIES);
}

void model_mla_values(model *m, kl_workers *w, int layer, int n)
{
    const model_layer *ly = &m->layers[layer];
    model_batch none = {.n = n};
    mla_rows(m, w, &none, layer, n, MLA_GATHER);
    per_head(m, w, ly->uv, n, m->hp.kv_lora);
    mla_rows(m, w, &none, layer, n, MLA_VALUES);
}

/* The type head h's W_uk^T is kept in: wkv_b's own float type (a transpose is exact), else
 * Q8_0 (nope a multiple of its block): the product is then an int8 matmul, and a quarter of
 * F32's bytes is read per token (at short contexts decoding is bound by what it reads; F32
 * cost a tenth of a V2-shaped model's decode), at Q8_0's rounding of each weight (within
 * 1/254 of its block's largest). Else F32. */
static kl_dtype uk_type(kl_dtype kvb, int64_t nope)
{
    if (kvb == KL_F32 || kvb == KL_F16 || kvb == KL_BF16) return kvb;
    return kl_dtype_row_bytes(KL_Q8_0, nope) && kl_matmul_supports(KL_Q8_0) ? KL_Q8_0 : KL_F32;
}

/* Points w->packed at the next bytes of *at, packed (fill) or only sized (at NULL). */
static size_t pack_w(model_w *w, uint8_t *at)
{
    size_t n = (kl_pack_bytes(w->type, w->rows, w->cols) + 63) & ~(size_t)63;
    if (n && at) {
        kl_pack(NULL, w->type, w->data, w->rows, w->cols, at);
        w->packed = at;
    }
    return n;
}

int model_mla_bind(model *m, kl_err *err)
{
    const model_hparams *hp = &m->hp;
    size_t H = (size_t)hp->n_heads, L = (size_t)hp->n_layers, lat = (size_t)hp->kv_lora;
    size_t nope = (size_t)(hp->qk_dim - hp->n_rot), vd = (size_t)hp->v_head_dim, bytes = 0;
    for (size_t l = 0; l < L; l++) /* a mix may give layers different types */
        bytes += H * lat *
                 kl_dtype_row_bytes(uk_type(m->layers[l].wkv_b.type, (int64_t)nope), (int64_t)nope);
    m->mla_w = calloc(L * 2 * H, sizeof *m->mla_w);
    m->mla_uk = malloc(bytes);
    float *row = malloc(sizeof(float) * lat), *ukt = malloc(sizeof(float) * lat * nope);
    if (!m->mla_w || !m->mla_uk || !row || !ukt) {
        free(row), free(ukt);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    uint8_t *uk = m->mla_uk;
    for (size_t l = 0; l < L; l++) {
        model_layer *ly = &m->layers[l];
        const model_w *kvb = &ly->wkv_b;
        size_t rb = kl_dtype_row_bytes(kvb->type, kvb->cols);
        kl_dtype ut = uk_type(kvb->type, (int64_t)nope);
        size_t urb = kl_dtype_row_bytes(ut, (int64_t)nope); /* bytes per uk row */
        if (!kl_dequantize_supports(kvb->type)) {
            free(row), free(ukt);
            return kl_errf(err, KL_EUNSUP, "blk.%zu.attn_kv_b.weight: type %s cannot be read here",
                           l, kl_dtype_get(kvb->type)->name);
        }
        ly->uk = m->mla_w + l * 2 * H, ly->uv = ly->uk + H;
        for (size_t h = 0; h < H; h++, uk += lat * urb) {
            size_t r0 = h * (nope + vd); /* head h's rows: nope key rows, then vd value rows */
            for (size_t d = 0; d < nope; d++) {
                kl_dequantize_row(kvb->type, (const uint8_t *)kvb->data + (r0 + d) * rb, row,
                                  (int64_t)lat);
                for (size_t c = 0; c < lat; c++)
                    ukt[c * nope + d] = row[c];
            }
            for (size_t c = 0; c < lat; c++)
                kl_quantize_row(ut, ukt + c * nope, uk + c * urb, (int64_t)nope);
            ly->uk[h] = (model_w){uk, ut, (int64_t)lat, (int64_t)nope, NULL};
            ly->uv[h] = (model_w){(const uint8_t *)kvb->data + (r0 + nope) * rb, kvb->type,
                                  (int64_t)vd, (int64_t)lat, NULL};
        }
    }
    free(row), free(ukt);
    if (m->opts.no_repack) return 0;
    size_t total = 0; /* uk and uv packed as the other weights are (model/pack.c) */
    for (size_t i = 0; i < L * 2 * H; i++)
        total += pack_w(&m->mla_w[i], NULL);
    if (!total) return 0;
    if (!(m->mla_pk = aligned_alloc(64, total))) return kl_errf(err, KL_ENOMEM, "out of memory");
    uint8_t *at = m->mla_pk;
    for (size_t i = 0; i < L * 2 * H; i++)
        at += pack_w(&m->mla_w[i], at);
    return 0;
}

void model_mla_free(model *m)
{
    free(m->mla_w), free(m->mla_uk), free(m->mla_pk);
}
