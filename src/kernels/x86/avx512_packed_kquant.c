/* kernels/x86/avx512_packed_kquant.c: the K-quants (Q2_K Q3_K Q4_K Q5_K Q6_K) over weights
 * repacked at load into panels of 16 rows (as avx512_packed.c does for Q8_0/Q4_0): one
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
 * Panel record per super-block (16 rows; absent rows zero, so are their scales), read front
 * to back: a header, then each sub-block's bits together, so the kernel's loads form one
 * sequential stream (with the bit planes in regions of their own, Q3_K, Q5_K and Q6_K read
 * three interleaved streams per record, and streamed 3-4x slower than from cache):
 *   d     all             [16] fp16
 *   dmin  Q2_K Q4_K Q5_K  [16] fp16 (zero for the others: the header stays 64-byte aligned)
 *   sm    all             [8 sub-blocks][16 rows][2 bytes]: Q4_K/Q5_K (sc_s, m_s); Q2_K the
 *                         groups 2s, 2s+1 (sc | m << 4 each); Q3_K/Q6_K signed sc_2s, sc_2s+1
 * then per sub-block s of 32 columns:
 *   q4  Q4_K Q5_K Q6_K  [4 regs][16 rows][4 bytes]: low nibbles columns 32s + 4h + i, high
 *                       nibbles columns 32s + 16 + 4h + i (h < 4)
 *   q2  Q2_K Q3_K       [2 regs][16][4]: bits 2k of reg h: columns 32s + 4(4h + k) + i
 *   hb  Q5_K Q3_K       [16][4]: bit g: the quant's next bit of columns 32s + 4g + i
 *   h2  Q6_K            [2][16][4]: bits 2k of reg h: bits 4-5 of columns 32s + 4(4h+k) + i */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx512_dpbusd.h"

#define PR  16 /* rows per panel */
#define BT  8  /* activation rows per tile */
#define REG (PR * 4)

enum { Q2, Q3, Q4, Q5, Q6 };

static int kind_of(kl_dtype t)
{
    switch (t) {
    case KL_Q2_K:
        return Q2;
    case KL_Q3_K:
        return Q3;
    case KL_Q4_K:
        return Q4;
    case KL_Q5_K:
        return Q5;
    default:
        return Q6;
    }
}

/* Byte offsets of a record's parts, and its size. */
#define OFF_D    0
#define OFF_DMIN (PR * 2)
#define OFF_SM   (PR * 4)
#define OFF_SUB  (OFF_SM + 8 * PR * 2)

/* Registers of one sub-block: its low bits, then its high bits. */
static inline __attribute__((always_inline)) int low_regs(int K)
{
    return K == Q2 || K == Q3 ? 2 : 4;
}
static inline __attribute__((always_inline)) int sub_regs(int K)
{
    return low_regs(K) + (K == Q6 ? 2 : K == Q5 || K == Q3 ? 1 : 0);
}
static inline __attribute__((always_inline)) size_t off_lo(int K, int s)
{
    return OFF_SUB + (size_t)(s * sub_regs(K)) * REG;
}
static inline __attribute__((always_inline)) size_t off_hi(int K, int s)
{
    return off_lo(K, s) + (size_t)low_regs(K) * REG;
}
static inline __attribute__((always_inline)) size_t rec_bytes(int K)
{
    return off_lo(K, 8);
}

/* ---- packing (at load, scalar) ---- */

/* Writes one row's super-block v into record o as row r of the panel. */
static void pack_row(int K, const kl_ksb *v, int r, uint8_t *o)
{
    for (int e = 0; e < KL_QKK; e++) {
        int s = e / 32, c = e % 32, u = v->u[e];
        int i = c % 4, g = c / 4; /* column group g (0..7) of sub-block s, column i in it */
        size_t at = (size_t)r * 4 + (size_t)i;
        if (K == Q4 || K == Q5 || K == Q6) /* nibbles: reg g % 4, high half for g >= 4 */
            o[off_lo(K, s) + (size_t)(g % 4) * REG + at] |=
                (uint8_t)((u & 0xF) << (g >= 4 ? 4 : 0));
        if (K == Q2 || K == Q3)
            o[off_lo(K, s) + (size_t)(g / 4) * REG + at] |= (uint8_t)((u & 3) << (2 * (g % 4)));
        if (K == Q5) o[off_hi(K, s) + at] |= (uint8_t)((u >> 4) << g);
        if (K == Q3) o[off_hi(K, s) + at] |= (uint8_t)((u >> 2) << g);
        if (K == Q6)
            o[off_hi(K, s) + (size_t)(g / 4) * REG + at] |= (uint8_t)((u >> 4) << (2 * (g % 4)));
    }
    uint8_t *sm = o + OFF_SM;
    for (int s = 0; s < 8; s++) {
        uint8_t *p = sm + (size_t)(s * PR + r) * 2;
        if (K == Q4 || K == Q5) {
            p[0] = (uint8_t)v->sc[2 * s];
            p[1] = (uint8_t)v->m[2 * s];
        } else if (K == Q2) {
            p[0] = (uint8_t)(v->sc[2 * s] | v->m[2 * s] << 4);
            p[1] = (uint8_t)(v->sc[2 * s + 1] | v->m[2 * s + 1] << 4);
        } else {
            p[0] = (uint8_t)(int8_t)v->sc[2 * s];
            p[1] = (uint8_t)(int8_t)v->sc[2 * s + 1];
        }
    }
    memcpy(o + OFF_D + (size_t)r * 2, &v->d, 2);
    if (K == Q2 || K == Q4 || K == Q5) memcpy(o + OFF_DMIN + (size_t)r * 2, &v->dmin, 2);
}

