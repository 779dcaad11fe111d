/* kernels/x86/avx512_packed.c: matmuls over weights repacked at load into panels of 16 rows,
 * so that one 512-bit register holds the same columns of 16 rows and a result vector is 16
 * consecutive outputs of one activation row: no horizontal sums, and a weight register serves
 * every activation row of a tile (prompt processing and batched decoding are compute-bound).
 *
 * Panel layouts: kernels/pack.c (the packers, shared with AVX2). IQ4_NL's nibbles go through a
 * byte shuffle to kl_iq4nl_values[q] + 128.
 * The activation is the signed int8 row (Q8_0 act layout); the bias is taken out exactly with
 * the activation block's sum: sum((w + c) a) - c sum(a), c = 128 (Q8_0, IQ4_NL) or 8 (Q4_0).
 *
 * Batch invariance: every (weight row, activation row) result is the same chain of
 * instructions over the blocks or columns, in order, whatever the tile. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/x86/avx512_dpbusd.h"
#include "kernels/x86/packed_prefetch.h"

#define BT      8  /* activation rows per tile */
#define BT_INT8 16 /* ... and per int8 tile when there are that many (batched decoding) */
#define KI      2  /* int8 tile rows whose multiply-accumulates are interleaved (tile_int8) */
/* The first int8 tile over a panel prefetches this many blocks ahead (streaming 8192x2048 Q8_0
 * at B=16, 1 thread: 4 blocks 319 GOP/s; 2: 300, 8: 304, 16: 268), past the panel's end into
 * the next panel (they are contiguous; a prefetch past the matrix is a hint that never faults):
 * stopping at the end left each panel's first blocks to start cold (a 2048-column panel is 64
 * blocks; same run, 1 thread, B=16: 321-327 -> 333-334 GOP/s, B=32: 326-328 -> 329-336). */
#define PF_BLOCKS 4
/* Activation rows are taken ACT_GROUP at a time, all panels for each group: 64 rows of a
 * 2048-column Q8_0 activation (150 KB) stay in L2 while the panels pass, where a whole 512-row
 * prompt chunk (1.3 MB) came from L3 for every panel (pp512-sized Q8_0 kernel, 1 thread,
 * loaded machine: 311-318 -> 318-326 GOP/s, and no drop to 245 when a neighbour thrashes L3).
 * A row's arithmetic does not depend on its tile (batch invariance): grouping changes no bits. */
#define ACT_GROUP 64

void kl_avx512_gemm_packed_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_f16(const kl_gemm *g, int64_t r0, int64_t r1);

#define Q8_PBLK (8 * KL_PR * 4 + KL_PR * 2)
#define Q4_PBLK (4 * KL_PR * 4 + KL_PR * 2)

