/* kernels/x86/avx512_quant.c: the activation rows quantized for the int8 dots (Q8_0 layout,
 * see kernels/impl.h), a block of 32 in two registers. Bit-identical to the reference: the
 * block's max |x| is exact in any order, the scale is the same division, and rounding
 * x * (127 / amax) with the current mode (to nearest even) is what the reference's
 * magic-number rounding does for |v| <= 127. */
#include <immintrin.h>

#include "kernels/impl.h"

void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n);

void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *c = (int32_t *)(d + n / KL_QK);
    for (int64_t i = 0; i < n / KL_QK; i++, x += KL_QK, qs += KL_QK) {
        __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        d[i] = kl_fp16_to_fp32(kl_fp32_to_fp16(amax / 127.0f));
        float id = d[i] != 0.0f ? 127.0f / amax : 0.0f; /* as the reference */
        __m512 vid = _mm512_set1_ps(id);
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
        __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, vid));
        _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(qb));
        c[i] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    }
}
