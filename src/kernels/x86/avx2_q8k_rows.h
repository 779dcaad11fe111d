/* kernels/x86/avx2_q8k_rows.h: the activation-row side of the 256-bit tiles over Q8_K
 * activations (the IQ tile of x86/avx2_iq.h, IQ1_S's, AVX-512 TQ1_0's trit-free one): a tile's
 * rows set up, a block's int32 sums scaled into them, their results stored. */
#ifndef KILN_KERNELS_X86_AVX2_Q8K_ROWS_H
#define KILN_KERNELS_X86_AVX2_Q8K_ROWS_H
#include <immintrin.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_reduce.h"

/* A tile's activation rows b..b + nb - 1: their quants, scales d and (bs not NULL) bsums,
 * and zeroed float accumulators. */
static inline __attribute__((always_inline)) void q8k_rows(const kl_gemm *g, int b, int nb,
                                                           const int8_t **aq, const float **ad,
                                                           const int16_t **bs, __m256 *acc)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_k_d(a, g->cols), acc[k] = _mm256_setzero_ps();
        if (bs) bs[k] = kl_act_q8_k_bsums(a, g->cols);
    }
}

/* A block's int32 sums is, times d and the rows' scales of block j, into acc. */
static inline __attribute__((always_inline)) void
q8k_block_end(int nb, __m256 *acc, const __m256i *is, float d, const float *const *ad, int64_t j)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) acc[k] =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[k]), _mm256_set1_ps(d * ad[k][j]), acc[k]);
}

/* The tile's results: weight row r for activation rows b..b + nb - 1. */
static inline __attribute__((always_inline)) void q8k_store(const kl_gemm *g, int64_t r, int b,
                                                            int nb, const __m256 *acc)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] =
        kl_avx2_hsum_ps(acc[k]);
}
#endif
