/* kernels/x86/avx512_kquant.c: AVX-512 VNNI matmuls for the K-quants (Q4_K, Q5_K, Q6_K) against
 * Q8_K activations, in tiles of RT weight rows x BT activation rows (same instruction
 * sequence for every pair whatever the tile: batch invariant).
 *
 * Q4_K: the 4-bit quants are unsigned, the activations signed: vpdpbusd takes them as they
 * are. A super-block is 4 registers of 64 quants (sub-blocks 2c and 2c+1 in lanes 0-7 and
 * 8-15); each lane's int32 dot is multiplied by its sub-block's 6-bit scale (exact), the
 * 16 lanes converted to float (|lane| < 2^24: exact) and accumulated with d * d_a; the mins
 * term (dmin * d_a * sum_j m_j * bsum_j) comes from the activations' 16-element sums.
 * Q6_K: quants q - 32 in [-32, 31] are fed unsigned as q (0..63); the bias is taken out
 * exactly with the activations' 16-element sums: sum sc_j (dot_j - 32 bsum_j). */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"

#define RT 4
#define BT 4

void kl_avx512_gemm_q4_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q5_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q6_k(const kl_gemm *g, int64_t r0, int64_t r1);

/* The weight side of one super-block: 4 registers of unsigned quants, 4 of int32 lane
 * scales, and the weights of the activation-sum term. */
typedef struct {
    __m512i q[4];
    __m512i sc[4];
    __m256i m16;     /* per 16-element group: Q4_K its sub-block's min; Q6_K -32 * its scale */
    float d, mscale; /* the integer dot's scale; the m16 term's (Q4_K -dmin, Q6_K d) */
} wblock;

/* The 8 6-bit scales and mins of a Q4_K/Q5_K block (kl_k4_scale_min's unpacking, 4 bytes
 * at a time): sc[c] lanes 0-7 sub-block 2c's scale, 8-15 sub-block 2c+1's; m16 as wblock. */
static inline void k4_scales(const uint8_t *q, wblock *o)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4), memcpy(&u1, q + 4, 4), memcpy(&u2, q + 8, 4);
    uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    __m128i sc = _mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo);
    __m128i m = _mm_set_epi32(0, 0, (int)m_hi, (int)m_lo);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
    {
        __m128i ctl =
            _mm_set_epi64x(0x0101010101010101ll * (2 * c + 1), 0x0101010101010101ll * (2 * c));
        o->sc[c] = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(sc, ctl));
    }
    o->m16 = _mm256_cvtepu8_epi16(
        _mm_shuffle_epi8(m, _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0)));
}

static inline void load_q4_k(const kl_block_q4_k *w, wblock *o)
{
    __m512i mask = _mm512_set1_epi8(0x0F);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
    {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * c));
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        o->q[c] = _mm512_and_si512(z, mask);
    }
    k4_scales(w->scales, o);
    o->d = _cvtsh_ss(w->d);
    o->mscale = -_cvtsh_ss(w->dmin);
}

/* Q5_K: Q4_K's nibbles plus a fifth bit, bit 2c (low half) or 2c+1 (high half) of qh[l]. */
static inline void load_q5_k(const kl_block_q5_k *w, wblock *o)
{
    __m512i mask = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    __m256i qh = _mm256_loadu_si256((const __m256i *)w->qh);
    __m512i h2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
    {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * c));
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        __m512i hb = _mm512_and_si512(_mm512_srli_epi16(h2, (unsigned)(2 * c)), one);
        o->q[c] = _mm512_or_si512(_mm512_and_si512(z, mask), _mm512_slli_epi16(hb, 4));
    }
    k4_scales(w->scales, o);
    o->d = _cvtsh_ss(w->d);
    o->mscale = -_cvtsh_ss(w->dmin);
}

