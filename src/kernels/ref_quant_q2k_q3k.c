/* kernels/ref_quant_q2k_q3k.c: Q2_K and Q3_K, the 2- and 3-bit K-quants (256-element
 * super-blocks of 16 groups of 16): row conversions and the scalar matmuls against Q8_K.
 *
 *   Q2_K: x = d * sc_j * q - dmin * m_j, q in 0..3, (sc_j, m_j) 4 bits each in scales[j]
 *         (low, high nibble); q of element 128h + 32c + l is bits 2c of qs[32h + l].
 *   Q3_K: x = d * (sc_j - 32) * q, q in -4..3: the low 2 bits as Q2_K's, the third from
 *         bit 4h + c of hmask[l] (clear: q - 4); sc_j 6 bits, packed in 12 bytes
 *         (kl_k3_scale()). Blocks are read through kl_ksb_unpack (ref_ksb.c).
 * The group of element e is j = e / 16 in both.
 *
 * The dots are llama.cpp's: Q2_K sum_j sc_j dot_j times d d_a, minus dmin d_a sum_j m_j
 * bsum_j (the activations' 16-element sums); Q3_K d d_a sum_j (sc_j - 32) dot_j. Exact
 * integer sums, then float: the same numbers to float rounding.
 *
 * The quantizers are Kiln's own: each group's scale (and Q2_K's min) by a small search with
 * least-squares refits, then the group scales quantized against the super-block's. */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"

static void k3_scales_pack(const int sc[16], uint8_t s[12])
{
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int v = sc[j] + 32;
        if (j < 8)
            s[j] |= (uint8_t)(v & 0xF);
        else
            s[j - 8] |= (uint8_t)((v & 0xF) << 4);
        s[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
    }
}

/* Packs 2-bit fields: element e = 128h + 32c + l into bits 2c of qs[32h + l]. */
static void pack2(const uint8_t q[KL_QKK], uint8_t qs[64])
{
    memset(qs, 0, 64);
    for (int e = 0; e < KL_QKK; e++)
        qs[32 * (e / 128) + e % 32] |= (uint8_t)(q[e] << (2 * (e % 128 / 32)));
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- quantizers ---- */

/* Starting steps range / (nmax + t / 8) for t in -2, 0, .., 6, and refits per start: as good
 * as every t in -4..8 (rms error within 0.5%), 2.3x faster. */
#define FIT_T0 -2
#define FIT_T1 6
#define FIT_TS 2
#define FIT_IT 3

/* Best x ~ s * q - mn over n values, q in 0..nmax, s >= 0, mn >= 0 (the format can only
 * shift down): from a few starting steps, assign q, refit (s, mn) by least squares, keep
 * the smallest squared error. */
static void fit_min(const float *x, int n, int nmax, float *s_out, float *mn_out)
{
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    *s_out = 0.0f;
    *mn_out = -lo;
    if (!(hi > lo)) return;
    float best = INFINITY;
    for (int t = FIT_T0; t <= FIT_T1; t += FIT_TS) {
        float s = (hi - lo) / ((float)nmax + 0.125f * (float)t), mn = -lo;
        for (int it = 0; it < FIT_IT; it++) {
            float sq = 0, sq2 = 0, sx = 0, sxq = 0, err = 0, is = 1.0f / s;
            for (int i = 0; i < n; i++) {
                int q = clampi(kl_nearest_int((x[i] + mn) * is), 0, nmax);
                sq += (float)q, sq2 += (float)(q * q), sx += x[i], sxq += x[i] * (float)q;
                float e = s * (float)q - mn - x[i];
                err += e * e;
            }
            if (err < best) best = err, *s_out = s, *mn_out = mn;
            /* minimise sum (s q - mn - x)^2: s sq2 - mn sq = sxq, s sq - mn n = sx */
            float det = sq2 * (float)n - sq * sq;
            if (!(det > 0)) break;
            float ns = (sxq * (float)n - sq * sx) / det, nmn = (sxq * sq - sx * sq2) / det;
            if (nmn < 0) nmn = 0, ns = sxq / sq2;
            if (!(ns > 0)) break;
            s = ns, mn = nmn;
        }
    }
}

/* Best signed x ~ s * q over n values, q in -nlo..nhi (Q3_K: -4..3): the value of largest
 * magnitude tried on either end of the range, then least-squares refits. */
static float fit_sym(const float *x, int n, int nlo, int nhi)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax == 0.0f) return 0.0f;
    float best = INFINITY, best_s = 0.0f;
    for (int t = FIT_T0; t <= FIT_T1; t += FIT_TS) {
        for (int side = 0; side < 2; side++) {
            float s = side ? max / ((float)nhi + 0.125f * (float)t)
                           : max / (-(float)nlo - 0.125f * (float)t);
            for (int it = 0; it < FIT_IT - 1 && s != 0.0f; it++) {
                float sq2 = 0, sxq = 0, err = 0, is = 1.0f / s;
                for (int i = 0; i < n; i++) {
                    int q = clampi(kl_nearest_int(x[i] * is), -nlo, nhi);
                    sq2 += (float)(q * q), sxq += x[i] * (float)q;
                    float e = s * (float)q - x[i];
                    err += e * e;
                }
                if (err < best) best = err, best_s = s;
                if (!(sq2 > 0)) break;
                s = sxq / sq2;
            }
        }
    }
    return best_s;
}

