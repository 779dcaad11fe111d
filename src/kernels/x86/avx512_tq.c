/* kernels/x86/avx512_tq.c: TQ1_0 and TQ2_0 against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h; kernels/ref_tq.c has the layouts). Both decode to q + 1 in 0..2 (TQ2_0's
 * 2-bit fields as they stand, 0..3), unsigned with a bias of 1 that the tile takes out
 * through the activations' sums; the scale of every 16 elements is 1.
 *
 * TQ1_0: a chunk's 64 bytes are gathered from qs[0..31], qs[32..47] and qh (which byte holds
 * which element: ref_tq.c), widened to 16 bits, multiplied by 3^n (the trit's position), kept
 * mod 256, times 3, shifted right by 8: the top base-3 digit. */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st tq1_0_st;
typedef iq_block_st tq2_0_st;

static inline void tq1_0_begin(const kl_block_tq1_0 *w, iq_block_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

static inline void tq2_0_begin(const kl_block_tq2_0 *w, iq_block_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

/* 3^n for each element of chunk c (the byte each comes from: tq1_0_chunk). */
#define P5(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const uint16_t tq1_pow[4][64] = {
    {P5(1), P5(1), P5(3), P5(3)},
    {P5(9), P5(9), P5(27), P5(27)},
    {P5(81), P5(81), P5(1), P5(3)},
    {P5(9), P5(27), P5(81), 1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27},
};
#undef P5

/* Top base-3 digit of each byte of src (32 bytes) times 3^n (16-bit lanes of pw). */
static inline __m256i top_trits(__m256i src, const uint16_t *pw)
{
    __m512i v = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(src), _mm512_loadu_si512(pw));
    v = _mm512_and_si512(v, _mm512_set1_epi16(0xFF));
    v = _mm512_srli_epi16(_mm512_mullo_epi16(v, _mm512_set1_epi16(3)), 8);
    return _mm512_cvtepi16_epi8(v);
}

static inline __m512i tq1_0_chunk(const kl_block_tq1_0 *w, const iq_block_st *st, int c)
{
    (void)st;
    __m256i a = _mm256_loadu_si256((const __m256i *)w->qs);     /* elements 0-159 */
    __m128i b = _mm_loadu_si128((const __m128i *)(w->qs + 32)); /* 160-239 */
    __m256i lo, hi;
    if (c < 2) {
        lo = hi = a;
    } else if (c == 2) {
        lo = a, hi = _mm256_set_m128i(b, b);
    } else {
        uint32_t h;
        memcpy(&h, w->qh, 4);
        lo = _mm256_set_m128i(b, b), hi = _mm256_set_m128i(_mm_set1_epi32((int)h), b);
    }
    __m256i tl = top_trits(lo, tq1_pow[c]), th = top_trits(hi, tq1_pow[c] + 32);
    return _mm512_inserti64x4(_mm512_castsi256_si512(tl), th, 1);
}

/* TQ2_0: chunk c is bits 4(c % 2) .. 4(c % 2) + 3 of qs[32 (c / 2) ..]: two fields of 32. */
static inline __m512i tq2_0_chunk(const kl_block_tq2_0 *w, const iq_block_st *st, int c)
{
    (void)st;
    __m256i x = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * (c / 2)));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 2), 1);
    v = _mm512_srli_epi16(v, (unsigned)(4 * (c % 2)));
    return _mm512_and_si512(v, _mm512_set1_epi8(3));
}

IQ_TILE(tq1_0, kl_block_tq1_0, 1)
IQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0)
IQ_TILE(tq2_0, kl_block_tq2_0, 1)
IQ_GEMM(kl_avx512_gemm_tq2_0, tq2_0)