static inline void load_q6_k(const kl_block_q6_k *w, wblock *o)
{
    __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(w->ql + 64 * h);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
        __m512i hA = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        __m512i hB = _mm512_srli_epi16(hA, 4);
        hA = _mm512_slli_epi16(_mm512_and_si512(hA, m2), 4);
        hB = _mm512_slli_epi16(_mm512_and_si512(hB, m2), 4);
        o->q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), hA);
        o->q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hB);
    }
    /* register c holds elements 64c..64c+63: scales 4c..4c+3, 4 lanes each */
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
    {
        const int8_t *s = w->scales + 4 * c;
        o->sc[c] = _mm512_set_epi32(s[3], s[3], s[3], s[3], s[2], s[2], s[2], s[2], s[1], s[1],
                                    s[1], s[1], s[0], s[0], s[0], s[0]);
    }
    o->m16 = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales)),
                                _mm256_set1_epi16(-32));
    o->d = _cvtsh_ss(w->d);
    o->mscale = o->d;
}

/* The m16 term, mscale * d_a * sum_t m16[t] bsums[t] (Q4_K: -dmin * d_a * sum_j m_j *
 * (bsums[2j] + bsums[2j+1]); Q6_K: d * d_a * sum_j -32 sc_j bsums[j]), by vpmaddwd into 8
 * int32 lanes (|lane| < 2^24: exact in float), accumulated in lanes 0-7 of the same
 * accumulator. */
#define KQ_TILE(NAME, BLOCK, LOAD)                                                                 \
    static inline __attribute__((always_inline)) void NAME(const kl_gemm *g, int64_t r, int nr,    \
                                                           int b, int nb)                          \
    {                                                                                              \
        int64_t n = g->cols, nblk = n / KL_QKK;                                                    \
        __m512 acc[RT][BT];                                                                        \
        const BLOCK *w[RT];                                                                        \
        const int8_t *aq[BT];                                                                      \
        const float *ad[BT];                                                                       \
        const int16_t *bs[BT];                                                                     \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
        {                                                                                          \
            w[i] = (const BLOCK *)(g->W + (size_t)(r + i) * g->w_stride);                          \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] = _mm512_setzero_ps();  \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                       \
        {                                                                                          \
            const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;                             \
            aq[k] = (const int8_t *)a;                                                             \
            ad[k] = kl_act_q8_k_d(a, n);                                                           \
            bs[k] = kl_act_q8_k_bsums(a, n);                                                       \
        }                                                                                          \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            __m512i av[BT][4];                                                                     \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) av[k][c] =                     \
                    _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * c);                               \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                wblock wb;                                                                         \
                LOAD(&w[i][j], &wb);                                                               \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m512i isum = _mm512_setzero_si512();                                         \
                    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)                            \
                    {                                                                              \
                        __m512i d =                                                                \
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), wb.q[c], av[k][c]);        \
                        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(d, wb.sc[c]));            \
                    }                                                                              \
                    __m256i bj = _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j));            \
                    __m512i ms = _mm512_zextsi256_si512(_mm256_madd_epi16(bj, wb.m16));            \
                    float da = ad[k][j];                                                           \
                    acc[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),                          \
                                                _mm512_set1_ps(wb.d * da), acc[i][k]);             \
                    acc[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms),                            \
                                                _mm512_set1_ps(wb.mscale * da), acc[i][k]);        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                g->y[(int64_t)(b + k) * g->ldy + r + i] = _mm512_reduce_add_ps(acc[i][k]);         \
    }

KQ_TILE(tile_q4_k, kl_block_q4_k, load_q4_k)
KQ_TILE(tile_q5_k, kl_block_q5_k, load_q5_k)
KQ_TILE(tile_q6_k, kl_block_q6_k, load_q6_k)

#define CHUNK 32
#define GEMM(NAME, TILE)                                                                           \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t rc = r0; rc < r1; rc += CHUNK)                                                \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                int64_t re = rc + CHUNK < r1 ? rc + CHUNK : r1;                                    \
                for (int64_t r = rc; r < re; r += RT) {                                            \
                    int nr = re - r < RT ? (int)(re - r) : RT;                                     \
                    if (nr == 4 && nb == 4)                                                        \
                        TILE(g, r, 4, b, 4);                                                       \
                    else if (nr == 4 && nb == 1)                                                   \
                        TILE(g, r, 4, b, 1);                                                       \
                    else                                                                           \
                        TILE(g, r, nr, b, nb);                                                     \
                }                                                                                  \
            }                                                                                      \
    }

GEMM(kl_avx512_gemm_q4_k, tile_q4_k)
GEMM(kl_avx512_gemm_q5_k, tile_q5_k)
GEMM(kl_avx512_gemm_q6_k, tile_q6_k)
