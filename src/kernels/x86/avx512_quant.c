/* kernels/x86/avx512_quant.c: the activation rows quantized for the int8 dots (Q8_0 layout,
 * see kernels/impl.h), a block of 32 in two registers. Bit-identical to the reference: the
 * block's max |x| is exact in any order, the scale is the same division, and rounding
 * x * (127 / amax) with the current mode (to nearest even) is what the reference's
 * magic-number rounding does for |v| <= 127. */
#include <immintrin.h>

#include "kernels/impl.h"

void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n);

/* One block of 32: its quants from the inverse scale id, and -128 * their sum. */
static inline void quant_block(const float *x, float id, int8_t *qs, int32_t *c)
{
    __m512 vid = _mm512_set1_ps(id);
    __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), vid));
    __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(qb));
    *c = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
}

static inline float block_amax(const float *x)
{
    __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x)), b = _mm512_abs_ps(_mm512_loadu_ps(x + 16));
    return _mm512_reduce_max_ps(_mm512_max_ps(a, b));
}

/* Blocks 16 at a time: their maxima in one vector, then the scales' division, the fp16
 * rounding (vcvtps2ph to nearest even: kl_fp32_to_fp16's rounding, subnormals, overflow to
 * infinity and NaNs included) and the inverse scales as one vector each, where one block at a
 * time took two scalar divisions and two conversion calls (a sixth of the quantization of a
 * B=16 decoding step's activations). Same values, so the same bits, as the reference. */
void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *c = (int32_t *)(d + n / KL_QK);
    int64_t nb = n / KL_QK, i = 0;
    for (; i + 16 <= nb; i += 16) {
        float am[16], id[16];
        for (int k = 0; k < 16; k++)
            am[k] = block_amax(x + (i + k) * KL_QK);
        __m512 vam = _mm512_loadu_ps(am);
        __m512 vd = _mm512_cvtph_ps(
            _mm512_cvtps_ph(_mm512_div_ps(vam, _mm512_set1_ps(127.0f)), _MM_FROUND_TO_NEAREST_INT));
        __mmask16 nz = _mm512_cmp_ps_mask(vd, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_storeu_ps(d + i, vd);
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(127.0f), vam));
        for (int k = 0; k < 16; k++)
            quant_block(x + (i + k) * KL_QK, id[k], qs + (i + k) * KL_QK, &c[i + k]);
    }
    for (; i < nb; i++) {
        float amax = block_amax(x + i * KL_QK);
        d[i] = kl_fp16_to_fp32(kl_fp32_to_fp16(amax / 127.0f));
        float id = d[i] != 0.0f ? 127.0f / amax : 0.0f; /* as the reference */
        quant_block(x + i * KL_QK, id, qs + i * KL_QK, &c[i]);
    }
}
