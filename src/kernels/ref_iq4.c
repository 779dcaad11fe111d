/* kernels/ref_iq4.c: IQ4_NL and IQ4_XS, scalar: the definition of correct for their SIMD paths.
 *
 * A nibble q stands for kl_iq4nl_values[q] (16 non-uniform levels, -127..113), times a scale:
 * IQ4_NL an fp16 d per 32 elements; IQ4_XS an fp16 d per 256 times a 6-bit signed integer per
 * 32. The dequantizers do llama.cpp's float operations in its order (same bytes, same floats).
 * The dots: IQ4_NL against Q8_0 activations, the block's integer sum times (d * d_a), as
 * llama.cpp; IQ4_XS against Q8_K, sum_ib scale_ib * dot_ib exact over the super-block, times
 * (d * d_a), as llama.cpp's SIMD dots do (its scalar one scales each 32 in float).
 *
 * The quantizers are simple ones without an importance matrix (llama.cpp's search is finer;
 * what matters here is that the blocks are valid and decode as any GGUF reader decodes them):
 * per 32 elements, a few trial scales, nearest level for each element, the scale refit by
 * least squares for the best trial. */
#include <math.h>
#include <string.h>

#include "kernels/iq.h"

/* Index of the level nearest to v (in level units). */
static int nearest_level(float v)
{
    const int8_t *k = kl_iq4nl_values;
    if (v <= k[0]) return 0;
    if (v >= k[15]) return 15;
    int lo = 0, hi = 15; /* k[lo] <= v < k[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < k[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - k[lo] < k[hi] - v ? lo : hi;
}

/* Best scale for 32 elements: x ~ s * k[L[j]]. Returns s (0 for an all-zero block). */
static float fit32(const float *x, uint8_t L[32])
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (amax == 0.0f) {
        memset(L, 8, 32); /* level 1, times 0 */
        return 0.0f;
    }
    float best = -1.0f, best_s = 0.0f;
    uint8_t T[32];
    for (int t = -6; t <= 6; t++) {
        /* the extreme element maps to level 0 (-127) shifted by t / 2 level units */
        float id = ((float)kl_iq4nl_values[0] + 0.5f * (float)t) / max;
        float sqx = 0.0f, sq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            T[j] = (uint8_t)nearest_level(x[j] * id);
            float v = kl_iq4nl_values[T[j]];
            sqx += x[j] * v, sq2 += v * v;
        }
        if (sq2 > 0.0f && sqx * sqx / sq2 > best) { /* least squares: error = |x|^2 - this */
            best = sqx * sqx / sq2, best_s = sqx / sq2;
            memcpy(L, T, 32);
        }
    }
    return best_s;
}

/* Levels for x at scale s (after s was rounded for storage). */
static void assign(const float *x, float s, uint8_t *L, int n)
{
    for (int j = 0; j < n; j++)
        L[j] = (uint8_t)(s != 0.0f ? nearest_level(x[j] / s) : 8);
}

static void pack_nibbles(const uint8_t L[32], uint8_t qs[16])
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void kl_ref_quant_iq4_nl(const float *x, void *dst, int64_t n)
{
    kl_block_iq4_nl *b = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        b[i].d = kl_fp32_to_fp16(fit32(x, L));
        assign(x, kl_fp16_to_fp32(b[i].d), L, 32);
        pack_nibbles(L, b[i].qs);
    }
}

void kl_ref_dequant_iq4_nl(const void *src, float *y, int64_t n)
{
    const kl_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)kl_iq4nl_values[b[i].qs[j] & 0xF];
            y[j + 16] = d * (float)kl_iq4nl_values[b[i].qs[j] >> 4];
        }
    }
}

/* Super-scale d = s_max / -32 (s_max the sub-block scale of largest magnitude), integer scales
 * ls = round(s / d) in -32..31, then levels refit at the stored d * ls. */
