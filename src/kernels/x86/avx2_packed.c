/* kernels/x86/avx2_packed.c: AVX2 matmuls over the panels of 16 rows that kernels/pack.c
 * packs (the same bytes AVX-512 reads). A group of 4 columns x 16 rows (64 bytes) is two
 * 256-bit halves, rows 0-7 and 8-15: a register holds 4 columns of 8 rows, and a result vector
 * is 8 consecutive outputs of one activation row, with no horizontal sums. A tile is one half
 * panel x up to BT activation rows over all blocks, the weights prepared once per block for the
 * tile's rows; the second half reads the panel again, from cache (one panel of 2048 columns of
 * Q4_0 is 18 KB). Generation (one row) streams each panel front to back.
 *
 * Integer dots without VNNI: vpmaddubsw (unsigned x signed bytes, pairs summed into int16 with
 * saturation), then vpmaddwd by ones into int32. Per format, with activations |a| <= 127:
 *   Q4_0 / Q4_1 (u 0..15): a pair is at most 2 * 15 * 127, so the 8 groups of a block are
 *     summed in int16 (at most 30480) before one vpmaddwd.
 *   Q5_0 / Q5_1 (u 0..31): 4 groups in int16 (at most 31496), two vpmaddwd per block.
 *   Q8_0 and IQ4_NL (signed w): the sign moved onto the activation, |w| (at most 128) times
 *     sign(a, w): a pair is at most 32512; one vpmaddwd per group.
 * Biases as on AVX-512: Q4_0 sum((q) a) - 8 sum(a), Q5_0 - 16 sum(a), from the activation
 * row's c (-128 sum(a), kernels/impl.h). Then d_w d_a times the int32 sum, accumulated in
 * float; Q4_1 / Q5_1 add m_w s_a.
 *
 * Float weights: per column the 16 rows' values, FMA into 2 accumulators per activation row and
 * panel; one or two activation rows take four or two panels at a time (8 independent FMA
 * chains).
 *
 * Batch invariance: every (weight row, activation row) result is the same chain of
 * instructions over the blocks or columns, in order, whatever the tile. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/x86/packed_prefetch.h"

#define REG       (KL_PR * 4)
#define BT        4  /* activation rows per int8 tile */
#define BT_F      6  /* ... per float tile of one panel */
#define ACT_GROUP 64 /* activation rows per pass over the panels (avx512_packed.c) */
/* The first int8 tile over a panel asks for the record KL_PF_AHEAD bytes past the one it reads
 * (x86/packed_prefetch.h): streaming 8192x2048 at one activation row, 1 thread, GB/s of weights
 * (limit 42), without -> with: Q8_0 26-27 -> 38.7 (4 KB ahead 34.5, 16 KB 37.5), Q4_0 33-35 ->
 * 39.5. */

enum { Q80, Q40, Q41, Q50, Q51, IQ4NL };

static inline __attribute__((always_inline)) bool nib(int K)
{
    return K != Q80;
}
static inline __attribute__((always_inline)) bool has_hb(int K)
{
    return K == Q50 || K == Q51;
}
static inline __attribute__((always_inline)) bool has_m(int K)
{
    return K == Q41 || K == Q51;
}
static inline __attribute__((always_inline)) bool is_signed(int K)
{
    return K == Q80 || K == IQ4NL;
}
static inline __attribute__((always_inline)) size_t off_d(int K)
{
    return (size_t)(K == Q80 ? 8 : has_hb(K) ? 5 : 4) * REG;
}
static inline __attribute__((always_inline)) size_t rec_bytes(int K)
{
    return off_d(K) + KL_PR * 2 * (has_m(K) ? 2 : 1);
}

/* Stores the first n (of 8) lanes of v at y. */
static inline void store_rows(float *y, __m256 v, int64_t n)
{
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
    } else if (n > 0) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_maskstore_ps(y, m, v);
    }
}

