/* kernels/x86/avx2_kquant.c: AVX2 matmuls for the K-quants (Q2_K Q3_K Q4_K Q5_K Q6_K)
 * against Q8_K activations, on the file's own blocks, in tiles of RT weight rows x BT
 * activation rows (the same instructions for every pair whatever the tile: batch invariant).
 *
 * A super-block is read 32 columns at a time as unsigned quants u (Q3_K q + 4, Q6_K q + 32)
 * in element order; vpmaddubsw multiplies them by the signed activations into int16 pairs
 * (|pair| <= 2 * 63 * 127: no saturation), vpmaddwd by the 16-column groups' scales (16
 * int16: the low 128 bits group 2c's, the high group 2c+1's) sums into int32 lanes, exact.
 * The offset term comes from the activations' 16-column sums: sum_t m_t bs_t times dmin
 * (Q2_K Q4_K Q5_K), or sum_t sc_t bs_t times 4 (Q3_K) or 32 (Q6_K) taken out of the integer
 * sum. Then d * d_a (and -dmin * d_a) in float per super-block: llama.cpp's integer sums,
 * the same numbers to float rounding. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_reduce.h"

#define RT 4 /* weight rows per tile */
#define BT 2 /* activation rows per tile */

enum { Q2, Q3, Q4, Q5, Q6 };

static inline __attribute__((always_inline)) size_t block_bytes(int K)
{
    return K == Q2   ? sizeof(kl_block_q2_k)
           : K == Q3 ? sizeof(kl_block_q3_k)
           : K == Q4 ? sizeof(kl_block_q4_k)
           : K == Q5 ? sizeof(kl_block_q5_k)
                     : sizeof(kl_block_q6_k);
}

/* A block's group scales as 16 int16 (group t in lane t), its offset weights (mins, or the
 * scales again for Q3_K/Q6_K) likewise, and its fp16 d and dmin. */
typedef struct {
    __m256i sc, m;
    float d, dmin;
} kscales;

static inline __attribute__((always_inline)) void block_scales(int K, const uint8_t *blk,
                                                               kscales *o)
{
    if (K == Q4 || K == Q5) {
        const kl_block_q4_k *b4 = (const kl_block_q4_k *)blk;
        const uint8_t *q = K == Q4 ? b4->scales : ((const kl_block_q5_k *)blk)->scales;
        uint16_t d = K == Q4 ? b4->d : ((const kl_block_q5_k *)blk)->d;
        uint16_t dm = K == Q4 ? b4->dmin : ((const kl_block_q5_k *)blk)->dmin;
        uint32_t u0, u1, u2;
        memcpy(&u0, q, 4), memcpy(&u1, q + 4, 4), memcpy(&u2, q + 8, 4);
        uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
        uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
        uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
        __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
        /* each 32-column scale twice: groups 2s and 2s + 1 */
        o->sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
        o->m = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v));
        o->d = _cvtsh_ss(d), o->dmin = _cvtsh_ss(dm);
    } else if (K == Q2) {
        const kl_block_q2_k *b = (const kl_block_q2_k *)blk;
        __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        o->sc = _mm256_and_si256(v, _mm256_set1_epi16(0x0F));
        o->m = _mm256_srli_epi16(v, 4);
        o->d = _cvtsh_ss(b->d), o->dmin = _cvtsh_ss(b->dmin);
    } else if (K == Q3) {
        const kl_block_q3_k *b = (const kl_block_q3_k *)blk;
        uint32_t a[3];
        memcpy(a, b->scales, 12);
        /* low nibbles: bytes 0-7 (scales 0-7), high nibbles (8-15); top bits from bytes 8-11 */
        __m128i v =
            _mm_set_epi32((int)(((a[1] >> 4) & 0x0f0f0f0fu) | (((a[2] >> 6) & 0x03030303u) << 4)),
                          (int)(((a[0] >> 4) & 0x0f0f0f0fu) | (((a[2] >> 4) & 0x03030303u) << 4)),
                          (int)((a[1] & 0x0f0f0f0fu) | (((a[2] >> 2) & 0x03030303u) << 4)),
                          (int)((a[0] & 0x0f0f0f0fu) | ((a[2] & 0x03030303u) << 4)));
        o->sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(v), _mm256_set1_epi16(32));
        o->m = o->sc;
        o->d = _cvtsh_ss(b->d), o->dmin = 0.0f;
    } else {
        const kl_block_q6_k *b = (const kl_block_q6_k *)blk;
        o->sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        o->m = o->sc;
        o->d = _cvtsh_ss(b->d), o->dmin = 0.0f;
    }
}

