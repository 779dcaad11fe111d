/* kernels/x86/avx2_reduce.h: the horizontal reductions of one 256-bit register that the AVX2
 * kernels share. One fixed order each (halves, then pairs, then the last two), so that a
 * row's result does not depend on which kernel file reduced it. */
#ifndef KILN_KERNELS_X86_AVX2_REDUCE_H
#define KILN_KERNELS_X86_AVX2_REDUCE_H

#include <immintrin.h>
#include <stdint.h>

static inline float kl_avx2_hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float kl_avx2_hmax_ps(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline int32_t kl_avx2_hsum_epi32(__m256i v)
{
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1));
    return _mm_cvtsi128_si32(h);
}

#endif
