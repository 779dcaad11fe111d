/* kernels/x86/avx512_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h; kernels/ref_iq1.c has the layouts). A chunk of 64 elements is 8 grid
 * entries of 8 values -1, 0, 1 (one 64-bit gather) as the integers 8 g + shift, shift +-1
 * per 32 (IQ1_S) or per 8 (IQ1_M) elements: signed, |q| <= 9. */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} iq1_st;
typedef iq1_st iq1_s_st;
typedef iq1_st iq1_m_st;

/* 8 g + shift for the 8 grid entries idx, shift -1 where the byte's bit is set in neg. */
static inline __m512i grid8(__m256i idx, uint64_t neg)
{
    __m512i g = _mm512_i32gather_epi64(idx, (const void *)kl_iq1s_grid, 8);
    g = _mm512_add_epi8(g, g), g = _mm512_add_epi8(g, g), g = _mm512_add_epi8(g, g);
    return _mm512_add_epi8(g,
                           _mm512_mask_blend_epi8(neg, _mm512_set1_epi8(1), _mm512_set1_epi8(-1)));
}

static inline void iq1_s_begin(const kl_block_iq1_s *w, iq1_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq1_s(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m512i iq1_s_chunk(const kl_block_iq1_s *w, const iq1_st *st, int c)
{
    (void)st;
    uint16_t h0 = w->qh[2 * c], h1 = w->qh[2 * c + 1];
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    /* entry l of sub-block ib: bits 3l..3l+2 of qh[ib] are index bits 8-10 */
    __m256i hi = _mm256_srlv_epi32(_mm256_setr_epi32(h0, h0, h0, h0, h1, h1, h1, h1),
                                   _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9));
    hi = _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(7)), 8);
    uint64_t neg = (h0 & 0x8000 ? 0xFFFFFFFFull : 0) | (h1 & 0x8000 ? 0xFFFFFFFFull << 32 : 0);
    return grid8(_mm256_or_si256(lo, hi), neg);
}

static inline void iq1_m_begin(const kl_block_iq1_m *w, iq1_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq1_m(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
}

/* IQ1_M: per 8 elements a nibble of qh (low then high of each byte): index bits 8-10 and the
 * shift's sign */
static inline __m512i iq1_m_chunk(const kl_block_iq1_m *w, const iq1_st *st, int c)
{
    (void)st;
    uint32_t h;
    memcpy(&h, w->qh + 4 * c, 4); /* nibble l: entry l of the chunk */
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    __m256i nib = _mm256_srlv_epi32(_mm256_set1_epi32((int)h),
                                    _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256i idx =
        _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(7)), 8));
    /* the shift's sign, bit 3 of nibble l, over elements 8l..8l+7: byte e of lane e / 16 is
     * byte e / 16 of h (vpshufb stays in its lane), tested at bit 3 or 7 */
    __m512i hb = _mm512_shuffle_epi8(
        _mm512_set1_epi32((int)h),
        _mm512_set_epi32(0x03030303, 0x03030303, 0x03030303, 0x03030303, 0x02020202, 0x02020202,
                         0x02020202, 0x02020202, 0x01010101, 0x01010101, 0x01010101, 0x01010101, 0,
                         0, 0, 0));
    __mmask64 neg = _mm512_test_epi8_mask(
        hb, _mm512_set_epi64(-0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll, -0x7F7F7F7F7F7F7F80ll,
                             0x0808080808080808ll, -0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll,
                             -0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll));
    return grid8(idx, neg);
}

IQ_TILE(iq1_s, kl_block_iq1_s, 0)
IQ_GEMM(kl_avx512_gemm_iq1_s, iq1_s)
IQ_TILE(iq1_m, kl_block_iq1_m, 0)
IQ_GEMM(kl_avx512_gemm_iq1_m, iq1_m)
