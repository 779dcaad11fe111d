/* kernels/x86/avx512_packed_kquant.c: the K-quants (Q2_K Q3_K Q4_K Q5_K Q6_K, and IQ4_XS) over
 * weights repacked at load into panels of 16 rows (as avx512_packed.c does for Q8_0/Q4_0): one
 * register holds 4 columns of 16 rows, vpdpbusd with 4 broadcast activation bytes gives 16
 * rows' dots, a weight register serves up to 8 activation rows, and no horizontal sums.
 *
 * Every K-quant is read as value = S_t * u - M_t, u unsigned (Q3_K q + 4, Q6_K q + 32), per
 * group t of 16 columns (Q4_K/Q5_K: of 32) with S_t = d * sc_t. Per super-block and
 * activation row (Q8_K: int8 a, scale d_a, 16-column sums bs):
 *   sum_t S_t * dot_t(u, a)  in float (S_t * dot_t is exact: 11 + 8 bits times < 2^17),
 *   minus the offset term, exact in int32 by vpdpwssd: sum_t m_t * bs_t (Q2_K, Q4_K, Q5_K:
 *   times dmin) or sum_t sc_t * bs_t (Q3_K: times 4 d, Q6_K: times 32 d),
 * both times d_a and added to the row's result. The integer sums are llama.cpp's; the float
 * order differs from the reference's (within rounding).
 *
 * IQ4_XS (Q4_K's nibbles, the file's 6-bit scales; pack_kquant.h) is signed: the nibbles go
 * through a byte shuffle to kl_iq4nl_values[u] + 128 (1..241, vpdpbusd's unsigned operand), each
 * sub-block's dot is multiplied by its scale in int32 (vpmulld) and the bias comes back out
 * through the activation sums, -128 sc_s (bs_2s + bs_2s+1) by vpdpwssd into the same
 * accumulator: the reference's exact integer sum per super-block (true value below 2^28, so the
 * wrapping int32 steps land on it). Then the reference's float steps, (float)isum * (d * d_a)
 * added per super-block without FMA: the scalar reference's bits at every batch size. Against
 * IQ4_XS's rows over the file's layout (avx512_iq4.c, which the model ran before), 1 thread,
 * 2048 x 2048, alternated: B=1 25.1-25.6 against 14.4 GB/s of the file's bytes (the record is
 * 2368 bytes per 16 rows then), B=16 312 against 122 GOP/s, B=512 190 against 61-70. The
 * record's header is now the file's 6-bit scales (2176 bytes, the file's size): their decode
 * costs 6-7% in cache (B=1 from L3: 44.5 -> 41.5 GB/s of the file's bytes), and streamed it
 * reads 8% fewer bytes (model tg32 below).
 *
 * The panel layout and its packer: kernels/pack_kquant.h, pack_kquant.c. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/pack_kquant.h"
#include "kernels/x86/avx512_dpbusd.h"
#include "kernels/x86/packed_prefetch.h"

#define BT 8 /* activation rows per tile */
/* The first tile over a panel asks for the record's bytes KL_PF_AHEAD ahead
 * (x86/packed_prefetch.h), one eighth per sub-block, in order. Left to the hardware prefetcher,
 * one activation row streamed Q6_K's panels at half the read bandwidth, 20-21 GB/s on one
 * thread while the same tile ran 70 GB/s from cache: its loads reach each sub-block's lines
 * out of order (the compiler folds them into the shifts, high bits first). Streamed 8192x2048,
 * 1 thread, B=1, GB/s of the file's bytes, alternated: Q6_K 20.4-20.8 -> 40.0-40.2, Q5_K 31-32
 * -> 40-41, Q4_K 35-36 -> 39-40, Q3_K 28-29 -> 39-40, Q2_K 34-35 -> 39 (distance 4 KB 41-43 on
 * Q6_K in a micro-run, 8 KB 45-49, 16 KB 38-57 and 35-36 in bench-kernels). */

