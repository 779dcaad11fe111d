/* kernels/x86/avx512_iq.h: the AVX-512 matmul tile shared by the 256-element IQ types
 * (x86/avx512_iq*.c, avx512vbmi_iq*.c) against Q8_K activations. A type supplies a decoder;
 * this file supplies the integer dot, the tile and the row walk. Included by those files only.
 * (The plane dot, IQ_PLANE_TILE below, takes the same tile over activations in a plane layout.)
 *
 * A type's decoder, for a block w, has two steps:
 *   PFX_begin(w, &st)       per block: st.s16, the integer scale of each 16 elements (int16),
 *                           and st.d, the float factor of the block's integer sum;
 *   PFX_chunk(w, &st, c)    the weights of elements 64c..64c+63, in order, as bytes: w + BIAS
 *                           (unsigned, at most 128) or, with BIAS 0, w itself (|w| <= 127).
 * (IQ_TILE_MS takes instead PFX_chunk_ms(w, &st, c, &neg): the magnitudes |w| and the mask of
 * the negative ones, for decoders that have the signs as a mask already; IQ_TILE makes that
 * function from PFX_chunk.)
 * The dot of a chunk with an activation row's 64 bytes: vpmaddubsw (unsigned x signed byte
 * pairs; at most 2 * 128 * 127 < 2^15, so no saturation) then vpdpwssd adds each pair sum times
 * its 16 elements' scale into int32 lanes. A signed chunk moves its signs onto the activations
 * first. The bias comes out exactly through the activations' 16-element sums: the block's
 * accumulator starts at sum_t bsums[t] * (-BIAS * s16[t]). One int32 accumulator per
 * activation row per block (|lane| < 2^24 for every type: converted to float exactly), then
 * one multiply-add by d * d_a per block and a horizontal sum at the end: the integer sums match
 * llama.cpp's, the float work is per block as in its SIMD dots.
 *
 * Tiles are one weight row by up to IQ_BT activation rows: the decode (table lookups, sign and
 * scale unpacking) is done once per block for all of them. Batch invariance: every (weight row,
 * activation row) pair runs the same instruction sequence whatever the tile. */
#ifndef KILN_KERNELS_X86_AVX512_IQ_H
#define KILN_KERNELS_X86_AVX512_IQ_H
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"

/* Bytes ahead of the block being decoded that the tile prefetches: generation streams the
 * weights once, and at one activation row the hardware prefetcher alone left one thread at
 * ~8.5 GB/s (2048 bytes: IQ3_XXS and IQ3_S 1.15-1.2x streamed; 512 was 0.85x, 1024 1.10x).
 * Once the VBMI packed tiles (IQ2_XS, IQ2_S, IQ3) decoded faster, 2048 was too short for
 * them, as KL_PF_AHEAD found for the packed K-quants: 8192 on a Zen 5, one thread, B=1,
 * 8192x2048 streamed, alternated: IQ2_XS 21.4-21.8 -> 24.9-26.2 GB/s, IQ2_S 23.7 -> 27.0-29.1,
 * IQ3_XXS 27.4-27.5 -> 32.3-33.3, IQ3_S 26.4-26.6 -> 27.6-29.6; the file-block tiles (IQ2_XXS,
 * IQ1_S, IQ1_M) even. */
#define IQ_PF    8192
#define IQ_BT    8  /* activation rows per tile */
#define IQ_CHUNK 16 /* weight rows kept in cache while the activation tiles pass over them */

/* A decoder's per-block state, what PFX_begin fills (every type's PFX_st is this one, except
 * the VBMI decoders', which carry their tables too). */
typedef struct iq_block_st {
    __m256i s16; /* (16) int16: the integer scale of each 16 elements */
    float d;     /* the float factor of the block's integer sum */
} iq_block_st;

/* A tile's activation rows b..b + nb - 1: their quants, scales d and (bs not NULL) bsums,
 * and zeroed float accumulators (the plane tiles' too: their rows hold the same d). */
static inline __attribute__((always_inline)) void iq_rows(const kl_gemm *g, int b, int nb,
                                                          const int8_t **aq, const float **ad,
                                                          const int16_t **bs, __m512 *acc)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_k_d(a, g->cols), acc[k] = _mm512_setzero_ps();
        if (bs) bs[k] = kl_act_q8_k_bsums(a, g->cols);
    }
}

