/* kernels/x86/avx512_gemm.c: AVX-512 matmuls for Q8_0, Q4_0, IQ4_NL, F16, BF16 and F32
 * weights.
 *
 * Each kernel walks a tile of up to RT weight rows by BT activation rows, so a weight block
 * loaded once serves BT activation rows (prompt processing is compute-bound) and an
 * activation block serves RT weight rows. Every (weight row, activation row) pair is computed
 * by the same instruction sequence whatever the tile, so a row's result never depends on what
 * else is in the batch (batch invariance: the engine's outputs must not change with load).
 *
 * IQ4_NL is Q4_0's block with a nibble standing for a table value (kl_iq4nl_values).
 *
 * Integer dots (VNNI vpdpbusd takes unsigned x signed bytes): the activation biased to
 * unsigned (a + 128, an xor) times the signed weight, the bias taken out exactly by starting
 * each accumulator at -128 * (the weight's 4-byte sums), computed once per weight block pair;
 * 2 blocks of 32 per 512-bit register; the 16 int32 lanes are scaled by the pair's
 * (d_w * d_a), lanes 0-7 by block 0's, 8-15 by block 1's, and accumulated in float; one
 * horizontal sum at the end. */
#include <immintrin.h>

#include "kernels/impl.h"
#include "kernels/iq.h"

#define RT 4 /* weight rows per tile */
#define BT 4 /* activation rows per tile */

void kl_avx512_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);

static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* The scale vector of a block pair: a in lanes 0-7, b in lanes 8-15. */
static inline __m512 pair_scale(float a, float b)
{
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

/* Weights of a Q8_0 block pair (the second absent when one): signed bytes. */
static inline __m512i q8_0_pair(const kl_block_q8_0 *w, int64_t i, bool one)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *)w[i].qs);
    if (one) return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm256_loadu_si256((const __m256i *)w[i + 1].qs), 1);
}

/* The nibbles of a 4-bit block pair (the second absent when one), in element order. */
static inline __m512i nibble_pair(const uint8_t *qs0, const uint8_t *qs1, bool one)
{
    __m128i b0 = _mm_loadu_si128((const __m128i *)qs0);
    __m128i b1 = one ? _mm_setzero_si128() : _mm_loadu_si128((const __m128i *)qs1);
    __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(b0), b0, 1);
    v = _mm512_inserti32x4(v, b1, 2);
    v = _mm512_inserti32x4(v, b1, 3);
    /* 128-bit lanes 1 and 3 take the high nibbles (elements 16..31 of each block) */
    __m512i hi = _mm512_srli_epi16(v, 4);
    v = _mm512_mask_blend_epi64(0xCC, v, hi);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* Weights of a Q4_0 block pair as signed bytes q - 8. */
static inline __m512i q4_0_pair(const kl_block_q4_0 *w, int64_t i, bool one)
{
    __m512i v = _mm512_sub_epi8(nibble_pair(w[i].qs, w[i + !one].qs, one), _mm512_set1_epi8(8));
    if (one) v = _mm512_maskz_mov_epi8(0x00000000FFFFFFFFull, v);
    return v;
}

/* IQ4_NL: Q4_0's layout, a nibble standing for kl_iq4nl_values[q] (a byte shuffle). */
static inline __m512i iq4_nl_pair(const kl_block_iq4_nl *w, int64_t i, bool one)
{
    __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    __m512i v = _mm512_shuffle_epi8(lut, nibble_pair(w[i].qs, w[i + !one].qs, one));
    if (one) v = _mm512_maskz_mov_epi8(0x00000000FFFFFFFFull, v);
    return v;
}