static inline __m256i bcast4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Halves [h0, h1) (rows 8h..8h+7) of the panel at r x activation rows [b, b + NB), all blocks. */
static inline __attribute__((always_inline)) void tile_int8(const kl_gemm *g, int64_t r, int h0,
                                                            int h1, int b, int NB, int K)
{
    const int64_t n = g->cols, nblk = n / KL_QK;
    const size_t rb = rec_bytes(K), as_ = g->a_stride;
    const uint8_t *P0 = g->W + (size_t)(r / KL_PR) * g->w_stride;
    const uint8_t *a0 = g->act + (size_t)b * as_;
    const size_t od = (size_t)n, oc = (size_t)n + 4 * (size_t)nblk,
                 os = (size_t)n + 8 * (size_t)nblk;
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0F);
    const __m256i lut =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    __m256 acc[BT][2];
    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++) acc[k][0] = acc[k][1] =
        _mm256_setzero_ps();
    for (int64_t j = 0; j < nblk; j++, P0 += rb)
        _Pragma("GCC unroll 2") for (int h = h0; h < h1; h++)
        {
            const uint8_t *P = P0 + h * 32;
            if (h == h0 && b % ACT_GROUP == 0) kl_pf_share(P0, rb, 0, 1);
            /* w[q]: columns 4q..4q+3 of the 8 rows; unsigned, or |w| with the signed values in sw
             */
            __m256i w[8], sw[8];
            if (nib(K)) {
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(P + q * REG));
                    w[q] = _mm256_and_si256(v, lo4);
                    w[q + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
                }
                if (has_hb(K)) { /* bit q -> bit 4 of w[q] */
                    __m256i hb = _mm256_loadu_si256((const __m256i *)(P + 4 * REG));
                    const __m256i bit = _mm256_set1_epi8(0x10);
                    _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                    {
                        __m256i x =
                            q < 4 ? _mm256_slli_epi16(hb, 4 - q) : _mm256_srli_epi16(hb, q - 4);
                        w[q] = _mm256_or_si256(w[q], _mm256_and_si256(x, bit));
                    }
                }
                if (K == IQ4NL) _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                    {
                        sw[q] = _mm256_shuffle_epi8(lut, w[q]);
                        w[q] = _mm256_sign_epi8(sw[q], sw[q]);
                    }
            } else {
                _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                {
                    sw[q] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(P + q * REG)),
                                             _mm256_set1_epi8((char)0x80));
                    w[q] = _mm256_sign_epi8(sw[q], sw[q]);
                }
            }
            __m256 ws = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(P0 + off_d(K) + h * 16)));
            __m256 ms = has_m(K) ? _mm256_cvtph_ps(_mm_loadu_si128(
                                       (const __m128i *)(P0 + off_d(K) + KL_PR * 2 + h * 16)))
                                 : ws;
            _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
            {
                const uint8_t *a = a0 + (size_t)k * as_, *qa = a + j * KL_QK;
                __m256i i32;
                if (is_signed(K)) {
                    i32 = _mm256_setzero_si256();
                    _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                    {
                        __m256i p =
                            _mm256_maddubs_epi16(w[q], _mm256_sign_epi8(bcast4(qa + 4 * q), sw[q]));
                        i32 = _mm256_add_epi32(i32, _mm256_madd_epi16(p, ones));
                    }
                } else if (has_hb(K)) {
                    __m256i s0 = _mm256_maddubs_epi16(w[0], bcast4(qa));
                    __m256i s1 = _mm256_maddubs_epi16(w[4], bcast4(qa + 16));
                    _Pragma("GCC unroll 3") for (int q = 1; q < 4; q++)
                    {
                        s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(w[q], bcast4(qa + 4 * q)));
                        s1 = _mm256_add_epi16(
                            s1, _mm256_maddubs_epi16(w[q + 4], bcast4(qa + 16 + 4 * q)));
                    }
                    i32 =
                        _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
                } else {
                    __m256i s = _mm256_maddubs_epi16(w[0], bcast4(qa));
                    _Pragma("GCC unroll 7") for (int q = 1; q < 8; q++) s =
                        _mm256_add_epi16(s, _mm256_maddubs_epi16(w[q], bcast4(qa + 4 * q)));
                    i32 = _mm256_madd_epi16(s, ones);
                }
                if (K == Q40 || K == Q50) {
                    int32_t c; /* -128 * the block's sum */
                    memcpy(&c, a + oc + 4 * j, 4);
                    i32 = _mm256_add_epi32(i32, _mm256_set1_epi32(K == Q40 ? c >> 4 : c >> 3));
                }
                float d;
                memcpy(&d, a + od + 4 * j, 4);
                acc[k][h - h0] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(i32), _mm256_mul_ps(ws, _mm256_set1_ps(d)), acc[k][h - h0]);
                if (has_m(K)) {
                    float s;
                    memcpy(&s, a + os + 4 * j, 4);
                    acc[k][h - h0] = _mm256_fmadd_ps(ms, _mm256_set1_ps(s), acc[k][h - h0]);
                }
            }
        }
    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
        _Pragma("GCC unroll 2") for (int h = h0; h < h1; h++) store_rows(
            g->y + (int64_t)(b + k) * g->ldy + r + 8 * h, acc[k][h - h0], g->rows - r - 8 * h);
}