/* The scales of chunk c (columns 32c..32c+31): group 2c in lanes 0-7, 2c + 1 in 8-15. */
static inline __m256i chunk_scales(__m256i sc, int c)
{
    __m128i half = c < 4 ? _mm256_castsi256_si128(sc) : _mm256_extracti128_si256(sc, 1);
    int lo = (2 * c) % 8, hi = lo + 1;
    __m256i both = _mm256_set_m128i(half, half);
    __m256i ctl = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 * (2 * hi + 1) + 2 * hi)),
                                   _mm_set1_epi16((short)(0x0100 * (2 * lo + 1) + 2 * lo)));
    return _mm256_shuffle_epi8(both, ctl);
}

/* Unsigned quants of chunk c (columns 32c..+31) of a block, in element order. */
static inline __attribute__((always_inline)) __m256i chunk_quants(int K, const uint8_t *blk, int c)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    if (K == Q4 || K == Q5) { /* element 64cc + l: nibble (l >= 32) of qs[32cc + l % 32] */
        const uint8_t *qs =
            K == Q4 ? ((const kl_block_q4_k *)blk)->qs : ((const kl_block_q5_k *)blk)->qs;
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 2)));
        __m256i u = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(v, 4) : v, m4);
        if (K == Q5) { /* bit c of qh[l] */
            __m256i h = _mm256_loadu_si256((const __m256i *)((const kl_block_q5_k *)blk)->qh);
            __m256i hb = _mm256_and_si256(_mm256_srli_epi16(h, c), _mm256_set1_epi8(1));
            u = _mm256_or_si256(u, _mm256_slli_epi16(hb, 4));
        }
        return u;
    }
    if (K == Q2 || K == Q3) { /* element 128h + 32k + l: bits 2k of qs[32h + l] */
        const uint8_t *qs =
            K == Q2 ? ((const kl_block_q2_k *)blk)->qs : ((const kl_block_q3_k *)blk)->qs;
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 4)));
        __m256i u = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), m2);
        if (K == Q3) { /* bit c of hmask[l]: + 4 */
            __m256i h = _mm256_loadu_si256((const __m256i *)((const kl_block_q3_k *)blk)->hmask);
            __m256i hb = _mm256_and_si256(_mm256_srli_epi16(h, c), _mm256_set1_epi8(1));
            u = _mm256_or_si256(u, _mm256_slli_epi16(hb, 2));
        }
        return u;
    }
    /* Q6_K: element 128h + 32k + l: nibble (k >= 2) of ql[64h + 32 (k & 1) + l], top bits 2k
     * of qh[32h + l] */
    const kl_block_q6_k *b = (const kl_block_q6_k *)blk;
    int h = c / 4, k = c % 4;
    __m256i v = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (k & 1)));
    __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(v, 4) : v, m4);
    __m256i q = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m2);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int nr, int b,
                                                       int nb, int K)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const size_t bb = block_bytes(K);
    __m256 acc[RT][BT];
    const uint8_t *w[RT];
    const int8_t *aq[BT];
    const float *ad[BT];
    const int16_t *bs[BT];
    _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
    {
        w[i] = g->W + (size_t)(r + i) * g->w_stride;
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) acc[i][k] = _mm256_setzero_ps();
    }
    _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
    {
        const uint8_t *a = g->act + (size_t)(b + k) * g->a_stride;
        aq[k] = (const int8_t *)a, ad[k] = kl_act_q8_k_d(a, n), bs[k] = kl_act_q8_k_bsums(a, n);
    }
    for (int64_t j = 0; j < nblk; j++) {
        kscales ks[RT];
        __m256i isum[RT][BT];
        _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
        {
            /* the next tile's rows at this super-block (avx2_gemm.c says why) */
            for (size_t l = 0; l < bb; l += 64)
                _mm_prefetch((const char *)w[i] + (size_t)j * bb + l + RT * g->w_stride,
                             _MM_HINT_T0);
            block_scales(K, w[i] + (size_t)j * bb, &ks[i]);
            _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) isum[i][k] =
                _mm256_setzero_si256();
        }
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            __m256i av[BT];
            _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) av[k] =
                _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
            {
                __m256i u = chunk_quants(K, w[i] + (size_t)j * bb, c);
                __m256i sc = chunk_scales(ks[i].sc, c);
                _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++) isum[i][k] = _mm256_add_epi32(
                    isum[i][k], _mm256_madd_epi16(_mm256_maddubs_epi16(u, av[k]), sc));
            }
        }
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
        {
            __m256i bsum = _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j));
            float da = ad[k][j];
            _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
            {
                __m256i off = _mm256_madd_epi16(bsum, ks[i].m);
                __m256i s = isum[i][k];
                if (K == Q3) s = _mm256_sub_epi32(s, _mm256_slli_epi32(off, 2));
                if (K == Q6) s = _mm256_sub_epi32(s, _mm256_slli_epi32(off, 5));
                acc[i][k] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(ks[i].d * da), acc[i][k]);
                if (K == Q2 || K == Q4 || K == Q5)
                    acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(off),
                                                _mm256_set1_ps(-ks[i].dmin * da), acc[i][k]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < nr; i++)
        _Pragma("GCC unroll 2") for (int k = 0; k < nb; k++)
            g->y[(int64_t)(b + k) * g->ldy + r + i] = kl_avx2_hsum_ps(acc[i][k]);
}