/* One tile of a quantized matmul: rows [r, r+nr) x activation rows [b, b+nb). */
#define QUANT_TILE(NAME, BLOCK, PAIR)                                                              \
    static inline __attribute__((always_inline)) void NAME(const kl_gemm *g, int64_t r, int nr,    \
                                                           int b, int nb)                          \
    {                                                                                              \
        int64_t n = g->cols, nblk = n / KL_QK;                                                     \
        __m512 acc[RT][BT];                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] = _mm512_setzero_ps();  \
        const BLOCK *w[RT];                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++) w[i] =                                \
            (const BLOCK *)(g->W + (size_t)(r + i) * g->w_stride);                                 \
        const int8_t *aq[BT];                                                                      \
        const float *ad[BT];                                                                       \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                       \
        {                                                                                          \
            const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;                             \
            aq[k] = (const int8_t *)a;                                                             \
            ad[k] = kl_act_q8_0_d(a, n);                                                           \
        }                                                                                          \
        for (int64_t j = 0; j < nblk; j += 2) {                                                    \
            bool one = j + 1 == nblk;                                                              \
            __m512i av[BT];                                                                        \
            __m512 as[BT];                                                                         \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                av[k] = one ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, aq[k] + j * KL_QK)            \
                            : _mm512_loadu_si512(aq[k] + j * KL_QK);                               \
                av[k] = _mm512_xor_si512(av[k], _mm512_set1_epi8((char)0x80));                     \
                as[k] = pair_scale(ad[k][j], one ? 0.f : ad[k][j + 1]);                            \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                __m512i wv = PAIR(w[i], j, one);                                                   \
                __m512i bias =                                                                     \
                    _mm512_sub_epi32(_mm512_setzero_si512(),                                       \
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(),                   \
                                                         _mm512_set1_epi8((char)0x80), wv));       \
                __m512 ws = pair_scale(h2f(w[i][j].d), one ? 0.f : h2f(w[i][j + 1].d));            \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m512i d = _mm512_dpbusd_epi32(bias, av[k], wv);                              \
                    acc[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws, as[k]),   \
                                                acc[i][k]);                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                g->y[(int64_t)(b + k) * g->ldy + r + i] = _mm512_reduce_add_ps(acc[i][k]);         \
    }

QUANT_TILE(tile_q8_0, kl_block_q8_0, q8_0_pair)
QUANT_TILE(tile_q4_0, kl_block_q4_0, q4_0_pair)
QUANT_TILE(tile_iq4_nl, kl_block_iq4_nl, iq4_nl_pair)

/* Float weights: 16 elements per step, activations F32; a tail of n % 16 masked. */
static inline __m512 load_w_f32(const void *w, int64_t c, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, (const float *)w + c);
}

static inline __m512 load_w_f16(const void *w, int64_t c, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + c));
}

/* BF16 is the top half of an F32: widen and shift (products exact, like the reference). */
static inline __m512 load_w_bf16(const void *w, int64_t c, __mmask16 m)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + c));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

#define FLOAT_TILE(NAME, LOADW)                                                                    \
    static inline __attribute__((always_inline)) void NAME(const kl_gemm *g, int64_t r, int nr,    \
                                                           int b, int nb)                          \
    {                                                                                              \
        int64_t n = g->cols;                                                                       \
        __m512 acc[RT][BT];                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] = _mm512_setzero_ps();  \
        const uint8_t *w[RT];                                                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++) w[i] =                                \
            g->W + (size_t)(r + i) * g->w_stride;                                                  \
        const float *x[BT];                                                                        \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) x[k] =                                \
            (const float *)(g->act + (size_t)(b + k) * g->a_stride);                               \
        for (int64_t c = 0; c < n; c += 16) {                                                      \
            __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);      \
            __m512 xv[BT];                                                                         \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) xv[k] =                           \
                _mm512_maskz_loadu_ps(m, x[k] + c);                                                \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                __m512 wv = LOADW(w[i], c, m);                                                     \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] =                   \
                    _mm512_fmadd_ps(wv, xv[k], acc[i][k]);                                         \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                g->y[(int64_t)(b + k) * g->ldy + r + i] = _mm512_reduce_add_ps(acc[i][k]);         \
    }

FLOAT_TILE(tile_f32, load_w_f32)
FLOAT_TILE(tile_f16, load_w_f16)
FLOAT_TILE(tile_bf16, load_w_bf16)

