/* kernels/x86/avx2_convert.c: F16C row conversions (round to nearest even, like the
 * reference), 8 elements at a time; a tail of 1-7 goes through a zero-padded vector of 8,
 * the same instruction (attention rounds its weights to F16 in rows of any length: a B=16
 * decoding step converted ~30k tail elements one call each). */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n) {
        uint16_t h[8] = {0};
        float f[8];
        memcpy(h, src + i, sizeof(uint16_t) * (size_t)(n - i));
        _mm256_storeu_ps(f, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
        memcpy(dst + i, f, sizeof(float) * (size_t)(n - i));
    }
}

void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float f[8] = {0};
        uint16_t h[8];
        memcpy(f, src + i, sizeof(float) * (size_t)(n - i));
        _mm_storeu_si128((__m128i *)h,
                         _mm256_cvtps_ph(_mm256_loadu_ps(f), _MM_FROUND_TO_NEAREST_INT));
        memcpy(dst + i, h, sizeof(uint16_t) * (size_t)(n - i));
    }
}
