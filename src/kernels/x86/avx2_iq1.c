/* kernels/x86/avx2_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h; the plan is x86/avx512_iq1.c's, 32 elements at a time). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} iq1_st;
typedef iq1_st iq1_s_st;
typedef struct {
    __m256i s16;
    float d;
    __m256i shift; /* lane c: the +-1 shifts of chunk c's 4 groups of 8, a byte each */
} iq1_m_st;

/* 8 g + shift for 4 grid entries; shift is +-1 per byte. */
static inline __m256i grid4(unsigned i0, unsigned i1, unsigned i2, unsigned i3, __m256i shift)
{
    __m256i g = iq2_lut64x4(kl_iq1s_grid, i0, i1, i2, i3);
    g = _mm256_add_epi8(g, g), g = _mm256_add_epi8(g, g), g = _mm256_add_epi8(g, g);
    return _mm256_add_epi8(g, shift);
}

static inline void iq1_s_begin(const kl_block_iq1_s *w, iq1_st *st)
{
    /* bits 12-14 of qh[ib], the scale of both its sixteens */
    __m256i qh = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w->qh));
    qh = _mm256_and_si256(_mm256_srli_epi32(qh, 12), _mm256_set1_epi32(7));
    st->s16 = iq2_odd16(iq2_twice16(qh));
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m256i iq1_s_chunk32(const kl_block_iq1_s *w, const iq1_st *st, int c, __m256i *sg)
{
    (void)st, (void)sg;
    const uint8_t *q = w->qs + 4 * c;
    unsigned h = w->qh[c];
    return grid4(q[0] | (h << 8 & 0x700), q[1] | (h << 5 & 0x700), q[2] | (h << 2 & 0x700),
                 q[3] | (h >> 1 & 0x700), _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
}

static inline uint64_t scale_words(const kl_block_iq1_m *w)
{
    uint64_t v;
    memcpy(&v, w->scales, 8);
    return v;
}

static inline void iq1_m_begin(const kl_block_iq1_m *w, iq1_m_st *st)
{
    /* lane t: word t / 4 of scales, its bits 3 (t % 4).. brought to bits 13-15 by a multiply
     * (AVX2 has no per-lane 16-bit shift), then down */
    __m256i v = _mm256_set1_epi64x((long long)scale_words(w));
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4,
                                                5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7));
    v = _mm256_mullo_epi16(v, _mm256_setr_epi16(1 << 13, 1 << 10, 1 << 7, 1 << 4, 1 << 13, 1 << 10,
                                                1 << 7, 1 << 4, 1 << 13, 1 << 10, 1 << 7, 1 << 4,
                                                1 << 13, 1 << 10, 1 << 7, 1 << 4));
    st->s16 = iq2_odd16(_mm256_srli_epi16(v, 13));
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
    /* group 2i's shift sign is bit 3 of qh[i], group 2i + 1's bit 7: to bit 3 of bytes 2i and
     * 2i + 1, then -1 where set, +1 where clear */
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w->qh));
    h = _mm256_and_si256(_mm256_or_si256(h, _mm256_slli_epi16(h, 4)), _mm256_set1_epi16(0x0808));
    st->shift = _mm256_or_si256(_mm256_cmpeq_epi8(h, _mm256_set1_epi8(8)), _mm256_set1_epi8(1));
}

static inline __m256i iq1_m_chunk32(const kl_block_iq1_m *w, const iq1_m_st *st, int c, __m256i *sg)
{
    (void)sg;
    const uint8_t *q = w->qs + 4 * c;
    unsigned h0 = w->qh[2 * c], h1 = w->qh[2 * c + 1];
    /* group byte l of lane c over elements 8l..8l+7 */
    __m256i shift = _mm256_permutevar8x32_epi32(st->shift, _mm256_set1_epi32(c));
    shift = _mm256_shuffle_epi8(shift,
                                _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
                                                 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    return grid4(q[0] | (h0 << 8 & 0x700), q[1] | (h0 << 4 & 0x700), q[2] | (h1 << 8 & 0x700),
                 q[3] | (h1 << 4 & 0x700), shift);
}

IQ2_TILE(iq1_s, kl_block_iq1_s)
IQ2_GEMM(kl_avx2_gemm_iq1_s, iq1_s)
IQ2_TILE(iq1_m, kl_block_iq1_m)
IQ2_GEMM(kl_avx2_gemm_iq1_m, iq1_m)