/* Up to two activation rows (generation) take both halves of a block in one pass, so that the
 * panel is read once, as one stream; more take one half at a time over all blocks (8 weight
 * registers serve BT rows), the second half re-read from cache. */
#define INT8_GEMM(NAME, K)                                                                         \
    static void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                     \
    {                                                                                              \
        for (int bg = 0; bg < g->B; bg += ACT_GROUP) {                                             \
            int be = g->B - bg > ACT_GROUP ? bg + ACT_GROUP : g->B;                                \
            for (int64_t r = r0; r < r1; r += KL_PR) {                                             \
                int nh = r + 8 < g->rows ? 2 : 1;                                                  \
                for (int b = bg, nb; b < be; b += nb) {                                            \
                    nb = be - b < BT ? be - b : BT;                                                \
                    if (nb <= 2 && nh == 2)                                                        \
                        nb == 2 ? tile_int8(g, r, 0, 2, b, 2, K) : tile_int8(g, r, 0, 2, b, 1, K); \
                    else                                                                           \
                        for (int h = 0; h < nh; h++)                                               \
                            switch (nb) {                                                          \
                            case 4:                                                                \
                                tile_int8(g, r, h, h + 1, b, 4, K);                                \
                                break;                                                             \
                            case 3:                                                                \
                                tile_int8(g, r, h, h + 1, b, 3, K);                                \
                                break;                                                             \
                            case 2:                                                                \
                                tile_int8(g, r, h, h + 1, b, 2, K);                                \
                                break;                                                             \
                            default:                                                               \
                                tile_int8(g, r, h, h + 1, b, 1, K);                                \
                                break;                                                             \
                            }                                                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

INT8_GEMM(gemm_packed_q8_0, Q80)
INT8_GEMM(gemm_packed_q4_0, Q40)
INT8_GEMM(gemm_packed_q4_1, Q41)
INT8_GEMM(gemm_packed_q5_0, Q50)
INT8_GEMM(gemm_packed_q5_1, Q51)
INT8_GEMM(gemm_packed_iq4_nl, IQ4NL)

/* NP panels (16 * NP rows from r) x activation rows [b, b + NB): per column, each weight vector
 * (8 rows of a panel) feeds NB FMAs; 2 * NP * NB independent accumulators. */
static inline __attribute__((always_inline)) void tile_float(const kl_gemm *g, int64_t r, int b,
                                                             int NB, bool f16, int NP)
{
    const int64_t n = g->cols;
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    const size_t ps = g->w_stride, cs = f16 ? KL_PR * 2 : KL_PR * 4; /* panel, column strides */
    const float *x[BT_F];
    __m256 acc[4][BT_F][2];
    _Pragma("GCC unroll 6") for (int k = 0; k < NB; k++)
    {
        x[k] = (const float *)(g->act + (size_t)(b + k) * g->a_stride);
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) acc[p][k][0] = acc[p][k][1] =
            _mm256_setzero_ps();
    }
    for (int64_t c = 0; c < n; c++, P += cs) {
        __m256 w[4][2];
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) w[p][h] =
                f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(P + p * ps + h * 16)))
                    : _mm256_loadu_ps((const float *)(P + p * ps + h * 32));
        _Pragma("GCC unroll 6") for (int k = 0; k < NB; k++)
        {
            __m256 xv = _mm256_set1_ps(x[k][c]);
            _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)
                _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) acc[p][k][h] =
                    _mm256_fmadd_ps(w[p][h], xv, acc[p][k][h]);
        }
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++)
        _Pragma("GCC unroll 6") for (int k = 0; k < NB; k++)
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
    {
        int64_t at = r + p * KL_PR + 8 * h;
        store_rows(g->y + (int64_t)(b + k) * g->ldy + at, acc[p][k][h], g->rows - at);
    }
}

