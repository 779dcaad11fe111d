/* kernels/ref_quant.c: row conversions between F32 and the weight dtypes, scalar. The
 * dequantizers are exact: they compute each value with the same float operations, in the same
 * order, as llama.cpp's, so the same bytes give the same floats. The K-quant quantizers are
 * simple min/max ones (not llama.cpp's search), but write blocks any GGUF reader decodes. */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"

static void f32_to_f32(const float *x, void *dst, int64_t n)
{
    memcpy(dst, x, (size_t)n * sizeof(float));
}

static void f32_from(const void *src, float *y, int64_t n)
{
    memcpy(y, src, (size_t)n * sizeof(float));
}

static void f16_quant(const float *x, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = kl_fp32_to_fp16(x[i]);
}

static void f16_dequant(const void *src, float *y, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        y[i] = kl_fp16_to_fp32(h[i]);
}

static void bf16_quant(const float *x, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = kl_fp32_to_bf16(x[i]);
}

static void bf16_dequant(const void *src, float *y, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        y[i] = kl_bf16_to_fp32(h[i]);
}

/* Q8_0: d = amax / 127, q = round(x / d) (ties away from zero), as llama.cpp's reference. */
static void q8_0_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        float amax = 0.0f;
        for (int j = 0; j < KL_QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = kl_fp32_to_fp16(d);
        for (int j = 0; j < KL_QK; j++)
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void q8_0_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d);
        for (int j = 0; j < KL_QK; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

/* Q4_0: d = -max / 8 with max the signed value of largest magnitude, q = x / d + 8 in 0..15. */
static void q4_0_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < KL_QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = kl_fp32_to_fp16(d);
        for (int j = 0; j < KL_QK / 2; j++) {
            int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q4_0_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / KL_QK; i++, y += KL_QK) {
        float d = kl_fp16_to_fp32(b[i].d);
        for (int j = 0; j < KL_QK / 2; j++) {
            y[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Packs 8 six-bit scales and mins the way kl_k4_scale_min() unpacks them. */
static void k4_pack(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

/* Q4_K / Q5_K (nmax 15 / 31): per 32 elements x ~ d*sc*q - dmin*m, from each sub-block's min
 * and max. Writes quants L[256] (0..nmax) and the block's d, dmin, scales. */
static void k_minmax_quant(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                           uint8_t scales[12], uint8_t L[KL_QKK])
{
    float scale[8], min[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = x[32 * j];
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        scale[j] = (hi - lo) / (float)nmax;
        min[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, min[j]);
    }
    *d_out = kl_fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = kl_fp32_to_fp16(max_min / 63.0f);
    float d = kl_fp16_to_fp32(*d_out), dmin = kl_fp16_to_fp32(*dmin_out);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0.0f ? clampi(kl_nearest_int(scale[j] / d), 0, 63) : 0);
        m[j] = (uint8_t)(dmin > 0.0f ? clampi(kl_nearest_int(min[j] / dmin), 0, 63) : 0);
        float d1 = d * (float)sc[j], m1 = dmin * (float)m[j];
        for (int l = 0; l < 32; l++) {
            int q = d1 > 0.0f ? kl_nearest_int((x[32 * j + l] + m1) / d1) : 0;
            L[32 * j + l] = (uint8_t)clampi(q, 0, nmax);
        }
    }
    k4_pack(sc, m, scales);
}

static void q4_k_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q4_k *b = dst;
    uint8_t L[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        k_minmax_quant(x, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void q4_k_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q4_k *b = src;
    for (int64_t i = 0; i < n / KL_QKK; i++) {
        float d = kl_fp16_to_fp32(b[i].d), min = kl_fp16_to_fp32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            uint8_t sc, m;
            kl_k4_scale_min(2 * c, b[i].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = min * (float)m;
            kl_k4_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void q5_k_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q5_k *b = dst;
    uint8_t L[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        k_minmax_quant(x, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

static void q5_k_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q5_k *b = src;
    for (int64_t i = 0; i < n / KL_QKK; i++) {
        float d = kl_fp16_to_fp32(b[i].d), min = kl_fp16_to_fp32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        unsigned u1 = 1, u2 = 2;
        for (int c = 0; c < 4; c++, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            kl_k4_scale_min(2 * c, b[i].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = min * (float)m;
            kl_k4_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: per 16 elements x ~ d*sc*q, q in -32..31 (stored + 32), sc a signed byte. */
static void q6_k_quant(const float *x, void *dst, int64_t n)
{
    kl_block_q6_k *b = dst;
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        float scale[16], max_abs = 0.0f, max_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 16; l++)
                if (fabsf(x[16 * j + l]) > amax) {
                    amax = fabsf(x[16 * j + l]);
                    max = x[16 * j + l];
                }
            scale[j] = max / -32.0f;
            if (fabsf(scale[j]) > max_abs) {
                max_abs = fabsf(scale[j]);
                max_scale = scale[j];
            }
        }
        b[i].d = kl_fp32_to_fp16(max_scale / -128.0f);
        float d = kl_fp16_to_fp32(b[i].d);
        uint8_t L[KL_QKK];
        for (int j = 0; j < 16; j++) {
            int sc = d != 0.0f ? clampi(kl_nearest_int(scale[j] / d), -128, 127) : 0;
            b[i].scales[j] = (int8_t)sc;
            float dd = d * (float)sc;
            for (int l = 0; l < 16; l++) {
                int q = dd != 0.0f ? kl_nearest_int(x[16 * j + l] / dd) : 0;
                L[16 * j + l] = (uint8_t)(clampi(q, -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const uint8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] =
                    (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

static void q6_k_dequant(const void *src, float *y, int64_t n)
{
    const kl_block_q6_k *b = src;
    for (int64_t i = 0; i < n / KL_QKK; i++) {
        float d = kl_fp16_to_fp32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* Fills the row conversions of the types above into the scalar table. */
void kl_ref_types_base(kl_isa *isa)
{
    static const struct {
        kl_dtype t;
        kl_row_fn from;
        kl_dequant_fn to;
    } convs[] = {
        {KL_F32, f32_to_f32, f32_from},      {KL_F16, f16_quant, f16_dequant},
        {KL_BF16, bf16_quant, bf16_dequant}, {KL_Q8_0, q8_0_quant, q8_0_dequant},
        {KL_Q4_0, q4_0_quant, q4_0_dequant}, {KL_Q4_K, q4_k_quant, q4_k_dequant},
        {KL_Q5_K, q5_k_quant, q5_k_dequant}, {KL_Q6_K, q6_k_quant, q6_k_dequant},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        isa->types[convs[i].t].from_f32 = convs[i].from;
        isa->types[convs[i].t].to_f32 = convs[i].to;
    }
}

bool kl_dequantize_supports(kl_dtype t)
{
    return (unsigned)t < KL_DTYPE_COUNT && kl_isa_get()->types[t].to_f32 != NULL;
}

/* Returns false (writing nothing) when t has no dequantizer or n is not a multiple of its
 * block size. */
bool kl_dequantize_row(kl_dtype t, const void *src, float *dst, int64_t n)
{
    if (!kl_dequantize_supports(t) || !kl_dtype_row_bytes(t, n)) return false;
    kl_isa_get()->types[t].to_f32(src, dst, n);
    return true;
}

bool kl_quantize_supports(kl_dtype t)
{
    return (unsigned)t < KL_DTYPE_COUNT && kl_isa_get()->types[t].from_f32 != NULL;
}

/* Returns false (writing nothing) when t cannot be quantized to or n is not a multiple of
 * its block size. */
bool kl_quantize_row(kl_dtype t, const float *src, void *dst, int64_t n)
{
    if ((unsigned)t >= KL_DTYPE_COUNT || (n && !kl_dtype_row_bytes(t, n))) return false;
    kl_row_fn from = kl_isa_get()->types[t].from_f32;
    if (!from) return false;
    from(src, dst, n);
    return true;
}
