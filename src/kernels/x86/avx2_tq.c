/* kernels/x86/avx2_tq.c: TQ1_0 and TQ2_0 against Q8_K activations, AVX2 (TQ1_0's tile is
 * x86/avx2_iq.h, TQ2_0 has its own below; the plan is x86/avx512_tq.c's, 32 elements at a
 * time). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} tq_st;
typedef tq_st tq1_0_st;

static inline void tq1_0_begin(const kl_block_tq1_0 *w, tq_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

/* Byte arithmetic mod 256: a trit's position n is reached by multiplying the byte by 3 n
 * times (two byte adds each), and the top base-3 digit of a byte y, (3 y) >> 8, is
 * [y >= 86] + [y >= 171] (3 y >= 256 from y = 86 on, 3 y >= 512 from y = 171 on), each
 * as min(y - k, 1) with an unsigned saturating subtraction. */
static inline __m256i times3(__m256i v)
{
    return _mm256_add_epi8(v, _mm256_add_epi8(v, v));
}
static inline __m128i times3_128(__m128i v)
{
    return _mm_add_epi8(v, _mm_add_epi8(v, v));
}
static inline __m256i top_trit(__m256i y)
{
    const __m256i one = _mm256_set1_epi8(1);
    __m256i ge86 = _mm256_min_epu8(_mm256_subs_epu8(y, _mm256_set1_epi8(85)), one);
    __m256i ge171 = _mm256_min_epu8(_mm256_subs_epu8(y, _mm256_set1_epi8((char)170)), one);
    return _mm256_add_epi8(ge86, ge171);
}

/* Chunk c's bytes times 3^n: c 0-4: qs[0..31] times 3^c; 5, 6: qs[32..47] times 1 | 3 and
 * 9 | 27; 7: qs[32..47] times 81 | qh[0..3] four times, times 1, 3, 9, 27 (4 bytes each). */
static inline __m256i tq1_0_chunk32(const kl_block_tq1_0 *w, const tq_st *st, int c, __m256i *sg)
{
    (void)st, (void)sg;
    __m256i y;
    if (c < 5) {
        y = _mm256_loadu_si256((const __m256i *)w->qs);
        for (int i = 0; i < c; i++)
            y = times3(y);
    } else {
        __m256i z = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->qs + 32)));
        __m256i z3 = times3(z), z9 = times3(z3), z27 = times3(z9);
        if (c == 5) {
            y = _mm256_blend_epi32(z, z3, 0xF0);
        } else if (c == 6) {
            y = _mm256_blend_epi32(z9, z27, 0xF0);
        } else {
            uint32_t qh;
            memcpy(&qh, w->qh, 4);
            __m128i h = _mm_set1_epi32((int)qh), h3 = times3_128(h), h9 = times3_128(h3);
            __m128i hv = _mm_blend_epi32(_mm_blend_epi32(h, h3, 0x2), h9, 0x4);
            hv = _mm_blend_epi32(hv, times3_128(h9), 0x8);
            y = _mm256_set_m128i(hv, _mm256_castsi256_si128(times3(z27)));
        }
    }
    return top_trit(y);
}

IQ2_TILE_UNIT(tq1_0, kl_block_tq1_0)
IQ2_GEMM(kl_avx2_gemm_tq1_0, tq1_0)

/* TQ2_0's own tile, one weight row by up to TQ2_BT activation rows: a 32-byte load of the
 * weights gives four chunks (its four 2-bit fields), each decoded once for the tile; the pair
 * sums add up in int16 over the block and the activations' 16-element sums come off there
 * (|lane| <= 8 * 2 * 3 * 127 + 16 * 128 < 2^15) before one vpmaddwd. The int32 lanes are the
 * IQ2 tile's (x86/avx2_iq.h): madd(s - bsums, 1) = madd(s, 1) - madd(bsums, 1) lane by lane,
 * so the same bits. Every (weight row, activation row) pair runs the same instructions
 * whatever the tile's height: batch invariant. */
#define TQ2_BT 4

static inline __attribute__((always_inline)) void tq2_0_tile(const kl_gemm *g, int64_t r, int b,
                                                             int nb)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const kl_block_tq2_0 *w = (const kl_block_tq2_0 *)(g->W + (size_t)r * g->w_stride);
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    size_t as = g->a_stride;
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256 acc[TQ2_BT];
    _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nblk; j++) {
        __m256i s[TQ2_BT];
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) s[k] = _mm256_setzero_si256();
        const int8_t *aj = (const int8_t *)a0 + j * KL_QKK;
        _Pragma("GCC unroll 4") for (int h = 0; h < 2; h++)
        {
            __m256i x = _mm256_loadu_si256((const __m256i *)(w[j].qs + 32 * h));
            _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++)
            {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(x, 2 * l), m3);
                _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)
                {
                    __m256i a = _mm256_loadu_si256(
                        (const __m256i *)(aj + (size_t)k * as + 128 * h + 32 * l));
                    s[k] = _mm256_add_epi16(s[k], _mm256_maddubs_epi16(q, a));
                    __asm__("" : "+x"(s[k])); /* keeps GCC from regrouping the adds (spills) */
                }
            }
        }
        float d = _cvtsh_ss(w[j].d);
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)
        {
            const uint8_t *ak = a0 + (size_t)k * as;
            __m256i bsum = _mm256_loadu_si256((const __m256i *)(kl_act_q8_k_bsums(ak, n) + 16 * j));
            __m256i i32 = _mm256_madd_epi16(_mm256_sub_epi16(s[k], bsum), ones);
            __m256 dd = _mm256_set1_ps(d * kl_act_q8_k_d(ak, n)[j]);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), dd, acc[k]);
        }
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] =
        kl_avx2_hsum_ps(acc[k]);
}

void kl_avx2_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1)
{
    for (int64_t rc = r0; rc < r1; rc += IQ2_CHUNK)
        for (int b = 0; b < g->B; b += TQ2_BT) {
            int nb = g->B - b < TQ2_BT ? g->B - b : TQ2_BT;
            int64_t re = rc + IQ2_CHUNK < r1 ? rc + IQ2_CHUNK : r1;
            for (int64_t r = rc; r < re; r++)
                switch (nb) {
                case 4:
                    tq2_0_tile(g, r, b, 4);
                    break;
                case 3:
                    tq2_0_tile(g, r, b, 3);
                    break;
                case 2:
                    tq2_0_tile(g, r, b, 2);
                    break;
                default:
                    tq2_0_tile(g, r, b, 1);
                    break;
                }
        }
}