/* One activation row: 4 panels at a time (8 FMA chains), two: 2; more: one panel x up to BT_F
 * rows. */
#define FLOAT_GEMM(NAME, F16)                                                                      \
    static void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                     \
    {                                                                                              \
        for (int bg = 0; bg < g->B; bg += ACT_GROUP) {                                             \
            int be = g->B - bg > ACT_GROUP ? bg + ACT_GROUP : g->B;                                \
            for (int64_t r = r0, np; r < r1; r += np * KL_PR) {                                    \
                int64_t left = (r1 - r + KL_PR - 1) / KL_PR;                                       \
                np = g->B == 1 && left >= 4 ? 4 : g->B <= 2 && left >= 2 ? 2 : 1;                  \
                for (int b = bg, nb; b < be; b += nb) {                                            \
                    nb = be - b < BT_F ? be - b : BT_F;                                            \
                    if (np == 4)                                                                   \
                        tile_float(g, r, b, 1, F16, 4);                                            \
                    else if (np == 2 && nb == 2)                                                   \
                        tile_float(g, r, b, 2, F16, 2);                                            \
                    else if (np == 2)                                                              \
                        tile_float(g, r, b, 1, F16, 2);                                            \
                    else                                                                           \
                        switch (nb) {                                                              \
                        case 6:                                                                    \
                            tile_float(g, r, b, 6, F16, 1);                                        \
                            break;                                                                 \
                        case 5:                                                                    \
                            tile_float(g, r, b, 5, F16, 1);                                        \
                            break;                                                                 \
                        case 4:                                                                    \
                            tile_float(g, r, b, 4, F16, 1);                                        \
                            break;                                                                 \
                        case 3:                                                                    \
                            tile_float(g, r, b, 3, F16, 1);                                        \
                            break;                                                                 \
                        case 2:                                                                    \
                            tile_float(g, r, b, 2, F16, 1);                                        \
                            break;                                                                 \
                        default:                                                                   \
                            tile_float(g, r, b, 1, F16, 1);                                        \
                            break;                                                                 \
                        }                                                                          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

FLOAT_GEMM(gemm_packed_f32, false)
FLOAT_GEMM(gemm_packed_f16, true)

void kl_avx2_types_packed(kl_isa *isa)
{
    isa->types[KL_F32].gemm_packed = gemm_packed_f32;
    isa->types[KL_F16].gemm_packed = gemm_packed_f16;
    isa->types[KL_Q8_0].gemm_packed = gemm_packed_q8_0;
    isa->types[KL_Q4_0].gemm_packed = gemm_packed_q4_0;
    isa->types[KL_Q4_1].gemm_packed = gemm_packed_q4_1;
    isa->types[KL_Q5_0].gemm_packed = gemm_packed_q5_0;
    isa->types[KL_Q5_1].gemm_packed = gemm_packed_q5_1;
    isa->types[KL_IQ4_NL].gemm_packed = gemm_packed_iq4_nl;
}
