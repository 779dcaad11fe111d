/* kernels/ref_quant_legacy.c: Q4_1, Q5_0 and Q5_1, GGUF's 32-element blocks with a scale (and
 * for the _1 types a min) beside Q4_0 and Q8_0: row conversions and the scalar matmuls.
 *
 *   Q4_1: x = d * q + m, q in 0..15 (nibbles as Q4_0: element j low, j + 16 high).
 *   Q5_0: x = d * (q - 16), q in 0..31: Q4_0's nibbles plus bit j of the 32-bit qh.
 *   Q5_1: x = d * q + m, q in 0..31, Q5_0's bits.
 *
 * The dots are llama.cpp's: Q5_0 against Q8_0 activations, sum_blocks d_w d_a sum(q a); Q4_1
 * and Q5_1 against Q8_1 ones, where the min's term uses the activation block's d * sum(a_q)
 * rounded to fp16 (its block_q8_1.s): sum_blocks d_w d_a sum(q a) + m_w s_a. The integer
 * sums are exact, so the two agree to float rounding. */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"

/* The 32 quants of a block, unpacked: nibbles qs plus (Q5) bit j of qh as bit 4. */
static void unpack(const uint8_t qs[16], const uint8_t *qh4, uint8_t q[32])
{
    uint32_t qh = 0;
    if (qh4) memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}

/* Packs 32 quants (0..31) into nibbles and, when qh4, the fifth bits. */
static void pack(const uint8_t q[32], uint8_t qs[16], uint8_t *qh4)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        qh |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    if (qh4) memcpy(qh4, &qh, 4);
}

static uint8_t clamp_q(float v, int nmax)
{
    int q = kl_nearest_int(v);
    return (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
}

/* Min/max blocks (Q4_1 nmax 15, Q5_1 31): d = (max - min) / nmax, m = min; each value to
 * the nearest step of the fp16-rounded d and m it will be read back with. */
static void minmax_block(const float *x, int nmax, uint16_t *d_out, uint16_t *m_out, uint8_t q[32])
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < KL_QK; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    *d_out = kl_fp32_to_fp16((hi - lo) / (float)nmax);
    *m_out = kl_fp32_to_fp16(lo);
    float d = kl_fp16_to_fp32(*d_out), m = kl_fp16_to_fp32(*m_out);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < KL_QK; j++)
        q[j] = clamp_q((x[j] - m) * id, nmax);
}

static void q4_1_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q4_1 *b = dst;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        minmax_block(x, 15, &b[i].d, &b[i].m, q);
        pack(q, b[i].qs, NULL);
    }
}

static void q5_1_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q5_1 *b = dst;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        minmax_block(x, 31, &b[i].d, &b[i].m, q);
        pack(q, b[i].qs, b[i].qh);
    }
}

/* Q5_0: d = -max / 16 with max the signed value of largest magnitude (it lands on q = 0),
 * as Q4_0 does with 8. */
static void q5_0_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q5_0 *b = dst;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < KL_QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        b[i].d = kl_fp32_to_fp16(max / -16.0f);
        float d = kl_fp16_to_fp32(b[i].d), id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < KL_QK; j++)
            q[j] = clamp_q(x[j] * id + 16.0f, 31);
        pack(q, b[i].qs, b[i].qh);
    }
}

/* Dequantizers: llama.cpp's formulas, q * d (+ m). */
static void q4_1_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q4_1 *b = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d), m = kl_fp16_to_fp32(b[i].m);
        unpack(b[i].qs, NULL, q);
        for (int j = 0; j < KL_QK; j++)
            y[j] = (float)q[j] * d + m;
    }
}

static void q5_0_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q5_0 *b = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d);
        unpack(b[i].qs, b[i].qh, q);
        for (int j = 0; j < KL_QK; j++)
            y[j] = (float)(q[j] - 16) * d;
    }
}

static void q5_1_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q5_1 *b = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d), m = kl_fp16_to_fp32(b[i].m);
        unpack(b[i].qs, b[i].qh, q);
        for (int j = 0; j < KL_QK; j++)
            y[j] = (float)q[j] * d + m;
    }
}

/* The Q8_1 activation row: the Q8_0 row, then per block s = fp16(d * sum(q)) with d the
 * unrounded amax / 127 (llama.cpp's quantize_row_q8_1 on x86); qs, d and the int sums are
 * written by q8_0 (any ISA's: they are bit-identical). */
