/* kernels/x86/avx512_packed_legacy.c: Q4_1, Q5_0 and Q5_1 over weights repacked at load into
 * panels of 16 rows (avx512_packed.c's scheme for Q4_0: one register holds 4 columns of 16
 * rows; vpdpbusd with 4 broadcast activation bytes; 16 outputs per result vector).
 *
 * Panel record per block of 32 columns (kernels/pack.c packs it):
 *   4 regs [16 rows][4 bytes]: the block's nibbles, low columns 4q + i, high 16 + 4q + i
 *   (Q5) 1 reg [16][4]: bit g is bit 4 of column 4g + i (the fifth bit)
 *   d [16] fp16; (Q4_1 Q5_1) m [16] fp16
 * Quants go in unsigned (Q5_0 as q, 0..31); per activation row and block: d_w d_a sum(q a),
 * Q5_0 with -16 sum(a) in the integer sum, Q4_1/Q5_1 plus m_w s_a (the Q8_1 block's
 * fp16-rounded d * sum): llama.cpp's integer sums and terms, float order aside. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx512_dpbusd.h"
#include "kernels/x86/packed_prefetch.h"

#define BT  8
#define REG (KL_PR * 4)

enum { Q41, Q50, Q51 };

static inline __attribute__((always_inline)) bool has_hb(int K)
{
    return K != Q41;
}
static inline __attribute__((always_inline)) bool has_m(int K)
{
    return K != Q50;
}
static inline __attribute__((always_inline)) size_t off_d(int K)
{
    return (size_t)(has_hb(K) ? 5 : 4) * REG;
}
static inline __attribute__((always_inline)) size_t rec_bytes(int K)
{
    return off_d(K) + KL_PR * 2 * (has_m(K) ? 2 : 1);
}

static inline __mmask16 out_mask(int64_t rows, int64_t r)
{
    int64_t n = rows - r;
    return n >= KL_PR ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* One panel (16 rows from r) x activation rows [b, b + NB), over all blocks. */
static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int b, int NB,
                                                       int K)
{
    int64_t n = g->cols, nblk = n / KL_QK;
    const size_t rb = rec_bytes(K);
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    const int8_t *aq[BT];
    const float *ad[BT], *as[BT];
    const int32_t *ai[BT];
    __m512 out[BT];
    _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_0_d(a, n), ai[k] = kl_act_q8_0_c(a, n);
        as[k] = has_m(K) ? kl_act_q8_1_s(a, n) : NULL;
        out[k] = _mm512_setzero_ps();
    }
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    for (int64_t j = 0; j < nblk; j++, P += rb) {
        __m512i w[8];
        /* The first tile over the panel asks KL_PF_AHEAD ahead (x86/packed_prefetch.h): left to
         * the hardware prefetcher, Q5_1 streamed at 21-22 GB/s (1 thread, B=1) and 66 from cache;
         * with it 30-31 (Q4_1, Q5_0: 30-34 either way). */
        if (b == 0) kl_pf_share(P, rb, 0, 1);
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
        {
            __m512i v = _mm512_loadu_si512(P + q * REG);
            w[q] = _mm512_and_si512(v, lo4);
            w[q + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        }
        if (has_hb(K)) { /* bit g -> bit 4 of w[g] */
            __m512i hb = _mm512_loadu_si512(P + 4 * REG);
            const __m512i bit = _mm512_set1_epi8(0x10);
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
            {
                __m512i x = q < 4 ? _mm512_slli_epi16(hb, (unsigned)(4 - q))
                                  : _mm512_srli_epi16(hb, (unsigned)(q - 4));
                w[q] = _mm512_or_si512(w[q], _mm512_and_si512(x, bit));
            }
        }
        __m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P + off_d(K))));
        __m512 ms =
            has_m(K)
                ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P + off_d(K) + KL_PR * 2)))
                : ws;
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        {
            const int8_t *a = aq[k] + j * KL_QK;
            __m512i acc =
                K == Q50 ? _mm512_set1_epi32(ai[k][j] >> 3) /* -16 sum */ : _mm512_setzero_si512();
            /* w[q]: columns 4q..4q+3 (q < 4) and 16 + 4(q - 4).. */
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) acc =
                kl_dpbusd_bcast(acc, w[q], (a + (q < 4 ? 4 * q : 16 + 4 * (q - 4))));
            out[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                                     _mm512_mul_ps(ws, _mm512_set1_ps(ad[k][j])), out[k]);
            if (has_m(K)) out[k] = _mm512_fmadd_ps(ms, _mm512_set1_ps(as[k][j]), out[k]);
        }
    }
    __mmask16 m = out_mask(g->rows, r);
    _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        _mm512_mask_storeu_ps(g->y + (int64_t)(b + k) * g->ldy + r, m, out[k]);
}

#define TILE_NB(K, g, r, b, nb)                                                                    \
    switch (nb) { /* constant tile heights */                                                      \
    case 8:                                                                                        \
        tile(g, r, b, 8, K);                                                                       \
        break;                                                                                     \
    case 7:                                                                                        \
        tile(g, r, b, 7, K);                                                                       \
        break;                                                                                     \
    case 6:                                                                                        \
        tile(g, r, b, 6, K);                                                                       \
        break;                                                                                     \
    case 5:                                                                                        \
        tile(g, r, b, 5, K);                                                                       \
        break;                                                                                     \
    case 4:                                                                                        \
        tile(g, r, b, 4, K);                                                                       \
        break;                                                                                     \
    case 3:                                                                                        \
        tile(g, r, b, 3, K);                                                                       \
        break;                                                                                     \
    case 2:                                                                                        \
        tile(g, r, b, 2, K);                                                                       \
        break;                                                                                     \
    default:                                                                                       \
        tile(g, r, b, 1, K);                                                                       \
        break;                                                                                     \
    }

#define PACKED_GEMM(NAME, K)                                                                       \
    static void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                     \
    {                                                                                              \
        for (int64_t r = r0; r < r1; r += KL_PR)                                                   \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                TILE_NB(K, g, r, b, nb)                                                            \
            }                                                                                      \
    }

PACKED_GEMM(gemm_packed_q4_1, Q41)
PACKED_GEMM(gemm_packed_q5_0, Q50)
PACKED_GEMM(gemm_packed_q5_1, Q51)

void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n);

static void quant_act_q8_1(const float *x, void *dst, int64_t n)
{
    kl_avx512_quant_act_q8_0(x, dst, n);
    kl_act_q8_1_finish(x, dst, n);
}

void kl_avx512_types_packed_legacy(kl_isa *isa)
{
    isa->types[KL_Q4_1].quant_act = quant_act_q8_1;
    isa->types[KL_Q5_1].quant_act = quant_act_q8_1;
    isa->types[KL_Q5_0].quant_act = kl_avx512_quant_act_q8_0;
    isa->types[KL_Q4_1].gemm_packed = gemm_packed_q4_1;
    isa->types[KL_Q5_0].gemm_packed = gemm_packed_q5_0;
    isa->types[KL_Q5_1].gemm_packed = gemm_packed_q5_1;
}