static void q2_k_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q2_k *b = dst;
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        float s[16], mn[16], smax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < 16; j++) {
            fit_min(x + 16 * j, 16, 3, &s[j], &mn[j]);
            smax = fmaxf(smax, s[j]);
            mmax = fmaxf(mmax, mn[j]);
        }
        b[i].d = kl_fp32_to_fp16(smax / 15.0f);
        b[i].dmin = kl_fp32_to_fp16(mmax / 15.0f);
        float d = kl_fp16_to_fp32(b[i].d), dmin = kl_fp16_to_fp32(b[i].dmin);
        uint8_t q[KL_QKK];
        for (int j = 0; j < 16; j++) {
            int sc = d > 0.0f ? clampi(kl_nearest_int(s[j] / d), 0, 15) : 0;
            int m = dmin > 0.0f ? clampi(kl_nearest_int(mn[j] / dmin), 0, 15) : 0;
            b[i].scales[j] = (uint8_t)(sc | m << 4);
            float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 16; l++)
                q[16 * j + l] =
                    (uint8_t)(dl > 0.0f ? clampi(kl_nearest_int((x[16 * j + l] + ml) / dl), 0, 3)
                                        : 0);
        }
        pack2(q, b[i].qs);
    }
}

static void q3_k_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q3_k *b = dst;
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        float s[16], amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 16; j++) {
            s[j] = fit_sym(x + 16 * j, 16, 4, 3);
            if (fabsf(s[j]) > amax) amax = fabsf(s[j]), max = s[j];
        }
        /* the largest scale lands on -32, the end with room */
        b[i].d = kl_fp32_to_fp16(max / -32.0f);
        float d = kl_fp16_to_fp32(b[i].d);
        int sc[16];
        uint8_t lo[KL_QKK];
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int j = 0; j < 16; j++) {
            sc[j] = d != 0.0f ? clampi(kl_nearest_int(s[j] / d), -32, 31) : 0;
            float dl = d * (float)sc[j];
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                int q = dl != 0.0f ? clampi(kl_nearest_int(x[e] / dl), -4, 3) : 0;
                lo[e] = (uint8_t)((q + 4) & 3);
                if (q >= 0) b[i].hmask[e % 32] |= (uint8_t)(1 << (4 * (e / 128) + e % 128 / 32));
            }
        }
        k3_scales_pack(sc, b[i].scales);
        pack2(lo, b[i].qs);
    }
}

/* ---- dequantizers: llama.cpp's formulas ---- */