/* The 8 registers of unsigned quants of sub-block s: w[g] = columns 32s + 4g .. + 3. */
static inline __attribute__((always_inline)) void load_sub(int K, const uint8_t *P, int s,
                                                           __m512i w[8])
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    if (K == Q4 || K == Q5 || K == Q6 || K == IQ4X) {
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)
        {
            __m512i v = _mm512_loadu_si512(P + off_lo(K, s) + (size_t)h * REG);
            w[h] = _mm512_and_si512(v, m4);
            w[h + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
    } else {
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
        {
            __m512i v = _mm512_loadu_si512(P + off_lo(K, s) + (size_t)h * REG);
            w[4 * h] = _mm512_and_si512(v, m2);
            w[4 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), m2);
            w[4 * h + 2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m2);
            w[4 * h + 3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), m2);
        }
    }
    if (K == Q5 || K == Q3) { /* bit g of hb -> bit 4 (Q5_K) or bit 2 (Q3_K) of w[g] */
        __m512i hb = _mm512_loadu_si512(P + off_hi(K, s));
        const int to = K == Q5 ? 4 : 2;
        const __m512i bit = _mm512_set1_epi8((char)(1 << to));
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)
        {
            __m512i x = g < to ? _mm512_slli_epi16(hb, (unsigned)(to - g))
                               : _mm512_srli_epi16(hb, (unsigned)(g - to));
            w[g] = _mm512_or_si512(w[g], _mm512_and_si512(x, bit));
        }
    }
    if (K == Q6) { /* bits 2k of h2 reg h -> bits 4-5 of w[4h + k] */
        const __m512i hi2 = _mm512_set1_epi8(0x30);
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
        {
            __m512i v = _mm512_loadu_si512(P + off_hi(K, s) + (size_t)h * REG);
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
            {
                __m512i x = k < 2 ? _mm512_slli_epi16(v, (unsigned)(4 - 2 * k))
                                  : _mm512_srli_epi16(v, (unsigned)(2 * k - 4));
                w[4 * h + k] = _mm512_or_si512(w[4 * h + k], _mm512_and_si512(x, hi2));
            }
        }
    }
    if (K == IQ4X) { /* kl_iq4nl_values[u] + 128: the table with its sign bits flipped */
        const __m512i lut = _mm512_xor_si512(
            _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kl_iq4nl_values)),
            _mm512_set1_epi8((char)0x80));
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) w[g] = _mm512_shuffle_epi8(lut, w[g]);
    }
}

/* The sub-block's scale pair as 16 rows x 2 int16 (the vpdpwssd operand of the offset
 * term, against the activation sums of columns 32s..+15 and +16..+31), and the float scales
 * d * sc of its groups (S[1] unused for the 32-column Q4_K/Q5_K). */
static inline __attribute__((always_inline)) __m512i sub_scales(int K, const uint8_t *P, int s,
                                                                __m512 dv, __m512 S[2])
{
    __m256i raw = _mm256_loadu_si256((const __m256i *)(P + OFF_SM + (size_t)s * KL_PR * 2));
    const __m512i lo16 = _mm512_set1_epi32(0xFFFF);
    if (K == Q4 || K == Q5) { /* (sc, m): S = d sc; pairs (m, m) */
        __m512i p = _mm512_cvtepu8_epi16(raw);
        S[0] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_and_si512(p, lo16)));
        __m512i m = _mm512_srli_epi32(p, 16);
        return _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
    }
    if (K == Q2) { /* (sc | m << 4) x 2: pairs (m, m'); S from the low nibbles */
        __m512i p = _mm512_cvtepu8_epi16(raw);
        __m512i sc = _mm512_and_si512(p, _mm512_set1_epi16(0x0F));
        S[0] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_and_si512(sc, lo16)));
        S[1] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 16)));
        return _mm512_srli_epi16(p, 4);
    }
    /* Q3_K, Q6_K: signed (sc, sc'): the pairs themselves */
    __m512i p = _mm512_cvtepi8_epi16(raw);
    S[0] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(p, 16), 16)));
    S[1] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_srai_epi32(p, 16)));
    return p;
}

/* IQ4_XS's sub-block scale from the record's sl (16 rows x 32 bits) and sh (16 bits, zero
 * extended, shifted up by 4): sc_s per row in int32 (for vpmulld), and the pairs (-128 sc_s,
 * -128 sc_s) of its bias term against (bs_2s, bs_2s+1) (|-128 sc| <= 4096: int16). */
static inline __attribute__((always_inline)) __m512i iq4_scales(__m512i sl, __m512i sh4, int s,
                                                                __m512i *sc)
{
    __m512i ls = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32(sl, (unsigned)(4 * s)), _mm512_set1_epi32(15)),
        _mm512_and_si512(_mm512_srli_epi32(sh4, (unsigned)(2 * s)), _mm512_set1_epi32(0x30)));
    *sc = _mm512_sub_epi32(ls, _mm512_set1_epi32(32));
    /* (32 - ls) << 7, its low int16 twice */
    return _mm512_shuffle_epi8(
        _mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(32), ls), 7),
        _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13)));
}

