/* kernels/x86/avx2_legacy.c: AVX2 matmuls for Q4_1, Q5_0 and Q5_1 on the file's own blocks,
 * in tiles of RT weight rows x BT activation rows (batch invariant, as avx2_gemm.c).
 *
 * One 32-element block per 256-bit register. Q4_1 / Q5_1: unsigned quants times the signed
 * Q8_1 activations by vpmaddubsw (pairs <= 2 * 31 * 127), vpmaddwd by ones: 8 int32 sums
 * scaled by d_w * d_a, plus m_w * s_a for the min (s_a the activation block's fp16-rounded
 * d * sum, llama.cpp's block_q8_1.s). Q5_0: signed q - 16 against Q8_0 activations, the sign
 * moved onto the activation (vpsignb) as Q4_0's. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_reduce.h"

#define RT 4
#define BT 2

enum { Q41, Q50, Q51 };

/* 32 bits of qh as 32 bytes, 0x10 where the bit is set. */
static inline __m256i high_bits(const uint8_t qh4[4])
{
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    __m256i v = _mm256_set1_epi32((int)qh);
    /* byte i takes byte i / 8 of qh, then tests bit i % 8 */
    v = _mm256_shuffle_epi8(
        v, _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll, 0x0101010101010101ll, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The block's 32 quants in element order: unsigned (Q4_1 0..15, Q5_1 0..31) or Q5_0's
 * signed q - 16. */
static inline __attribute__((always_inline)) __m256i block_quants(int K, const uint8_t *blk)
{
    const uint8_t *qs = K == Q41   ? ((const kl_block_q4_1 *)blk)->qs
                        : K == Q50 ? ((const kl_block_q5_0 *)blk)->qs
                                   : ((const kl_block_q5_1 *)blk)->qs;
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0F);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
    if (K == Q50) v = _mm256_or_si256(v, high_bits(((const kl_block_q5_0 *)blk)->qh));
    if (K == Q51) v = _mm256_or_si256(v, high_bits(((const kl_block_q5_1 *)blk)->qh));
    if (K == Q50) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
    return v;
}

static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int nr, int b,
                                                       int nb, int K)
{
    int64_t n = g->cols, nblk = n / KL_QK;
    const size_t bb = K == Q41   ? sizeof(kl_block_q4_1)
                      : K == Q50 ? sizeof(kl_block_q5_0)
                                 : sizeof(kl_block_q5_1);
    __m256 acc[RT][BT];
    float macc[RT][BT]; /* the min terms, summed in block order */
    const uint8_t *w[RT];
    const int8_t *aq[BT];
    const float *ad[BT], *as[BT];
    _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
    {
        w[i] = g->W + (size_t)(r + i) * g->w_stride;
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) acc[i][k] = _mm256_setzero_ps(),
                                                             macc[i][k] = 0.0f;
    }
    _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_0_d(a, n);
        as[k] = K == Q50 ? NULL : kl_act_q8_1_s(a, n);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t j = 0; j < nblk; j++) {
        __m256i av[BT];
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) av[k] =
            _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QK));
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
        {
            const uint8_t *blk = w[i] + (size_t)j * bb;
            _mm_prefetch((const char *)blk + RT * g->w_stride, _MM_HINT_T0); /* avx2_gemm.c */
            __m256i u = block_quants(K, blk);
            uint16_t dh, mh = 0;
            memcpy(&dh, blk, 2);
            if (K != Q50) memcpy(&mh, blk + 2, 2);
            float dw = _cvtsh_ss(dh), mw = _cvtsh_ss(mh);
            __m256i uw = K == Q50 ? _mm256_sign_epi8(u, u) : u;
            _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
            {
                __m256i a = K == Q50 ? _mm256_sign_epi8(av[k], u) : av[k];
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(uw, a), ones);
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ad[k][j]),
                                            acc[i][k]);
                if (K != Q50) macc[i][k] += mw * as[k][j];
            }
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
            g->y[(int64_t)(b + k) * g->ldy + r + i] = kl_avx2_hsum_ps(acc[i][k]) + macc[i][k];
}

#define CHUNK 32
#define GEMM(NAME, K)                                                                              \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1);                                           \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t rc = r0; rc < r1; rc += CHUNK)                                                \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                int64_t re = rc + CHUNK < r1 ? rc + CHUNK : r1;                                    \
                for (int64_t r = rc; r < re; r += RT) {                                            \
                    int nr = re - r < RT ? (int)(re - r) : RT;                                     \
                    if (nr == RT && nb == 2)                                                       \
                        tile(g, r, RT, b, 2, K);                                                   \
                    else if (nr == RT)                                                             \
                        tile(g, r, RT, b, 1, K);                                                   \
                    else                                                                           \
                        tile(g, r, nr, b, nb, K);                                                  \
                }                                                                                  \
            }                                                                                      \
    }

GEMM(kl_avx2_gemm_q4_1, Q41)
GEMM(kl_avx2_gemm_q5_0, Q50)
GEMM(kl_avx2_gemm_q5_1, Q51)

void kl_avx2_types_legacy(kl_isa *isa)
{
    isa->types[KL_Q4_1].gemm = kl_avx2_gemm_q4_1;
    isa->types[KL_Q5_0].gemm = kl_avx2_gemm_q5_0;
    isa->types[KL_Q5_1].gemm = kl_avx2_gemm_q5_1;
}
