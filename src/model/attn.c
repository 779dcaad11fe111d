/* model/attn.c: attention of one layer through the paged KV cache. First the batch's K and V
 * rows go into their cache slots (in the cache's dtype); then every (token, head) pair attends
 * to positions 0..pos of its own sequence, reading K/V block by block through the sequence's
 * block table. Work is split across the workers by (token, head) pair. */
#include <math.h>
#include <string.h>

#include "model/internal.h"

typedef struct attn_job {
    model *m;
    kv_store *kv;
    int layer;
    const model_batch *b;
    kl_dtype dt;
    size_t row_bytes; /* one token's K (or V) row in the cache */
    int bs;
} attn_job;

/* Reads head slice [off, off + n) of a cached row into out as floats. */
static const float *kv_read(kl_dtype dt, const uint8_t *row, int off, int n, float *out)
{
    switch (dt) {
    case KL_F32: return (const float *)row + off;
    case KL_F16: kl_fp16_to_fp32_row((const uint16_t *)row + off, out, n); return out;
    default: /* Q8_0: off and n are multiples of 32 (checked by model_forward) */
        kl_dequantize_row(dt, row + (size_t)(off / 32) * 34, out, n);
        return out;
    }
}

/* dst = src rounded to F16 and back (in place is fine), through h16 in chunks. */
static void f16_round(const float *src, float *dst, int n, uint16_t h16[512])
{
    for (int i = 0; i < n; i += 512) {
        int k = n - i < 512 ? n - i : 512;
        kl_fp32_to_fp16_row(src + i, h16, k);
        kl_fp16_to_fp32_row(h16, dst + i, k);
    }
}

/* One work item: token i and KV head g with the `group` query heads that share it, so each
 * cached K/V row is read and converted once for all of them. */
static void attn_part(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const model_batch *b = j->b;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, mc = m->opts.max_ctx;
    float *scores = m->s.scores + (size_t)ith * (size_t)mc * (size_t)group; /* (group, mc) */
    float *acc = m->s.acc + (size_t)ith * (size_t)hd * (size_t)group;       /* (group, hd) */
    float tmp[1024]; /* one head's K or V as floats; head_dim <= 1024 (checked at load) */
    uint16_t h16[512]; /* staging for F16 rounding */
    float qs[4096];  /* the group's queries (group * head_dim <= 4096, checked at load), F16-rounded for an F16 cache (as llama.cpp) */
    float scale = 1.f / sqrtf((float)hd);
    bool f16 = j->dt == KL_F16;
    int64_t items = (int64_t)b->n * hp->n_kv_heads;
    /* strided: later tokens of a prefill chunk attend to more positions, so contiguous
     * shares would leave the first workers idle */
    for (int64_t it = ith; it < items; it += nth) {
        int i = (int)(it / hp->n_kv_heads), g = (int)(it % hp->n_kv_heads);
        const model_seq *sq = &b->seqs[b->seq[i]];
        int len = b->pos[i] + 1, off = g * hd;
        const float *q = m->s.q + (size_t)i * m->q_dim + (size_t)g * group * hd;
        if (f16) f16_round(q, qs, group * hd, h16);
        const float *qg = f16 ? qs : q;
        for (int p = 0; p < len; p++) {
            const uint8_t *row = (const uint8_t *)kv_store_k(j->kv, j->layer, sq->blocks[p / j->bs]) +
                                 (size_t)(p % j->bs) * j->row_bytes;
            const float *k = kv_read(j->dt, row, off, hd, tmp);
            for (int h = 0; h < group; h++)
                scores[(size_t)h * mc + p] = kl_dot_f32(qg + (size_t)h * hd, k, hd) * scale;
        }
        for (int h = 0; h < group; h++) {
            float *sc = scores + (size_t)h * mc;
            kl_softmax(sc, len);
            if (f16) f16_round(sc, sc, len, h16);
        }
        memset(acc, 0, sizeof(float) * (size_t)hd * (size_t)group);
        for (int p = 0; p < len; p++) {
            const uint8_t *row = (const uint8_t *)kv_store_v(j->kv, j->layer, sq->blocks[p / j->bs]) +
                                 (size_t)(p % j->bs) * j->row_bytes;
            const float *v = kv_read(j->dt, row, off, hd, tmp);
            for (int h = 0; h < group; h++)
                kl_axpy_f32(acc + (size_t)h * hd, scores[(size_t)h * mc + p], v, hd);
        }
        memcpy(m->s.att + (size_t)i * m->q_dim + (size_t)g * group * hd, acc,
               sizeof(float) * (size_t)hd * (size_t)group);
    }
}

/* Writes token i's k and v rows into their slots. */
static void kv_write(const attn_job *j, int i)
{
    const model_batch *b = j->b;
    const model_seq *sq = &b->seqs[b->seq[i]];
    int p = b->pos[i];
    int32_t blk = sq->blocks[p / j->bs];
    size_t at = (size_t)(p % j->bs) * j->row_bytes;
    const float *k = j->m->s.k + (size_t)i * j->m->kv_dim, *v = j->m->s.v + (size_t)i * j->m->kv_dim;
    uint8_t *kd = (uint8_t *)kv_store_k(j->kv, j->layer, blk) + at;
    uint8_t *vd = (uint8_t *)kv_store_v(j->kv, j->layer, blk) + at;
    if (j->dt == KL_F16) {
        kl_fp32_to_fp16_row(k, (uint16_t *)(void *)kd, j->m->kv_dim);
        kl_fp32_to_fp16_row(v, (uint16_t *)(void *)vd, j->m->kv_dim);
    } else {
        kl_quantize_row(j->dt, k, kd, j->m->kv_dim);
        kl_quantize_row(j->dt, v, vd, j->m->kv_dim);
    }
}

void model_attention(model *m, kl_workers *w, kv_store *kv, int layer, const model_batch *b)
{
    const kv_store_config *c = kv_store_config_of(kv);
    attn_job j = {.m = m, .kv = kv, .layer = layer, .b = b, .dt = c->dtype,
                  .row_bytes = kl_dtype_row_bytes(c->dtype, c->kv_dim), .bs = c->block_tokens};
    for (int i = 0; i < b->n; i++) kv_write(&j, i);
    kl_workers_run(w, attn_part, &j);
}
