/* kernels/ref_gemm.c: the scalar matmul, one (weight row, activation row) dot at a time. The
 * integer dots follow llama.cpp's vec_dot for each weight type (exact integer sums per
 * block, then one float multiply-add per block), so the two agree to float rounding. */
#include <string.h>

#include "kernels/impl.h"

#define FOR_ROWS_AND_BATCH(g, r0, r1)                                                              \
    for (int b = 0; b < (g)->B; b++)                                                               \
        for (int64_t r = (r0); r < (r1); r++)

static float dot_f32(const float *w, const float *x, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += w[i] * x[i];
    return s;
}

void kl_ref_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1)
{
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const float *w = (const float *)(g->W + (size_t)r * g->w_stride);
        const float *x = (const float *)(g->act + (size_t)b * g->a_stride);
        g->y[b * g->ldy + r] = dot_f32(w, x, g->cols);
    }
}

void kl_ref_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1)
{
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const uint16_t *w = (const uint16_t *)(g->W + (size_t)r * g->w_stride);
        const float *x = (const float *)(g->act + (size_t)b * g->a_stride);
        float s = 0.0f;
        for (int64_t i = 0; i < g->cols; i++)
            s += kl_fp16_to_fp32(w[i]) * x[i];
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1)
{
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const uint16_t *w = (const uint16_t *)(g->W + (size_t)r * g->w_stride);
        const float *x = (const float *)(g->act + (size_t)b * g->a_stride);
        float s = 0.0f;
        for (int64_t i = 0; i < g->cols; i++)
            s += kl_bf16_to_fp32(w[i]) * x[i];
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QK;
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q8_0 *w = (const kl_block_q8_0 *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const int8_t *aq = (const int8_t *)a;
        const float *ad = kl_act_q8_0_d(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            int32_t sumi = 0;
            for (int j = 0; j < KL_QK; j++)
                sumi += w[i].qs[j] * aq[i * KL_QK + j];
            s += (float)sumi * (kl_fp16_to_fp32(w[i].d) * ad[i]);
        }
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QK;
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q4_0 *w = (const kl_block_q4_0 *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const int8_t *aq = (const int8_t *)a;
        const float *ad = kl_act_q8_0_d(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            int32_t sumi = 0;
            for (int j = 0; j < KL_QK / 2; j++) {
                sumi += ((w[i].qs[j] & 0xF) - 8) * aq[i * KL_QK + j];
                sumi += ((w[i].qs[j] >> 4) - 8) * aq[i * KL_QK + j + 16];
            }
            s += (float)sumi * (kl_fp16_to_fp32(w[i].d) * ad[i]);
        }
        g->y[b * g->ldy + r] = s;
    }
}

/* Q4_K/Q5_K block dot against Q8_K: sum_j sc_j * dot(q, a) over 8 sub-blocks of 32, and
 * sum_j m_j * (sum of a over the sub-block) for the mins. q: 256 unpacked quants. */
static float k4_block_dot(const uint8_t *q, const uint8_t *scales, float d, float dmin,
                          const int8_t *aq, float ad, const int16_t *bsums)
{
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kl_k4_scale_min(j, scales, &sc, &m);
        int32_t dot = 0;
        for (int l = 0; l < 32; l++)
            dot += q[32 * j + l] * aq[32 * j + l];
        isum += sc * dot;
        msum += m * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return d * ad * (float)isum - dmin * ad * (float)msum;
}

void kl_ref_gemm_q4_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    uint8_t q[KL_QKK];
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q4_k *w = (const kl_block_q4_k *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const float *ad = kl_act_q8_k_d(a, n);
        const int16_t *bs = kl_act_q8_k_bsums(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    q[64 * c + l] = w[i].qs[32 * c + l] & 0xF;
                    q[64 * c + 32 + l] = w[i].qs[32 * c + l] >> 4;
                }
            s += k4_block_dot(q, w[i].scales, kl_fp16_to_fp32(w[i].d), kl_fp16_to_fp32(w[i].dmin),
                              (const int8_t *)a + i * KL_QKK, ad[i], bs + 16 * i);
        }
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_q5_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    uint8_t q[KL_QKK];
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q5_k *w = (const kl_block_q5_k *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const float *ad = kl_act_q8_k_d(a, n);
        const int16_t *bs = kl_act_q8_k_bsums(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    int hl = (w[i].qh[l] >> (2 * c)) & 1, hh = (w[i].qh[l] >> (2 * c + 1)) & 1;
                    q[64 * c + l] = (uint8_t)((w[i].qs[32 * c + l] & 0xF) | (hl << 4));
                    q[64 * c + 32 + l] = (uint8_t)((w[i].qs[32 * c + l] >> 4) | (hh << 4));
                }
            s += k4_block_dot(q, w[i].scales, kl_fp16_to_fp32(w[i].d), kl_fp16_to_fp32(w[i].dmin),
                              (const int8_t *)a + i * KL_QKK, ad[i], bs + 16 * i);
        }
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_q6_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    int8_t q[KL_QKK];
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q6_k *w = (const kl_block_q6_k *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const int8_t *aq = (const int8_t *)a;
        const float *ad = kl_act_q8_k_d(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *ql = w[i].ql, *qh = w[i].qh;
            for (int h = 0; h < 2; h++, ql += 64, qh += 32)
                for (int l = 0; l < 32; l++) {
                    int8_t *o = q + 128 * h;
                    o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                    o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t dot = 0;
                for (int l = 0; l < 16; l++)
                    dot += q[16 * j + l] * aq[i * KL_QKK + 16 * j + l];
                isum += w[i].scales[j] * dot;
            }
            s += kl_fp16_to_fp32(w[i].d) * ad[i] * (float)isum;
        }
        g->y[b * g->ldy + r] = s;
    }
}
