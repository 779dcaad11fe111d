/* kernels/x86/avx2_tq.h: the 256-bit TQ1_0 / TQ2_0 matmul against Q8_K activations, shared by
 * x86/avx2_tq.c (vpmaddubsw, int16 sums) and x86/avx512_tq.c (AVX-512 VNNI's vpdpbusd on 256-bit
 * registers, int32 sums); kernels/ref_tq.c has the layouts. Both types decode to q + 1 in 0..2
 * (TQ2_0's 2-bit fields as they stand, 0..3), unsigned with a bias of 1 that the tile takes out
 * through the activations' 16-element sums. 256 bits, also in the AVX-512 table: on Zen 4 the
 * 512-bit forms (double-pumped, masked) were slower at B = 1 and in prompts. Included by those
 * files only, each defining its DOT_acc and DOT_i32 (see TQ_TILE) first. */
#ifndef KILN_KERNELS_X86_AVX2_TQ_H
#define KILN_KERNELS_X86_AVX2_TQ_H
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_reduce.h"
#include "kernels/x86/tile4_gemm.h"

#define TQ_CHUNK 16 /* weight rows kept in cache while the activation tiles pass over them */

/* TQ1_0 in byte arithmetic mod 256: a trit's position n is reached by multiplying the byte by
 * 3 n times (two byte adds each), and the top base-3 digit of a byte y, (3 y) >> 8, is
 * [y >= 86] + [y >= 171] (3 y >= 256 from y = 86 on, 3 y >= 512 from y = 171 on). */
static inline __m256i times3(__m256i v)
{
    return _mm256_add_epi8(v, _mm256_add_epi8(v, v));
}
static inline __m128i times3_128(__m128i v)
{
    return _mm_add_epi8(v, _mm_add_epi8(v, v));
}
/* PFX_chunks(w, q) writes the block's 8 chunks of 32 weights, each q + 1 in 0..2 as bytes (3 in
 * a TQ2_0 field read as it stands). */
static inline __attribute__((always_inline)) void tq2_0_chunks(const kl_block_tq2_0 *w,
                                                               __m256i q[8])
{
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
    {
        __m256i x = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
        _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++) q[4 * h + l] =
            _mm256_and_si256(_mm256_srli_epi16(x, 2 * l), _mm256_set1_epi8(3));
    }
}

/* The top trit of y given v = y - 128 as a signed byte: y >= 86 and y >= 171 are v > -43 and
 * v > 42, two compares whose -1s add up to minus the trit. Times 3
 * keeps the offset (3 * 128 = 128 mod 256), so one xor at the load serves every position. */
static inline __m256i top_trit_s(__m256i v)
{
    __m256i lo = _mm256_set1_epi8(-43), hi = _mm256_set1_epi8(42);
    __asm__("" : "+x"(lo), "+x"(hi)); /* else GCC makes v > -43 a vpminsb and a vpcmpeqb */
    __m256i m = _mm256_add_epi8(_mm256_cmpgt_epi8(v, lo), _mm256_cmpgt_epi8(v, hi));
    return _mm256_abs_epi8(m);
}
/* Chunk c's bytes times 3^n: c 0-4: qs[0..31] times 3^c; 5, 6: qs[32..47] times 1 | 3 and
 * 9 | 27; 7: qs[32..47] times 81 | qh[0..3] four times, times 1, 3, 9, 27 (4 bytes each). */
static inline __attribute__((always_inline)) void tq1_0_chunks(const kl_block_tq1_0 *w,
                                                               __m256i q[8])
{
    const __m256i off = _mm256_set1_epi8((char)0x80);
    __m256i y = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w->qs), off);
    _Pragma("GCC unroll 5") for (int c = 0; c < 5; c++, y = times3(y)) q[c] = top_trit_s(y);
    __m256i z = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->qs + 32))), off);
    __m256i z3 = times3(z), z9 = times3(z3), z27 = times3(z9);
    q[5] = top_trit_s(_mm256_blend_epi32(z, z3, 0xF0));
    q[6] = top_trit_s(_mm256_blend_epi32(z9, z27, 0xF0));
    uint32_t qh;
    memcpy(&qh, w->qh, 4);
    __m128i h = _mm_xor_si128(_mm_set1_epi32((int)qh), _mm256_castsi256_si128(off));
    __m128i h3 = times3_128(h), h9 = times3_128(h3);
    __m128i hv = _mm_blend_epi32(_mm_blend_epi32(h, h3, 0x2), h9, 0x4);
    hv = _mm_blend_epi32(hv, times3_128(h9), 0x8);
    q[7] = top_trit_s(_mm256_set_m128i(hv, _mm256_castsi256_si128(times3(z27))));
}