/* The tile's results: weight row r for activation rows b..b + nb - 1. */
static inline __attribute__((always_inline)) void iq_store(const kl_gemm *g, int64_t r, int b,
                                                           int nb, const __m512 *acc)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] =
        _mm512_reduce_add_ps(acc[k]);
}

/* Slot s (elements 2s, 2s+1) of chunk c takes the scale of its 16 elements, 4c + s / 8. */
static inline __m512i iq_chunk_scales(__m256i s16, int c)
{
    const __m512i idx = _mm512_add_epi16(
        _mm512_set_epi64(0x0003000300030003ll, 0x0003000300030003ll, 0x0002000200020002ll,
                         0x0002000200020002ll, 0x0001000100010001ll, 0x0001000100010001ll, 0, 0),
        _mm512_set1_epi16((short)(4 * c)));
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(s16));
}

/* A block's int32 sums is, times d and the rows' scales of block j, into acc. */
static inline __attribute__((always_inline)) void
iq_block_end(int nb, __m512 *acc, const __m512i *is, float d, const float *const *ad, int64_t j)
{
    _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) acc[k] =
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[k]), _mm512_set1_ps(d * ad[k][j]), acc[k]);
}

/* The tile for one type: rows r x activation rows [b, b + nb), nb <= IQ_BT. */
#define IQ_TILE(PFX, BLOCK, BIAS)                                                                  \
    static inline __m512i PFX##_chunk_ms(const BLOCK *w, const PFX##_st *st, int c,                \
                                         __mmask64 *neg)                                           \
    {                                                                                              \
        __m512i q = PFX##_chunk(w, st, c);                                                         \
        if (BIAS) return *neg = 0, q;                                                              \
        *neg = _mm512_movepi8_mask(q);                                                             \
        return _mm512_abs_epi8(q);                                                                 \
    }                                                                                              \
    IQ_TILE_MS(PFX, BLOCK, BIAS)

/* The tile over PFX_chunk_ms (magnitudes and a sign mask; BIAS 0 or the mask is 0). */
#define IQ_TILE_MS(PFX, BLOCK, BIAS)                                                               \
    static inline __m512i PFX##_chunk_sc(const BLOCK *w, const PFX##_st *st, int c)                \
    {                                                                                              \
        (void)w;                                                                                   \
        return iq_chunk_scales(st->s16, c);                                                        \
    }                                                                                              \
    IQ_TILE_SC(PFX, BLOCK, BIAS)

/* The tile over PFX_chunk_ms and PFX_chunk_sc(w, &st, c), the scale of each int16 pair sum of
 * chunk c (what iq_chunk_scales makes from st.s16; a decoder may have a cheaper way). */
#define IQ_TILE_SC(PFX, BLOCK, BIAS) IQ_TILE_DOT(PFX, BLOCK, BIAS, IQ_CHUNK_ACC, IQ_CHUNK_FIN)
#define IQ_CHUNK_ACC(is, q, a, sc)   _mm512_dpwssd_epi32(is, _mm512_maddubs_epi16(q, a), sc)
#define IQ_CHUNK_FIN(is, st)         (is)

/* The plane dot's tile, over activations in a plane layout (kernels/impl.h: KL_ACT_Q8_K_T4,
 * T8), whose 64 bytes at 64p are what the weights' plane p multiplies: PFX_chunk_ms(w, &st, p,
 * &neg) gives plane p's magnitudes (<= 127) and the mask of the negative ones, st.sc the
 * integer scale of each int32 lane; PFX_chunk_sc is not used (st.s16 is 0). A plane is one
 * vpdpbusd a row (unsigned magnitudes times signed bytes, 4 products a lane): the layouts put
 * the 4 bytes of a lane in one 32-element sub-block in every plane, so the planes' sums share
 * the lanes' scales and take one vpmulld by st.sc a block (|lane| < 2^24: exact, and exactly
 * converted to float). (x86/avx512vbmi_iq.c's IQ2_XXS tile is this dot over pairs of blocks.) */
