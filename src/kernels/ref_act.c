/* kernels/ref_act.c: activation rows quantized for the integer dots (layouts in impl.h),
 * scalar. Q8_0 follows llama.cpp's x86 quantize_row_q8_0 (d = amax/127 rounded to fp16,
 * q = x * (127/amax) rounded to nearest even); Q8_K its quantize_row_q8_K (scale from the
 * signed value of largest magnitude, -127/max). SIMD versions must write the same bytes. */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"

/* Returns the bytes of one activation row of n elements in layout act, 64-aligned. */
size_t kl_act_row_bytes(kl_dtype act, int64_t n)
{
    size_t b;
    switch ((int)act) { /* the KL_ACT_ ids are not among kl_dtype's enumerators */
    case KL_Q8_0:
        b = (size_t)n + 8 * (size_t)(n / KL_QK);
        break;
    case KL_Q8_1:
        b = (size_t)n + 12 * (size_t)(n / KL_QK);
        break;
    case KL_ACT_Q8_K_T4: /* Q8_K's bytes, each block's qs permuted, then c */
        b = (size_t)n + 4 * (size_t)(n / KL_QKK) + 6 * (size_t)(n / 16);
        break;
    case KL_Q8_K:
    case KL_ACT_Q8_K_T8: /* the same bytes, each block's qs permuted */
    case KL_ACT_Q8_K_T8P:
        b = (size_t)n + 4 * (size_t)(n / KL_QKK) + 2 * (size_t)(n / 16);
        break;
    default:
        return 0;
    }
    return (b + 63) & ~(size_t)63;
}

void kl_ref_quant_act_q8_0(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *c = (int32_t *)(d + n / KL_QK);
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK, qs += KL_QK) {
        float amax = 0.0f;
        for (int j = 0; j < KL_QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        d[i] = kl_fp16_to_fp32(kl_fp32_to_fp16(amax / 127.0f));
        /* a scale that rounds to 0 in fp16 zeroes the block's products whatever qs holds:
         * zeros then, rather than 127 / amax overflowing to inf for a tiny amax */
        float id = d[i] != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < KL_QK; j++) {
            int q = kl_nearest_int(x[j] * id);
            qs[j] = (int8_t)q;
            sum += q;
        }
        c[i] = -128 * sum;
    }
}

void kl_ref_quant_act_q8_k(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int16_t *bsums = (int16_t *)(d + n / KL_QKK);
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK, qs += KL_QKK, bsums += 16) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < KL_QKK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax == 0.0f) {
            d[i] = 0.0f;
            memset(qs, 0, KL_QKK);
            memset(bsums, 0, 16 * sizeof *bsums);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < KL_QKK; j++) {
            int v = kl_nearest_int(iscale * x[j]);
            qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += qs[16 * j + l];
            bsums[j] = (int16_t)sum;
        }
        d[i] = 1.0f / iscale;
    }
}

/* Permutes the qs of every block of a Q8_K row of n elements in place: byte p of a block takes
 * the byte src(p) held. */
static void permute_blocks(int8_t *qs, int64_t n, int (*src)(int))
{
    int8_t a[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, qs += KL_QKK) {
        memcpy(a, qs, KL_QKK);
        for (int p = 0; p < KL_QKK; p++)
            qs[p] = a[src(p)];
    }
}

void kl_ref_quant_act_q8_k_t4(const float *x, void *dst, int64_t n)
{
    kl_ref_quant_act_q8_k(x, dst, n);
    permute_blocks(dst, n, kl_act_t4_src);
    const int16_t *bs = kl_act_q8_k_bsums(dst, n);
    int32_t *c = (int32_t *)kl_act_q8_k_t4_c(dst, n);
    for (int64_t i = 0; i < n / 16; i++)
        c[i] = -64 * bs[i];
}

void kl_ref_quant_act_q8_k_t8(const float *x, void *dst, int64_t n)
{
    kl_ref_quant_act_q8_k(x, dst, n);
    permute_blocks(dst, n, kl_act_t8_src);
}

/* T8P: each pair of blocks permuted together, an odd last block as T8's. */
void kl_ref_quant_act_q8_k_t8p(const float *x, void *dst, int64_t n)
{
    int8_t a[2 * KL_QKK], *qs = dst;
    kl_ref_quant_act_q8_k(x, dst, n);
    for (int64_t i = 0; i + 1 < n / KL_QKK; i += 2, qs += 2 * KL_QKK) {
        memcpy(a, qs, sizeof a);
        for (int p = 0; p < 2 * KL_QKK; p++)
            qs[p] = a[kl_act_t8p_src(p)];
    }
    if (n / KL_QKK % 2) permute_blocks(qs, KL_QKK, kl_act_t8_src);
}