void kl_act_q8_1_finish(const float *x, void *dst, int64_t n)
{
    const int32_t *c = kl_act_q8_0_c(dst, n);
    float *s = (float *)kl_act_q8_1_s(dst, n);
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        float amax = 0.0f;
        for (int j = 0; j < KL_QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        s[i] = kl_fp16_to_fp32(kl_fp32_to_fp16(amax / 127.0f * (float)(c[i] / -128)));
    }
}

void kl_ref_quant_act_q8_1(const float *x, void *dst, int64_t n)
{
    kl_ref_quant_act_q8_0(x, dst, n);
    kl_act_q8_1_finish(x, dst, n);
}

#define FOR_ROWS_AND_BATCH(g, r0, r1)                                                              \
    for (int b = 0; b < (g)->B; b++)                                                               \
        for (int64_t r = (r0); r < (r1); r++)

/* sum(q a) of one block: q unpacked (minus bias), a the activation block's 32 int8. */
static int32_t block_dot(const uint8_t q[32], int bias, const int8_t *a)
{
    int32_t s = 0;
    for (int j = 0; j < KL_QK; j++)
        s += (q[j] - bias) * a[j];
    return s;
}

void kl_ref_gemm_q5_0(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QK;
    uint8_t q[32];
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const kl_block_q5_0 *w = (const kl_block_q5_0 *)(g->W + (size_t)r * g->w_stride);
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const float *ad = kl_act_q8_0_d(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            unpack(w[i].qs, w[i].qh, q);
            int32_t sumi = block_dot(q, 16, (const int8_t *)a + i * KL_QK);
            s += (float)sumi * (kl_fp16_to_fp32(w[i].d) * ad[i]);
        }
        g->y[b * g->ldy + r] = s;
    }
}

/* Q4_1 / Q5_1 (the same blocks but for qh): BLOCK, and whether it has the fifth bits. */
#define GEMM_MIN(NAME, BLOCK, QH)                                                                  \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        int64_t n = g->cols, nb = n / KL_QK;                                                       \
        uint8_t q[32];                                                                             \
        FOR_ROWS_AND_BATCH(g, r0, r1)                                                              \
        {                                                                                          \
            const BLOCK *w = (const BLOCK *)(g->W + (size_t)r * g->w_stride);                      \
            const uint8_t *a = g->act + (size_t)b * g->a_stride;                                   \
            const float *ad = kl_act_q8_0_d(a, n), *as = kl_act_q8_1_s(a, n);                      \
            float s = 0.0f;                                                                        \
            for (int64_t i = 0; i < nb; i++) {                                                     \
                unpack(w[i].qs, QH, q);                                                            \
                int32_t sumi = block_dot(q, 0, (const int8_t *)a + i * KL_QK);                     \
                s += (kl_fp16_to_fp32(w[i].d) * ad[i]) * (float)sumi +                             \
                     kl_fp16_to_fp32(w[i].m) * as[i];                                              \
            }                                                                                      \
            g->y[b * g->ldy + r] = s;                                                              \
        }                                                                                          \
    }

GEMM_MIN(kl_ref_gemm_q4_1, kl_block_q4_1, NULL)
GEMM_MIN(kl_ref_gemm_q5_1, kl_block_q5_1, w[i].qh)

void kl_ref_types_legacy(kl_isa *isa)
{
    isa->types[KL_Q4_1] = (kl_type_ops){.act = KL_Q8_1,
                                        .quant_act = kl_ref_quant_act_q8_1,
                                        .gemm = kl_ref_gemm_q4_1,
                                        .to_f32 = q4_1_dequant,
                                        .from_f32 = q4_1_quant};
    isa->types[KL_Q5_0] = (kl_type_ops){.act = KL_Q8_0,
                                        .quant_act = kl_ref_quant_act_q8_0,
                                        .gemm = kl_ref_gemm_q5_0,
                                        .to_f32 = q5_0_dequant,
                                        .from_f32 = q5_0_quant};
    isa->types[KL_Q5_1] = (kl_type_ops){.act = KL_Q8_1,
                                        .quant_act = kl_ref_quant_act_q8_1,
                                        .gemm = kl_ref_gemm_q5_1,
                                        .to_f32 = q5_1_dequant,
                                        .from_f32 = q5_1_quant};
}
