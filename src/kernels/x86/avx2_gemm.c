/* kernels/x86/avx2_gemm.c: AVX2+FMA matmuls for Q8_0, Q4_0, IQ4_NL, F32, F16 and BF16 weights
 * (the fallback where AVX-512 is missing).
 *
 * Same plan as avx512_gemm.c: tiles of up to RT weight rows x BT activation rows, every
 * (weight row, activation row) pair computed by the same instruction sequence whatever the
 * tile (batch invariance). Integer dots: one 32-element block per 256-bit register, the
 * sign moved onto the activation (vpsignb) so that vpmaddubsw multiplies |w| (unsigned) by
 * signed activations; pairs cannot saturate (|w| <= 128, |a| <= 127); vpmaddwd by ones
 * gives 8 int32 sums, scaled in float by d_w * d_a and accumulated; one horizontal sum at
 * the end. Float weights: 8 lanes of FMA; a tail of cols % 8 through a zero-padded copy. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_reduce.h"
#include "kernels/iq.h"

#define RT 4 /* weight rows per tile */
#define BT 2 /* activation rows per tile */

void kl_avx2_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i q8_0_block(const kl_block_q8_0 *w, int64_t j)
{
    return _mm256_loadu_si256((const __m256i *)w[j].qs);
}

/* The 32 nibbles of a 4-bit block, in element order. */
static inline __m256i nibbles(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

static inline __m256i q4_0_block(const kl_block_q4_0 *w, int64_t j)
{
    return _mm256_sub_epi8(nibbles(w[j].qs), _mm256_set1_epi8(8));
}

/* IQ4_NL: a nibble stands for kl_iq4nl_values[q] (|value| <= 127: vpsignb is exact). */
static inline __m256i iq4_nl_block(const kl_block_iq4_nl *w, int64_t j)
{
    __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    return _mm256_shuffle_epi8(lut, nibbles(w[j].qs));
}

#define QUANT_TILE(NAME, BLOCK, LOADB)                                                             \
    static inline __attribute__((always_inline)) void NAME(const kl_gemm *g, int64_t r, int nr,    \
                                                           int b, int nb)                          \
    {                                                                                              \
        int64_t n = g->cols, nblk = n / KL_QK;                                                     \
        __m256 acc[RT][BT];                                                                        \
        const BLOCK *w[RT];                                                                        \
        const int8_t *aq[BT];                                                                      \
        const float *ad[BT];                                                                       \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
        {                                                                                          \
            w[i] = (const BLOCK *)(g->W + (size_t)(r + i) * g->w_stride);                          \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] = _mm256_setzero_ps();  \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                       \
        {                                                                                          \
            const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;                             \
            aq[k] = (const int8_t *)a;                                                             \
            ad[k] = kl_act_q8_0_d(a, n);                                                           \
        }                                                                                          \
        const __m256i ones = _mm256_set1_epi16(1);                                                 \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            /* the next tile's rows at the same block: rows of a few KB are streams too short      \
             * for the hardware prefetcher (one row at 2048 columns of Q4_0 is 18 lines) */        \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
                _mm_prefetch((const char *)(w[i] + j) + RT * g->w_stride, _MM_HINT_T0);            \
            __m256i av[BT];                                                                        \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) av[k] =                           \
                _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QK));                          \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                __m256i wv = LOADB(w[i], j);                                                       \
                __m256i aw = _mm256_sign_epi8(wv, wv);                                             \
                float dw = _cvtsh_ss(w[i][j].d);                                                   \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(av[k], wv));             \
                    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));                     \
                    acc[i][k] = _mm256_fmadd_ps(s, _mm256_set1_ps(dw * ad[k][j]), acc[i][k]);      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                g->y[(int64_t)(b + k) * g->ldy + r + i] = kl_avx2_hsum_ps(acc[i][k]);              \
    }

QUANT_TILE(tile_q8_0, kl_block_q8_0, q8_0_block)
QUANT_TILE(tile_q4_0, kl_block_q4_0, q4_0_block)
QUANT_TILE(tile_iq4_nl, kl_block_iq4_nl, iq4_nl_block)

static inline __m256 load_w_f32(const void *w, int64_t c)
{
    return _mm256_loadu_ps((const float *)w + c);
}