void kl_ref_quant_iq4_xs(const float *x, void *dst, int64_t n)
{
    kl_block_iq4_xs *b = dst;
    uint8_t L[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        float s[8], smax = 0.0f;
        for (int ib = 0; ib < 8; ib++) {
            s[ib] = fit32(x + 32 * ib, L + 32 * ib);
            if (fabsf(s[ib]) > fabsf(smax)) smax = s[ib];
        }
        b[i].d = kl_fp32_to_fp16(smax / -32.0f);
        float d = kl_fp16_to_fp32(b[i].d);
        b[i].scales_h = 0;
        memset(b[i].scales_l, 0, sizeof b[i].scales_l);
        for (int ib = 0; ib < 8; ib++) {
            int ls = d != 0.0f ? kl_nearest_int(s[ib] / d) : 0;
            ls = ls < -32 ? -32 : ls > 31 ? 31 : ls;
            int u = ls + 32;
            b[i].scales_l[ib / 2] |= (uint8_t)((u & 0xF) << (4 * (ib % 2)));
            b[i].scales_h |= (uint16_t)((u >> 4) << (2 * ib));
            assign(x + 32 * ib, d * (float)ls, L + 32 * ib, 32);
            pack_nibbles(L + 32 * ib, b[i].qs + 16 * ib);
        }
    }
}

void kl_ref_dequant_iq4_xs(const void *src, float *y, int64_t n)
{
    const kl_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / KL_QKK; i++) {
        float d = kl_fp16_to_fp32(b[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            float dl = d * (float)kl_iq4_xs_scale(&b[i], ib);
            const uint8_t *qs = b[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)kl_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * (float)kl_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* Integer dot of 32 elements (16 nibble bytes) with 32 activation bytes. */
static int32_t dot32(const uint8_t *qs, const int8_t *a)
{
    int32_t s = 0;
    for (int j = 0; j < 16; j++)
        s += kl_iq4nl_values[qs[j] & 0xF] * a[j] + kl_iq4nl_values[qs[j] >> 4] * a[j + 16];
    return s;
}

void kl_ref_gemm_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QK;
    for (int b = 0; b < g->B; b++)
        for (int64_t r = r0; r < r1; r++) {
            const kl_block_iq4_nl *w = (const kl_block_iq4_nl *)(g->W + (size_t)r * g->w_stride);
            const uint8_t *a = g->act + (size_t)b * g->a_stride;
            const float *ad = kl_act_q8_0_d(a, n);
            float s = 0.0f;
            for (int64_t i = 0; i < nb; i++)
                s += (float)dot32(w[i].qs, (const int8_t *)a + i * KL_QK) *
                     (kl_fp16_to_fp32(w[i].d) * ad[i]);
            g->y[b * g->ldy + r] = s;
        }
}

void kl_ref_gemm_iq4_xs(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    for (int b = 0; b < g->B; b++)
        for (int64_t r = r0; r < r1; r++) {
            const kl_block_iq4_xs *w = (const kl_block_iq4_xs *)(g->W + (size_t)r * g->w_stride);
            const uint8_t *a = g->act + (size_t)b * g->a_stride;
            const float *ad = kl_act_q8_k_d(a, n);
            float s = 0.0f;
            for (int64_t i = 0; i < nb; i++) {
                int32_t isum = 0;
                for (int ib = 0; ib < 8; ib++)
                    isum += kl_iq4_xs_scale(&w[i], ib) *
                            dot32(w[i].qs + 16 * ib, (const int8_t *)a + i * KL_QKK + 32 * ib);
                s += (float)isum * (kl_fp16_to_fp32(w[i].d) * ad[i]);
            }
            g->y[b * g->ldy + r] = s;
        }
}

void kl_ref_types_iq4(kl_isa *isa)
{
    isa->types[KL_IQ4_NL] = (kl_type_ops){.act = KL_Q8_0,
                                          .quant_act = kl_ref_quant_act_q8_0,
                                          .gemm = kl_ref_gemm_iq4_nl,
                                          .to_f32 = kl_ref_dequant_iq4_nl,
                                          .from_f32 = kl_ref_quant_iq4_nl};
    isa->types[KL_IQ4_XS] = (kl_type_ops){.act = KL_Q8_K,
                                          .quant_act = kl_ref_quant_act_q8_k,
                                          .gemm = kl_ref_gemm_iq4_xs,
                                          .to_f32 = kl_ref_dequant_iq4_xs,
                                          .from_f32 = kl_ref_quant_iq4_xs};
}