#define CHUNK 32
#define GEMM(NAME, K)                                                                              \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1);                                           \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t rc = r0; rc < r1; rc += CHUNK)                                                \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                int64_t re = rc + CHUNK < r1 ? rc + CHUNK : r1;                                    \
                for (int64_t r = rc; r < re; r += RT) {                                            \
                    int nr = re - r < RT ? (int)(re - r) : RT;                                     \
                    if (nr == RT && nb == 2)                                                       \
                        tile(g, r, RT, b, 2, K);                                                   \
                    else if (nr == RT)                                                             \
                        tile(g, r, RT, b, 1, K);                                                   \
                    else                                                                           \
                        tile(g, r, nr, b, nb, K);                                                  \
                }                                                                                  \
            }                                                                                      \
    }

GEMM(kl_avx2_gemm_q2_k, Q2)
GEMM(kl_avx2_gemm_q3_k, Q3)
GEMM(kl_avx2_gemm_q4_k, Q4)
GEMM(kl_avx2_gemm_q5_k, Q5)
GEMM(kl_avx2_gemm_q6_k, Q6)

void kl_avx2_types_kquant(kl_isa *isa)
{
    isa->types[KL_Q2_K].gemm = kl_avx2_gemm_q2_k;
    isa->types[KL_Q3_K].gemm = kl_avx2_gemm_q3_k;
    isa->types[KL_Q4_K].gemm = kl_avx2_gemm_q4_k;
    isa->types[KL_Q5_K].gemm = kl_avx2_gemm_q5_k;
    isa->types[KL_Q6_K].gemm = kl_avx2_gemm_q6_k;
}