static inline __m256 load_w_f16(const void *w, int64_t c)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + c)));
}

static inline __m256 load_w_bf16(const void *w, int64_t c)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + c)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* ESZ: bytes per weight element. The tail (n % 8 columns) is copied into zeroed buffers
 * and goes through the same loads. */
#define FLOAT_TILE(NAME, LOADW, ESZ)                                                               \
    static inline __attribute__((always_inline)) void NAME(const kl_gemm *g, int64_t r, int nr,    \
                                                           int b, int nb)                          \
    {                                                                                              \
        int64_t n = g->cols, n8 = n & ~(int64_t)7;                                                 \
        __m256 acc[RT][BT];                                                                        \
        const uint8_t *w[RT];                                                                      \
        const float *x[BT];                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
        {                                                                                          \
            w[i] = g->W + (size_t)(r + i) * g->w_stride;                                           \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] = _mm256_setzero_ps();  \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) x[k] =                                \
            (const float *)(g->act + (size_t)(b + k) * g->a_stride);                               \
        for (int64_t c = 0; c < n8; c += 8) {                                                      \
            __m256 xv[BT];                                                                         \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) xv[k] =                           \
                _mm256_loadu_ps(x[k] + c);                                                         \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                __m256 wv = LOADW(w[i], c);                                                        \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] =                   \
                    _mm256_fmadd_ps(wv, xv[k], acc[i][k]);                                         \
            }                                                                                      \
        }                                                                                          \
        if (n8 < n) {                                                                              \
            int t = (int)(n - n8);                                                                 \
            __m256 xv[BT];                                                                         \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                float xt[8] = {0};                                                                 \
                memcpy(xt, x[k] + n8, sizeof(float) * (size_t)t);                                  \
                xv[k] = _mm256_loadu_ps(xt);                                                       \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                   \
            {                                                                                      \
                uint8_t wt[32] = {0};                                                              \
                memcpy(wt, w[i] + n8 * ESZ, (size_t)t * ESZ);                                      \
                __m256 wv = LOADW(wt, 0);                                                          \
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[i][k] =                   \
                    _mm256_fmadd_ps(wv, xv[k], acc[i][k]);                                         \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)                                   \
                g->y[(int64_t)(b + k) * g->ldy + r + i] = kl_avx2_hsum_ps(acc[i][k]);              \
    }

FLOAT_TILE(tile_f32, load_w_f32, 4)
FLOAT_TILE(tile_f16, load_w_f16, 2)
FLOAT_TILE(tile_bf16, load_w_bf16, 2)

/* Walks rows [r0, r1) x all activation rows in tiles, one constant-shape call per case. */
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
                    switch (nr * 8 + nb) {                                                         \
                    case 4 * 8 + 2:                                                                \
                        TILE(g, r, 4, b, 2);                                                       \
                        break;                                                                     \
                    case 4 * 8 + 1:                                                                \
                        TILE(g, r, 4, b, 1);                                                       \
                        break;                                                                     \
                    case 3 * 8 + 2:                                                                \
                        TILE(g, r, 3, b, 2);                                                       \
                        break;                                                                     \
                    case 3 * 8 + 1:                                                                \
                        TILE(g, r, 3, b, 1);                                                       \
                        break;                                                                     \
                    case 2 * 8 + 2:                                                                \
                        TILE(g, r, 2, b, 2);                                                       \
                        break;                                                                     \
                    case 2 * 8 + 1:                                                                \
                        TILE(g, r, 2, b, 1);                                                       \
                        break;                                                                     \
                    case 1 * 8 + 2:                                                                \
                        TILE(g, r, 1, b, 2);                                                       \
                        break;                                                                     \
                    default:                                                                       \
                        TILE(g, r, 1, b, 1);                                                       \
                        break;                                                                     \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }

GEMM(kl_avx2_gemm_q8_0, tile_q8_0)
GEMM(kl_avx2_gemm_q4_0, tile_q4_0)
GEMM(kl_avx2_gemm_iq4_nl, tile_iq4_nl)
GEMM(kl_avx2_gemm_f32, tile_f32)
GEMM(kl_avx2_gemm_f16, tile_f16)
GEMM(kl_avx2_gemm_bf16, tile_bf16)
