/* kernels/x86/avx2_tq.c: TQ1_0 and TQ2_0 against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h; the plan is x86/avx512_tq.c's, 32 elements at a time). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} tq_st;
typedef tq_st tq1_0_st;
typedef tq_st tq2_0_st;

static inline void tq1_0_begin(const kl_block_tq1_0 *w, tq_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

static inline void tq2_0_begin(const kl_block_tq2_0 *w, tq_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

/* 3^n for each element of chunk c (c 0-4: qs[0..31]; 5-6: qs[32..47] twice; 7: qs[32..47]
 * then qh[0..3] four times). */
#define P16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const uint16_t tq1_pow[8][32] = {
    {P16(1), P16(1)},   {P16(3), P16(3)},
    {P16(9), P16(9)},   {P16(27), P16(27)},
    {P16(81), P16(81)}, {P16(1), P16(3)},
    {P16(9), P16(27)},  {P16(81), 1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27},
};
#undef P16

/* Top base-3 digit of each byte of src (16 bytes) times 3^n (pw). */
static inline __m256i top_trits16(__m128i src, const uint16_t *pw)
{
    __m256i v =
        _mm256_mullo_epi16(_mm256_cvtepu8_epi16(src), _mm256_loadu_si256((const __m256i *)pw));
    v = _mm256_and_si256(v, _mm256_set1_epi16(0xFF));
    return _mm256_srli_epi16(_mm256_mullo_epi16(v, _mm256_set1_epi16(3)), 8);
}

static inline __m256i tq1_0_chunk32(const kl_block_tq1_0 *w, const tq_st *st, int c, __m256i *sg)
{
    (void)st, (void)sg;
    __m128i lo, hi;
    if (c < 5) {
        lo = _mm_loadu_si128((const __m128i *)w->qs),
        hi = _mm_loadu_si128((const __m128i *)(w->qs + 16));
    } else {
        lo = _mm_loadu_si128((const __m128i *)(w->qs + 32)), hi = lo;
        if (c == 7) {
            uint32_t h;
            memcpy(&h, w->qh, 4);
            hi = _mm_set1_epi32((int)h);
        }
    }
    __m256i a = top_trits16(lo, tq1_pow[c]), b = top_trits16(hi, tq1_pow[c] + 16);
    /* packus works per 128-bit lane: a0 b0 a1 b1 -> a0 a1 b0 b1 */
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8);
}

static inline __m256i tq2_0_chunk32(const kl_block_tq2_0 *w, const tq_st *st, int c, __m256i *sg)
{
    (void)st, (void)sg;
    __m256i x = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * (c / 4)));
    return _mm256_and_si256(_mm256_srli_epi16(x, 2 * (c % 4)), _mm256_set1_epi8(3));
}

IQ2_TILE(tq1_0, kl_block_tq1_0, 1)
IQ2_GEMM(kl_avx2_gemm_tq1_0, tq1_0)
IQ2_TILE(tq2_0, kl_block_tq2_0, 1)
IQ2_GEMM(kl_avx2_gemm_tq2_0, tq2_0)
