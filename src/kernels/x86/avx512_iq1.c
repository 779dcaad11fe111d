/* kernels/x86/avx512_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h; kernels/ref_iq1.c has the layouts). A chunk of 64 elements is 8 grid
 * entries of 8 values -1, 0, 1 (8 loads) as the integers 8 g + shift, shift +-1
 * per 32 (IQ1_S) or per 8 (IQ1_M) elements: signed, |q| <= 9, given as magnitudes and a sign
 * mask. Scales are unpacked in registers (the scalar kl_iq_scales_* and a store/load cost a
 * store-forwarding stall per block). Needs no VBMI: the avx512vbmi table keeps these. */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st iq1_s_st;
typedef iq_block_st iq1_m_st;

/* 8 grid entries by plain loads, not vpgatherdq (slower on Zen 4) */
static inline __m512i lut8(__m256i idx)
{
    _Alignas(32) uint32_t i[8];
    _mm256_store_si256((__m256i *)i, idx);
    const uint64_t *g = kl_iq1s_grid;
    return _mm512_setr_epi64((long long)g[i[0]], (long long)g[i[1]], (long long)g[i[2]],
                             (long long)g[i[3]], (long long)g[i[4]], (long long)g[i[5]],
                             (long long)g[i[6]], (long long)g[i[7]]);
}

/* 8 g + shift, shift -1 where neg1 is set, +1 elsewhere: magnitudes and signs */
static inline __m512i shifted(__m512i g, __mmask64 neg1, __mmask64 *neg)
{
    g = _mm512_and_si512(_mm512_slli_epi16(g, 3), _mm512_set1_epi8((char)0xF8)); /* 8 g */
    g = _mm512_add_epi8(g, _mm512_mask_blend_epi8(neg1, _mm512_set1_epi8(1), _mm512_set1_epi8(-1)));
    *neg = _mm512_movepi8_mask(g);
    return _mm512_abs_epi8(g);
}

static inline void iq1_s_begin(const kl_block_iq1_s *w, iq_block_st *st)
{
    __m128i qh = _mm_loadu_si128((const __m128i *)w->qh);
    __m128i s = _mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7));
    st->s16 = odd16(twice16(_mm256_cvtepu16_epi32(s)));
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m512i iq1_s_chunk_ms(const kl_block_iq1_s *w, const iq_block_st *st, int c,
                                     __mmask64 *neg)
{
    (void)st;
    uint32_t h0 = w->qh[2 * c], h1 = w->qh[2 * c + 1];
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    /* entry l of sub-block ib: bits 3l..3l+2 of qh[ib] are index bits 8-10 */
    __m256i hi = _mm256_srlv_epi32(
        _mm256_setr_epi32((int)h0, (int)h0, (int)h0, (int)h0, (int)h1, (int)h1, (int)h1, (int)h1),
        _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9));
    hi = _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(7)), 8);
    __m512i g = lut8(_mm256_or_si256(lo, hi));
    uint64_t s0 = h0 >> 15, s1 = h1 >> 15; /* the shift's sign per 32 elements */
    return shifted(g, (0 - s0) >> 32 | (0 - s1) << 32, neg);
}

static inline void iq1_m_begin(const kl_block_iq1_m *w, iq_block_st *st)
{
    __m256i sc = _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)w->scales));
    __m256i s = _mm256_permutexvar_epi16(
        _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), sc);
    s = _mm256_srlv_epi16(s, _mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9));
    st->s16 = odd16(_mm256_and_si256(s, _mm256_set1_epi16(7)));
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
}

/* IQ1_M: nibble l of the chunk's 32 bits of qh is entry l's index bits 8-10 and shift sign */
static inline __m512i iq1_m_chunk_ms(const kl_block_iq1_m *w, const iq_block_st *st, int c,
                                     __mmask64 *neg)
{
    (void)st;
    uint32_t h;
    memcpy(&h, w->qh + 4 * c, 4);
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    __m256i nib = _mm256_srlv_epi32(_mm256_set1_epi32((int)h),
                                    _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256i idx =
        _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(7)), 8));
    __m512i g = lut8(idx);
    /* the shift's sign, bit 3 of nibble l, over elements 8l..8l+7: byte e of lane e / 16 is
     * byte e / 16 of h (vpshufb stays in its lane), tested at bit 3 or 7 */
    __m512i hb = _mm512_shuffle_epi8(
        _mm512_set1_epi32((int)h),
        _mm512_set_epi32(0x03030303, 0x03030303, 0x03030303, 0x03030303, 0x02020202, 0x02020202,
                         0x02020202, 0x02020202, 0x01010101, 0x01010101, 0x01010101, 0x01010101, 0,
                         0, 0, 0));
    __mmask64 neg1 = _mm512_test_epi8_mask(
        hb, _mm512_set_epi64(-0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll, -0x7F7F7F7F7F7F7F80ll,
                             0x0808080808080808ll, -0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll,
                             -0x7F7F7F7F7F7F7F80ll, 0x0808080808080808ll));
    return shifted(g, neg1, neg);
}

IQ_TILE_MS(iq1_s, kl_block_iq1_s, 0)
IQ_GEMM(kl_avx512_gemm_iq1_s, iq1_s)
IQ_TILE_MS(iq1_m, kl_block_iq1_m, 0)
IQ_GEMM(kl_avx512_gemm_iq1_m, iq1_m)