/* Walks rows [r0, r1) x all activation rows in tiles; the tail tiles use the same code with
 * smaller counts (constants after inlining: one specialised loop per shape). */
#define CHUNK  32 /* weight rows kept in cache while the activation tiles pass over them */
#define BCHUNK 64 /* activation rows per pass: with a weight chunk, they stay in L2 */
#define GEMM(NAME, TILE, RT1)                                                                      \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int b0 = 0; b0 < g->B; b0 += BCHUNK)                                                  \
            for (int64_t rc = r0; rc < r1; rc += CHUNK)                                            \
                for (int b = b0, be = b0 + BCHUNK < g->B ? b0 + BCHUNK : g->B; b < be; b += BT) {  \
                    int nb = be - b < BT ? be - b : BT;                                            \
                    int64_t re = rc + CHUNK < r1 ? rc + CHUNK : r1;                                \
                    /* one activation row: RT1 weight rows at a time (quantized: 1, a single       \
                     * sequential stream; float: RT, independent FMA chains hide the latency) */   \
                    int rt = g->B == 1 ? RT1 : RT;                                                 \
                    for (int64_t r = rc; r < re; r += rt) {                                        \
                        int nr = re - r < rt ? (int)(re - r) : rt;                                 \
                        switch (nr * 8 +                                                           \
                                nb) { /* constant shapes: accumulators stay in registers */        \
                        case 4 * 8 + 4:                                                            \
                            TILE(g, r, 4, b, 4);                                                   \
                            break;                                                                 \
                        case 4 * 8 + 3:                                                            \
                            TILE(g, r, 4, b, 3);                                                   \
                            break;                                                                 \
                        case 4 * 8 + 2:                                                            \
                            TILE(g, r, 4, b, 2);                                                   \
                            break;                                                                 \
                        case 4 * 8 + 1:                                                            \
                            TILE(g, r, 4, b, 1);                                                   \
                            break;                                                                 \
                        case 3 * 8 + 4:                                                            \
                            TILE(g, r, 3, b, 4);                                                   \
                            break;                                                                 \
                        case 3 * 8 + 3:                                                            \
                            TILE(g, r, 3, b, 3);                                                   \
                            break;                                                                 \
                        case 3 * 8 + 2:                                                            \
                            TILE(g, r, 3, b, 2);                                                   \
                            break;                                                                 \
                        case 3 * 8 + 1:                                                            \
                            TILE(g, r, 3, b, 1);                                                   \
                            break;                                                                 \
                        case 2 * 8 + 4:                                                            \
                            TILE(g, r, 2, b, 4);                                                   \
                            break;                                                                 \
                        case 2 * 8 + 3:                                                            \
                            TILE(g, r, 2, b, 3);                                                   \
                            break;                                                                 \
                        case 2 * 8 + 2:                                                            \
                            TILE(g, r, 2, b, 2);                                                   \
                            break;                                                                 \
                        case 2 * 8 + 1:                                                            \
                            TILE(g, r, 2, b, 1);                                                   \
                            break;                                                                 \
                        case 1 * 8 + 4:                                                            \
                            TILE(g, r, 1, b, 4);                                                   \
                            break;                                                                 \
                        case 1 * 8 + 3:                                                            \
                            TILE(g, r, 1, b, 3);                                                   \
                            break;                                                                 \
                        case 1 * 8 + 2:                                                            \
                            TILE(g, r, 1, b, 2);                                                   \
                            break;                                                                 \
                        default:                                                                   \
                            TILE(g, r, 1, b, 1);                                                   \
                            break;                                                                 \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
    }

GEMM(kl_avx512_gemm_q8_0, tile_q8_0, 1)
GEMM(kl_avx512_gemm_q4_0, tile_q4_0, 1)
GEMM(kl_avx512_gemm_iq4_nl, tile_iq4_nl, 1)
GEMM(kl_avx512_gemm_f16, tile_f16, RT)
GEMM(kl_avx512_gemm_f32, tile_f32, RT)
GEMM(kl_avx512_gemm_bf16, tile_bf16, RT)