static inline __mmask16 out_mask(int64_t rows, int64_t r)
{
    int64_t n = rows - r;
    return n >= KL_PR ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

enum { INT8_Q8, INT8_Q4, INT8_IQ4NL }; /* the packed int8 tile's weight formats */

/* One panel (16 rows from r) x activation rows [b, b + NB), over all blocks of weights in
 * format fmt. */
static inline __attribute__((always_inline)) void tile_int8(const kl_gemm *g, int64_t r, int b,
                                                            int NB, int fmt)
{
    int64_t n = g->cols, nblk = n / KL_QK;
    bool q4 = fmt != INT8_Q8;
    size_t pblk = q4 ? Q4_PBLK : Q8_PBLK;
    __m128i lut16 =
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)kl_iq4nl_values), _mm_set1_epi8((char)0x80));
    const __m512i lut = _mm512_broadcast_i32x4(lut16); /* IQ4_NL levels + 128, unsigned */
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    /* Activation row k of the tile is row 0's layout (kl_act_q8_0_*) moved by k * a_stride:
     * one offset per row instead of three pointers keeps the 16-row tile's addresses in
     * registers. */
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    const uint8_t *d0 = (const uint8_t *)kl_act_q8_0_d(a0, n),
                  *c0 = (const uint8_t *)kl_act_q8_0_c(a0, n);
    const size_t as_ = g->a_stride;
    size_t offs[BT_INT8]; /* row k's offset from row 0 */
    _Pragma("GCC unroll 16") for (int k = 0; k < NB; k++) offs[k] = (size_t)k * as_;
    __m512 out[BT_INT8];
    _Pragma("GCC unroll 16") for (int k = 0; k < NB; k++) out[k] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    /* Batched decoding streams the weights from DRAM with a few rows of compute per byte: the
     * first tile over a panel asks for its blocks ahead (twice the B=16 rate measured when the
     * weights are not in cache), later tiles find them cached. One row (generation) asks
     * KL_PF_AHEAD ahead (x86/packed_prefetch.h): left to the hardware prefetcher (a choice
     * made on Zen 4), Zen 5 streamed IQ4_NL at 33-34 GB/s, 1 thread, while the same tile ran
     * 92 from cache. */
    bool prefetch = b % ACT_GROUP == 0 && g->B > 1, gen = g->B == 1;
    for (int64_t j = 0; j < nblk; j++, P += pblk) {
        __m512i w[8];
        if (prefetch)
            for (size_t c = 0; c < pblk; c += 64)
                _mm_prefetch((const char *)P + PF_BLOCKS * pblk + c, _MM_HINT_T0);
        if (gen) kl_pf_share(P, pblk, 0, 1);
        if (q4) {
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
            {
                __m512i v = _mm512_loadu_si512(P + q * 64);
                w[q] = _mm512_and_si512(v, lo4);
                w[q + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
                if (fmt == INT8_IQ4NL) {
                    w[q] = _mm512_shuffle_epi8(lut, w[q]);
                    w[q + 4] = _mm512_shuffle_epi8(lut, w[q + 4]);
                }
            }
        } else {
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) w[q] =
                _mm512_loadu_si512(P + q * 64);
        }
        __m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P + pblk - KL_PR * 2)));
        const uint8_t *qa = a0 + j * KL_QK, *da = d0 + 4 * j, *sa = c0 + 4 * j;
        /* Activation rows two at a time, their multiply-accumulates interleaved: each row's
         * chain of 8 (vpdpbusd's latency) has the other's beside it in program order, so the
         * scheduler finds independent work without looking far ahead (B=16, 1 thread, in cache:
         * 351 -> 358 GOP/s). Each row's instructions and their order are unchanged. */
        _Pragma("GCC unroll 16") for (int k0 = 0; k0 < NB; k0 += KI)
        {
            __m512i acc[KI];
            const int8_t *a[KI];
            float d[KI];
            _Pragma("GCC unroll 4") for (int i = 0; i < KI; i++)
            {
                if (k0 + i >= NB) break;
                size_t o = offs[k0 + i];
                __asm__("" : "+r"(o)); /* an offset, not 16 x 3 pointers stepped per block */
                a[i] = (const int8_t *)qa + o;
                int32_t c; /* -128 * the block's sum: Q4_0's bias is 8, c / 16 */
                memcpy(&c, sa + o, 4), memcpy(&d[i], da + o, 4);
                acc[i] = _mm512_set1_epi32(fmt == INT8_Q4 ? c >> 4 : c);
            }
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                _Pragma("GCC unroll 4") for (int i = 0; i < KI; i++)
            {
                if (k0 + i >= NB) break;
                acc[i] = kl_dpbusd_bcast(acc[i], w[q], a[i] + 4 * q);
            }
            _Pragma("GCC unroll 4") for (int i = 0; i < KI; i++)
            {
                if (k0 + i >= NB) break;
                out[k0 + i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i]),
                                              _mm512_mul_ps(ws, _mm512_set1_ps(d[i])), out[k0 + i]);
            }
        }
    }
    __mmask16 m = out_mask(g->rows, r);
    _Pragma("GCC unroll 16") for (int k = 0; k < NB; k++)
        _mm512_mask_storeu_ps(g->y + (int64_t)(b + k) * g->ldy + r, m, out[k]);
}

/* NP panels (16 * NP rows from r) x activation rows [b, b + NB): each activation value feeds NP
 * FMAs, and NB * NP independent accumulators keep both FMA pipes busy through their latency
 * (with one or two activation rows, generation, four panels keep the weight stream going). */
static inline __attribute__((always_inline)) void tile_float(const kl_gemm *g, int64_t r, int b,
                                                             int NB, bool f16, int NP)
{
    int64_t n = g->cols;
    const uint8_t *P[4];
    _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) P[p] =
        g->W + (size_t)(r / KL_PR + p) * g->w_stride;
    const float *x[BT];
    __m512 out[4][BT];
    _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
    {
        x[k] = (const float *)(g->act + (size_t)(b + k) * g->a_stride);
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) out[p][k] = _mm512_setzero_ps();
    }
    for (int64_t c = 0; c < n; c++) {
        __m512 w[4];
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) w[p] =
            f16 ? _mm512_cvtph_ps(
                      _mm256_loadu_si256((const __m256i *)(P[p] + (size_t)c * KL_PR * 2)))
                : _mm512_loadu_ps((const float *)(P[p] + (size_t)c * KL_PR * 4));
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        {
            __m512 xv = _mm512_set1_ps(x[k][c]);
            _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) out[p][k] =
                _mm512_fmadd_ps(w[p], xv, out[p][k]);
        }
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)
    {
        __mmask16 m = out_mask(g->rows, r + p * KL_PR);
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
            _mm512_mask_storeu_ps(g->y + (int64_t)(b + k) * g->ldy + r + p * KL_PR, m, out[p][k]);
    }
}