static void k23_dequant(kl_dtype t, const void *src, float *y, int64_t n)
{
    size_t bb = kl_dtype_get(t)->block_bytes;
    kl_ksb v;
    for (int64_t i = 0; i < n / KL_QKK; i++, y += KL_QKK) {
        kl_ksb_unpack(t, (const uint8_t *)src + (size_t)i * bb, &v);
        float d = kl_fp16_to_fp32(v.d), dmin = kl_fp16_to_fp32(v.dmin);
        int off = t == KL_Q3_K ? 4 : 0;
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)v.sc[j], ml = dmin * (float)v.m[j];
            for (int l = 0; l < 16; l++)
                y[16 * j + l] = t == KL_Q3_K ? dl * (float)(v.u[16 * j + l] - off)
                                             : dl * (float)v.u[16 * j + l] - ml;
        }
    }
}

static void q2_k_dequant(const void *src, float *y, int64_t n)
{
    k23_dequant(KL_Q2_K, src, y, n);
}

static void q3_k_dequant(const void *src, float *y, int64_t n)
{
    k23_dequant(KL_Q3_K, src, y, n);
}

/* ---- scalar matmuls ---- */

#define FOR_ROWS_AND_BATCH(g, r0, r1)                                                              \
    for (int b = 0; b < (g)->B; b++)                                                               \
        for (int64_t r = (r0); r < (r1); r++)

/* Q2_K: d d_a sum_t sc_t dot_t(u, a) - dmin d_a sum_t m_t bs_t; Q3_K: d d_a sum_t sc_t
 * dot_t(u - 4, a). */
static void k23_gemm(kl_dtype t, const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    size_t bb = kl_dtype_get(t)->block_bytes;
    int off = t == KL_Q3_K ? 4 : 0;
    kl_ksb v;
    FOR_ROWS_AND_BATCH(g, r0, r1)
    {
        const uint8_t *w = g->W + (size_t)r * g->w_stride;
        const uint8_t *a = g->act + (size_t)b * g->a_stride;
        const float *ad = kl_act_q8_k_d(a, n);
        const int16_t *bs = kl_act_q8_k_bsums(a, n);
        float s = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            const int8_t *aq = (const int8_t *)a + i * KL_QKK;
            kl_ksb_unpack(t, w + (size_t)i * bb, &v);
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t dot = 0;
                for (int l = 0; l < 16; l++)
                    dot += (v.u[16 * j + l] - off) * aq[16 * j + l];
                isum += v.sc[j] * dot;
                msum += v.m[j] * bs[16 * i + j];
            }
            if (t == KL_Q3_K) {
                s += kl_fp16_to_fp32(v.d) * ad[i] * (float)isum;
            } else {
                float dall = ad[i] * kl_fp16_to_fp32(v.d), dmin = ad[i] * kl_fp16_to_fp32(v.dmin);
                s += dall * (float)isum - dmin * (float)msum;
            }
        }
        g->y[b * g->ldy + r] = s;
    }
}

void kl_ref_gemm_q2_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    k23_gemm(KL_Q2_K, g, r0, r1);
}

void kl_ref_gemm_q3_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    k23_gemm(KL_Q3_K, g, r0, r1);
}

void kl_ref_types_q2k_q3k(kl_isa *isa)
{
    isa->types[KL_Q2_K] = (kl_type_ops){.act = KL_Q8_K,
                                        .quant_act = kl_ref_quant_act_q8_k,
                                        .gemm = kl_ref_gemm_q2_k,
                                        .to_f32 = q2_k_dequant,
                                        .from_f32 = q2_k_quant};
    isa->types[KL_Q3_K] = (kl_type_ops){.act = KL_Q8_K,
                                        .quant_act = kl_ref_quant_act_q8_k,
                                        .gemm = kl_ref_gemm_q3_k,
                                        .to_f32 = q3_k_dequant,
                                        .from_f32 = q3_k_quant};
}