/* The tile, one weight row by up to TQ_BT activation rows: each chunk of 32 weights is decoded
 * once for the tile (TQ2_0: a 32-byte load gives four, its 2-bit fields). A block's sums s start at
 * DOT_init(bsum), DOT_acc(s, q, a) adds the chunk's products with an activation row's 32 bytes
 * into them, and DOT_i32(s, bsum) turns them, less the block's activation sums (the bias, taken
 * off at the start or there), into int32 lanes:
 * the lanes then go to float once per block, times d * d_a. Tiles of up to SPLIT rows add the odd
 * chunks into a second sum t, and DOT_join(s, t) adds the two: two chains where an accumulate's
 * latency would bound a short tile, the same integers (so the same bits either way). Every (weight
 * row, activation row) pair runs the same instructions whatever the tile's height: batch invariant.
 */
#define TQ_BT 4

#define TQ_TILE(PFX, BLOCK, DOT, SPLIT)                                                            \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        int64_t n = g->cols, nblk = n / KL_QKK;                                                    \
        const BLOCK *w = (const BLOCK *)(g->W + (size_t)r * g->w_stride);                          \
        const uint8_t *a0 = g->act + (size_t)b * g->a_stride;                                      \
        size_t as = g->a_stride;                                                                   \
        __m256 acc[TQ_BT];                                                                         \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[k] = _mm256_setzero_ps();         \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            __m256i s[TQ_BT], t[TQ_BT];                                                            \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                t[k] = _mm256_setzero_si256();                                                     \
                s[k] = DOT##_init(_mm256_loadu_si256(                                              \
                    (const __m256i *)(kl_act_q8_k_bsums(a0 + (size_t)k * as, n) + 16 * j)));       \
            }                                                                                      \
            const int8_t *aj = (const int8_t *)a0 + j * KL_QKK;                                    \
            __m256i q[8];                                                                          \
            PFX##_chunks(&w[j], q);                                                                \
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)                                    \
            {                                                                                      \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m256i a =                                                                    \
                        _mm256_loadu_si256((const __m256i *)(aj + (size_t)k * as + 32 * c));       \
                    if (nb <= (SPLIT) && (c & 1))                                                  \
                        t[k] = DOT##_acc(t[k], q[c], a);                                           \
                    else                                                                           \
                        s[k] = DOT##_acc(s[k], q[c], a);                                           \
                }                                                                                  \
            }                                                                                      \
            __m256 d = _mm256_set1_ps(_cvtsh_ss(w[j].d));                                          \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                const uint8_t *ak = a0 + (size_t)k * as;                                           \
                __m256i bsum =                                                                     \
                    _mm256_loadu_si256((const __m256i *)(kl_act_q8_k_bsums(ak, n) + 16 * j));      \
                __m256i i32 = DOT##_i32(nb <= (SPLIT) ? DOT##_join(s[k], t[k]) : s[k], bsum);      \
                __m256 dd = _mm256_mul_ps(d, _mm256_set1_ps(kl_act_q8_k_d(ak, n)[j]));             \
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), dd, acc[k]);                     \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] = \
            kl_avx2_hsum_ps(acc[k]);                                                               \
    }

#define TQ_GEMM(NAME, PFX) TILE4_GEMM(NAME, PFX, TQ_CHUNK) /* TQ_BT is 4 */

/* TQ2_0's gemm: one activation row takes the including table's own row kernel, tq2_0r_tile
 * (it streams the weights at one row; the shared tile is built for 2-4 rows). */
#define TQ2_0_GEMM(NAME)                                                                           \
    static inline __attribute__((always_inline)) void tq2_0m_tile(const kl_gemm *g, int64_t r,     \
                                                                  int b, int nb)                   \
    {                                                                                              \
        if (nb == 1)                                                                               \
            tq2_0r_tile(g, r, b);                                                                  \
        else                                                                                       \
            tq2_0_tile(g, r, b, nb);                                                               \
    }                                                                                              \
    TQ_GEMM(NAME, tq2_0m)
#endif