static inline __attribute__((always_inline)) void tile_f32(const kl_gemm *g, int64_t r, int b,
                                                           int NB, int NP)
{
    tile_float(g, r, b, NB, false, NP);
}
static inline __attribute__((always_inline)) void tile_f16(const kl_gemm *g, int64_t r, int b,
                                                           int NB, int NP)
{
    tile_float(g, r, b, NB, true, NP);
}
static inline __attribute__((always_inline)) void tile_q8_0(const kl_gemm *g, int64_t r, int b,
                                                            int NB, int NP)
{
    (void)NP; /* one panel: the int8 tile is already near the dot-product peak */
    tile_int8(g, r, b, NB, INT8_Q8);
}
static inline __attribute__((always_inline)) void tile_q4_0(const kl_gemm *g, int64_t r, int b,
                                                            int NB, int NP)
{
    (void)NP;
    tile_int8(g, r, b, NB, INT8_Q4);
}
static inline __attribute__((always_inline)) void tile_iq4_nl(const kl_gemm *g, int64_t r, int b,
                                                              int NB, int NP)
{
    (void)NP;
    tile_int8(g, r, b, NB, INT8_IQ4NL);
}

#define TILE_NB(TILE, g, r, b, nb, np)                                                             \
    switch (nb) { /* constant tile heights */                                                      \
    case 8:                                                                                        \
        TILE(g, r, b, 8, np);                                                                      \
        break;                                                                                     \
    case 7:                                                                                        \
        TILE(g, r, b, 7, np);                                                                      \
        break;                                                                                     \
    case 6:                                                                                        \
        TILE(g, r, b, 6, np);                                                                      \
        break;                                                                                     \
    case 5:                                                                                        \
        TILE(g, r, b, 5, np);                                                                      \
        break;                                                                                     \
    case 4:                                                                                        \
        TILE(g, r, b, 4, np);                                                                      \
        break;                                                                                     \
    case 3:                                                                                        \
        TILE(g, r, b, 3, np);                                                                      \
        break;                                                                                     \
    case 2:                                                                                        \
        TILE(g, r, b, 2, np);                                                                      \
        break;                                                                                     \
    default:                                                                                       \
        TILE(g, r, b, 1, np);                                                                      \
        break;                                                                                     \
    }

/* Panels of rows [r0, r1) (r0 a multiple of 16), up to MAXP at a time (4 when at most two
 * activation rows), x the activation rows of a group (ACT_GROUP), BIG at a time while that many are
 * left (int8: a weight block loaded from memory then serves 16 rows at once, not 8 and again from
 * cache), else BT; the panels stay in cache while the activation tiles pass over them. */
#define PACKED_GEMM(NAME, TILE, MAXP, BIG)                                                         \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        int want = MAXP > 1 && g->B <= 2 ? 4 : MAXP;                                               \
        for (int bg = 0; bg < g->B; bg += ACT_GROUP)                                               \
            for (int64_t r = r0, np; r < r1; r += np * KL_PR) {                                    \
                int64_t left = (r1 - r + KL_PR - 1) / KL_PR;                                       \
                np = want == 4 && left >= 4 ? 4 : want >= 2 && left >= 2 ? 2 : 1;                  \
                int be = g->B - bg > ACT_GROUP ? bg + ACT_GROUP : g->B;                            \
                for (int b = bg, nb; b < be; b += nb) {                                            \
                    nb = be - b < BT ? be - b : BT;                                                \
                    if (BIG && be - b >= BIG) {                                                    \
                        nb = BIG;                                                                  \
                        TILE(g, r, b, BIG ? BIG : 1, 1);                                           \
                    } else if (np == 4)                                                            \
                        switch (nb) {                                                              \
                        case 2:                                                                    \
                            TILE(g, r, b, 2, 4);                                                   \
                            break;                                                                 \
                        default:                                                                   \
                            TILE(g, r, b, 1, 4);                                                   \
                            break;                                                                 \
                        }                                                                          \
                    else if (np == 2)                                                              \
                        TILE_NB(TILE, g, r, b, nb, 2)                                              \
                    else                                                                           \
                        TILE_NB(TILE, g, r, b, nb, 1)                                              \
                }                                                                                  \
            }                                                                                      \
    }

PACKED_GEMM(kl_avx512_gemm_packed_q8_0, tile_q8_0, 1, BT_INT8)
PACKED_GEMM(kl_avx512_gemm_packed_q4_0, tile_q4_0, 1, BT_INT8)
PACKED_GEMM(kl_avx512_gemm_packed_iq4_nl, tile_iq4_nl, 1, BT_INT8)
PACKED_GEMM(kl_avx512_gemm_packed_f32, tile_f32, 2, 0)
PACKED_GEMM(kl_avx512_gemm_packed_f16, tile_f16, 2, 0)