#define IQ_PLANE_TILE(PFX, BLOCK)  IQ_TILE_DOT(PFX, BLOCK, 0, IQ_PLANE_ACC, IQ_PLANE_FIN)
#define IQ_PLANE_ACC(is, q, a, sc) ((void)(sc), _mm512_dpbusd_epi32(is, q, a))
#define IQ_PLANE_FIN(is, st)       _mm512_mullo_epi32(is, (st).sc)

/* A tile's locals (inside PFX_tile(g, r, b, nb)): the row's nblk blocks w and the activation
 * rows' quants aq, scales ad, bsums bs and float accumulators acc. */
#define IQ_TILE_ROWS(BLOCK)                                                                        \
    int64_t nblk = g->cols / KL_QKK;                                                               \
    const BLOCK *w = (const BLOCK *)(g->W + (size_t)r * g->w_stride);                              \
    const int8_t *aq[IQ_BT];                                                                       \
    const float *ad[IQ_BT];                                                                        \
    const int16_t *bs[IQ_BT];                                                                      \
    __m512 acc[IQ_BT];                                                                             \
    iq_rows(g, b, nb, aq, ad, bs, acc)

/* The tile: per block and row, the 4 chunks' (or planes') ACC(is, q, a, sc) into an int32
 * accumulator, then FIN(is, st), the block's float step and, at the end, the row's sum. */
#define IQ_TILE_DOT(PFX, BLOCK, BIAS, ACC, FIN)                                                    \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        IQ_TILE_ROWS(BLOCK);                                                                       \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            PFX##_st st;                                                                           \
            _mm_prefetch((const char *)&w[j] + IQ_PF, _MM_HINT_T0);                                \
            PFX##_begin(&w[j], &st);                                                               \
            __m512i is[IQ_BT];                                                                     \
            __m256i m16 = _mm256_mullo_epi16(st.s16, _mm256_set1_epi16(-(BIAS)));                  \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                           \
                (BIAS) ? _mm512_zextsi256_si512(_mm256_madd_epi16(                                 \
                             _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), m16))          \
                       : _mm512_setzero_si512();                                                   \
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)                                    \
            {                                                                                      \
                __mmask64 neg;                                                                     \
                __m512i q = PFX##_chunk_ms(&w[j], &st, c, &neg),                                   \
                        sc = PFX##_chunk_sc(&w[j], &st, c);                                        \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m512i a = _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * c);                   \
                    if (!(BIAS)) a = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);      \
                    is[k] = ACC(is[k], q, a, sc);                                                  \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = FIN(is[k], st);           \
            iq_block_end(nb, acc, is, st.d, ad, j);                                                \
        }                                                                                          \
        iq_store(g, r, b, nb, acc);                                                                \
    }

/* Rows [r0, r1) x all activation rows; one constant-height tile per case. */
#define IQ_GEMM(NAME, PFX)                                                                         \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t rc = r0; rc < r1; rc += IQ_CHUNK)                                             \
            for (int b = 0; b < g->B; b += IQ_BT) {                                                \
                int nb = g->B - b < IQ_BT ? g->B - b : IQ_BT;                                      \
                int64_t re = rc + IQ_CHUNK < r1 ? rc + IQ_CHUNK : r1;                              \
                for (int64_t r = rc; r < re; r++)                                                  \
                    switch (nb) {                                                                  \
                    case 8:                                                                        \
                        PFX##_tile(g, r, b, 8);                                                    \
                        break;                                                                     \
                    case 7:                                                                        \
                        PFX##_tile(g, r, b, 7);                                                    \
                        break;                                                                     \
                    case 6:                                                                        \
                        PFX##_tile(g, r, b, 6);                                                    \
                        break;                                                                     \
                    case 5:                                                                        \
                        PFX##_tile(g, r, b, 5);                                                    \
                        break;                                                                     \
                    case 4:                                                                        \
                        PFX##_tile(g, r, b, 4);                                                    \
                        break;                                                                     \
                    case 3:                                                                        \
                        PFX##_tile(g, r, b, 3);                                                    \
                        break;                                                                     \
                    case 2:                                                                        \
                        PFX##_tile(g, r, b, 2);                                                    \
                        break;                                                                     \
                    default:                                                                       \
                        PFX##_tile(g, r, b, 1);                                                    \
                        break;                                                                     \
                    }                                                                              \
            }                                                                                      \
    }
#endif