static inline __mmask16 out_mask(int64_t rows, int64_t r)
{
    int64_t n = rows - r;
    return n >= KL_PR ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* One panel (16 rows from r) x activation rows [b, b + NB), over all super-blocks. */
static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int b, int NB,
                                                       int K)
{
    int64_t n = g->cols, nsb = n / KL_QKK;
    const size_t rb = rec_bytes(K);
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    const int8_t *aq[BT];
    const float *ad[BT];
    const int16_t *as[BT];
    __m512 out[BT];
    _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_k_d(a, n), as[k] = kl_act_q8_k_bsums(a, n);
        out[k] = _mm512_setzero_ps();
    }
    const bool wide = K == Q4 || K == Q5; /* one scale per 32 columns */
    const bool pf = b == 0;               /* later tiles find the panel cached */
    for (int64_t j = 0; j < nsb; j++, P += rb) {
        __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P + OFF_D)));
        __m512 acc[BT];
        __m512i ioff[BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        {
            acc[k] = _mm512_setzero_ps();
            ioff[k] = _mm512_setzero_si512();
        }
        __m512i sl = _mm512_setzero_si512(), sh4 = sl; /* IQ4_XS's scales */
        if (K == IQ4X) {
            sl = _mm512_loadu_si512(P + OFF_SL);
            sh4 = _mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(P + OFF_SH))), 4);
        }
        for (int s = 0; s < 8; s++) {
            __m512i w[8], sc;
            __m512 S[2];
            if (pf) kl_pf_share(P, rb, s, 8);
            load_sub(K, P, s, w);
            __m512i pairs = K == IQ4X ? iq4_scales(sl, sh4, s, &sc) : sub_scales(K, P, s, dv, S);
            _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
            {
                const int8_t *a = aq[k] + j * KL_QKK + 32 * s;
                __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                {
                    i0 = kl_dpbusd_bcast(i0, w[q], a + 4 * q);
                    i1 = kl_dpbusd_bcast(i1, w[q + 4], a + 16 + 4 * q);
                }
                if (K == IQ4X) { /* ioff is the exact integer sum */
                    ioff[k] =
                        _mm512_add_epi32(ioff[k], _mm512_mullo_epi32(_mm512_add_epi32(i0, i1), sc));
                } else if (wide) {
                    acc[k] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), S[0], acc[k]);
                } else {
                    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), S[0], acc[k]);
                    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), S[1], acc[k]);
                }
                int32_t bs2;
                memcpy(&bs2, as[k] + 16 * j + 2 * s, 4);
                ioff[k] = _mm512_dpwssd_epi32(ioff[k], pairs, _mm512_set1_epi32(bs2));
            }
        }
        if (K == IQ4X) { /* the reference's steps: out + (float)isum * (d * d_a), rounded twice */
            _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++) out[k] =
                _mm512_add_ps(out[k], _mm512_mul_ps(_mm512_cvtepi32_ps(ioff[k]),
                                                    _mm512_mul_ps(dv, _mm512_set1_ps(ad[k][j]))));
            continue;
        }
        /* the offset term's scale: -dmin, or -(4 | 32) d */
        __m512 mv = K == Q3 ? _mm512_mul_ps(dv, _mm512_set1_ps(-4.0f))
                    : K == Q6
                        ? _mm512_mul_ps(dv, _mm512_set1_ps(-32.0f))
                        : _mm512_sub_ps(_mm512_setzero_ps(), _mm512_cvtph_ps(_mm256_loadu_si256(
                                                                 (const __m256i *)(P + OFF_DMIN))));
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        {
            __m512 da = _mm512_set1_ps(ad[k][j]);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ioff[k]), mv, acc[k]);
            out[k] = _mm512_fmadd_ps(acc[k], da, out[k]);
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

/* Panels of rows [r0, r1) (r0 a multiple of 16) x all activation rows, BT at a time. */
#define PACKED_GEMM(NAME, K)                                                                       \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1);                                           \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t r = r0; r < r1; r += KL_PR)                                                   \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                TILE_NB(K, g, r, b, nb)                                                            \
            }                                                                                      \
    }

PACKED_GEMM(kl_avx512_gemm_packed_q2_k, Q2)
PACKED_GEMM(kl_avx512_gemm_packed_q3_k, Q3)
PACKED_GEMM(kl_avx512_gemm_packed_q4_k, Q4)
PACKED_GEMM(kl_avx512_gemm_packed_q5_k, Q5)
PACKED_GEMM(kl_avx512_gemm_packed_q6_k, Q6)
PACKED_GEMM(kl_avx512_gemm_packed_iq4_xs, IQ4X)

/* Fills the packed gemms of the five K-quants and IQ4_XS (their packers come with the AVX2
 * table). */
void kl_avx512_types_packed_kquant(kl_isa *isa)
{
    isa->types[KL_Q2_K].gemm_packed = kl_avx512_gemm_packed_q2_k;
    isa->types[KL_Q3_K].gemm_packed = kl_avx512_gemm_packed_q3_k;
    isa->types[KL_Q4_K].gemm_packed = kl_avx512_gemm_packed_q4_k;
    isa->types[KL_Q5_K].gemm_packed = kl_avx512_gemm_packed_q5_k;
    isa->types[KL_Q6_K].gemm_packed = kl_avx512_gemm_packed_q6_k;
    isa->types[KL_IQ4_XS].gemm_packed = kl_avx512_gemm_packed_iq4_xs;
}
