/* kernels/x86/avx2_lanes.h: partial 8-lane vectors for the AVX2 kernels' tails: the mask of the
 * first lanes, and F16 values loaded and converted with the lanes past the end read as 0 (F16C
 * has no masked load; a zero-padded copy of at most 7 halves). */
#ifndef KILN_KERNELS_X86_AVX2_LANES_H
#define KILN_KERNELS_X86_AVX2_LANES_H

#include <immintrin.h>
#include <stdint.h>

/* The mask of the first `left` of 8 lanes: all when left >= 8, none when left <= 0. */
static inline __m256i kl_avx2_mask(int left)
{
    int r = left > 8 ? 8 : left < 0 ? 0 : left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 halves from p as floats; only the first `left` (all when left >= 8) are read, the rest 0. */
static inline __m256 kl_avx2_load_ph(const uint16_t *p, int left)
{
    if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    uint16_t b[8] = {0};
    for (int i = 0; i < left; i++)
        b[i] = p[i];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b));
}

#endif
