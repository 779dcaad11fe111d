/* kernels/x86/avx2_convert.c: F16C row conversions (round to nearest even, like the
 * reference), 8 elements at a time; a tail of 1-7 goes through a zero-padded vector of 8,
 * the same instruction (attention rounds its weights to F16 in rows of any length: a B=16
 * decoding step converted ~30k tail elements one call each). */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/x86/avx2_lanes.h"

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n) _mm256_maskstore_ps(dst + i, kl_avx2_mask(n - i), kl_avx2_load_ph(src + i, n - i));
}

void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) { /* lanes past n read as 0 (masked load), only n - i halves written */
        uint16_t h[8];
        _mm_storeu_si128((__m128i *)h,
                         _mm256_cvtps_ph(_mm256_maskload_ps(src + i, kl_avx2_mask(n - i)),
                                         _MM_FROUND_TO_NEAREST_INT));
        memcpy(dst + i, h, sizeof(uint16_t) * (size_t)(n - i));
    }
}
