/* kernels/x86/avx2_convert.c: F16C row conversions (round to nearest even, like the
 * reference), 8 elements at a time, the tail through the scalar converters. */
#include <immintrin.h>

#include "kernels/kernels.h"

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = kl_fp16_to_fp32(src[i]);
}

void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = kl_fp32_to_fp16(src[i]);
}