size_t kl_avx512_pack_bytes_kquant(kl_dtype t, int64_t rows, int64_t cols);
void kl_avx512_pack_kquant(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                           int64_t p1, void *dst);

size_t kl_avx512_pack_bytes_kquant(kl_dtype t, int64_t rows, int64_t cols)
{
    return (size_t)((rows + PR - 1) / PR) * (size_t)(cols / KL_QKK) * rec_bytes(kind_of(t));
}

/* Packs panels [p0, p1) of W (type t). */
void kl_avx512_pack_kquant(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                           int64_t p1, void *dst)
{
    int K = kind_of(t);
    int64_t nsb = cols / KL_QKK;
    size_t stride = kl_dtype_row_bytes(t, cols), bb = kl_dtype_get(t)->block_bytes,
           rb = rec_bytes(K);
    kl_ksb v;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t j = 0; j < nsb; j++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)p * (size_t)nsb + (size_t)j) * rb;
            memset(o, 0, rb);
            for (int r = 0; r < PR && p * PR + r < rows; r++) {
                kl_ksb_unpack(t, (const uint8_t *)W + (size_t)(p * PR + r) * stride + j * bb, &v);
                pack_row(K, &v, r, o);
            }
        }
}

/* ---- the matmul ---- */

/* The 8 registers of unsigned quants of sub-block s: w[g] = columns 32s + 4g .. + 3. */
static inline __attribute__((always_inline)) void load_sub(int K, const uint8_t *P, int s,
                                                           __m512i w[8])
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    if (K == Q4 || K == Q5 || K == Q6) {
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
}

/* The sub-block's scale pair as 16 rows x 2 int16 (the vpdpwssd operand of the offset
 * term, against the activation sums of columns 32s..+15 and +16..+31), and the float scales
 * d * sc of its groups (S[1] unused for the 32-column Q4_K/Q5_K). */
static inline __attribute__((always_inline)) __m512i sub_scales(int K, const uint8_t *P, int s,
                                                                __m512 dv, __m512 S[2])
{
    __m256i raw = _mm256_loadu_si256((const __m256i *)(P + OFF_SM + (size_t)s * PR * 2));
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

static inline __mmask16 out_mask(int64_t rows, int64_t r)
{
    int64_t n = rows - r;
    return n >= PR ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* One panel (16 rows from r) x activation rows [b, b + NB), over all super-blocks. */
static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int b, int NB,
                                                       int K)
{
    int64_t n = g->cols, nsb = n / KL_QKK;
    const size_t rb = rec_bytes(K);
    const uint8_t *P = g->W + (size_t)(r / PR) * g->w_stride;
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
    for (int64_t j = 0; j < nsb; j++, P += rb) {
        __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P + OFF_D)));
        __m512 acc[BT];
        __m512i ioff[BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
        {
            acc[k] = _mm512_setzero_ps();
            ioff[k] = _mm512_setzero_si512();
        }
        for (int s = 0; s < 8; s++) {
            __m512i w[8];
            __m512 S[2];
            load_sub(K, P, s, w);
            __m512i pairs = sub_scales(K, P, s, dv, S);
            _Pragma("GCC unroll 8") for (int k = 0; k < NB; k++)
            {
                const int8_t *a = aq[k] + j * KL_QKK + 32 * s;
                __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                {
                    i0 = kl_dpbusd_bcast(i0, w[q], a + 4 * q);
                    i1 = kl_dpbusd_bcast(i1, w[q + 4], a + 16 + 4 * q);
                }
                if (wide) {
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
        for (int64_t r = r0; r < r1; r += PR)                                                      \
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

#define PACK_FNS(T, SUF)                                                                           \
    static size_t pack_bytes_##SUF(int64_t rows, int64_t cols)                                     \
    {                                                                                              \
        return kl_avx512_pack_bytes_kquant(T, rows, cols);                                         \
    }                                                                                              \
    static void pack_##SUF(const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,      \
                           void *dst)                                                              \
    {                                                                                              \
        kl_avx512_pack_kquant(T, W, rows, cols, p0, p1, dst);                                      \
    }

PACK_FNS(KL_Q2_K, q2_k)
PACK_FNS(KL_Q3_K, q3_k)
PACK_FNS(KL_Q4_K, q4_k)
PACK_FNS(KL_Q5_K, q5_k)
PACK_FNS(KL_Q6_K, q6_k)

/* Fills the packed entries of the five K-quants. */
void kl_avx512_types_packed_kquant(kl_isa *isa)
{
    isa->types[KL_Q2_K].pack_bytes = pack_bytes_q2_k;
    isa->types[KL_Q2_K].pack = pack_q2_k;
    isa->types[KL_Q2_K].gemm_packed = kl_avx512_gemm_packed_q2_k;
    isa->types[KL_Q3_K].pack_bytes = pack_bytes_q3_k;
    isa->types[KL_Q3_K].pack = pack_q3_k;
    isa->types[KL_Q3_K].gemm_packed = kl_avx512_gemm_packed_q3_k;
    isa->types[KL_Q4_K].pack_bytes = pack_bytes_q4_k;
    isa->types[KL_Q4_K].pack = pack_q4_k;
    isa->types[KL_Q4_K].gemm_packed = kl_avx512_gemm_packed_q4_k;
    isa->types[KL_Q5_K].pack_bytes = pack_bytes_q5_k;
    isa->types[KL_Q5_K].pack = pack_q5_k;
    isa->types[KL_Q5_K].gemm_packed = kl_avx512_gemm_packed_q5_k;
    isa->types[KL_Q6_K].pack_bytes = pack_bytes_q6_k;
    isa->types[KL_Q6_K].pack = pack_q6_k;
    isa->types[KL_Q6_K].gemm_packed = kl_avx512_gemm_packed_q6_k;
}
