/* kernels/x86/avx512_iq3.c: IQ3_XXS and IQ3_S against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h). A chunk of 64 elements is 16 grid indices, one 32-bit gather of 4
 * magnitudes each, and 64 sign bits, which are a byte mask as they stand: bit j of sign byte l
 * is element 8l + j, so the 8 sign bytes of a chunk are its __mmask64. */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st iq3_xxs_st;
typedef iq_block_st iq3_s_st;

/* IQ3_XXS: per 32, a uint32 of 4 x 7 sign bits and the scale in bits 28-31, after the indices */
static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq_block_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq3_xxs(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.25f * _cvtsh_ss(w->d);
}

static inline __m512i iq3_xxs_chunk(const kl_block_iq3_xxs *w, const iq_block_st *st, int c)
{
    (void)st;
    __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w->qs + 16 * c)));
    __m512i g = _mm512_i32gather_epi32(idx, (const void *)kl_iq3xxs_grid, 4);
    uint32_t aux[2];
    memcpy(aux, w->qs + KL_QKK / 4 + 8 * c, 8);
    uint64_t neg = 0;
    for (int l = 0; l < 8; l++)
        neg |= (uint64_t)kl_iq_ksigns[(aux[l / 4] >> (7 * (l % 4))) & 127] << (8 * l);
    return _mm512_mask_sub_epi8(g, neg, _mm512_setzero_si512(), g);
}

static inline void iq3_s_begin(const kl_block_iq3_s *w, iq_block_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq3_s(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = _cvtsh_ss(w->d);
}

/* IQ3_S: index k of sub-block ib takes bit k of qh[ib] as its ninth bit */
static inline __m512i iq3_s_chunk(const kl_block_iq3_s *w, const iq_block_st *st, int c)
{
    (void)st;
    __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w->qs + 16 * c)));
    __mmask16 hi = (__mmask16)(w->qh[2 * c] | w->qh[2 * c + 1] << 8);
    idx = _mm512_mask_or_epi32(idx, hi, idx, _mm512_set1_epi32(256));
    __m512i g = _mm512_i32gather_epi32(idx, (const void *)kl_iq3s_grid, 4);
    uint64_t neg;
    memcpy(&neg, w->signs + 8 * c, 8);
    return _mm512_mask_sub_epi8(g, neg, _mm512_setzero_si512(), g);
}

IQ_TILE(iq3_xxs, kl_block_iq3_xxs, 0)
IQ_GEMM(kl_avx512_gemm_iq3_xxs, iq3_xxs)
IQ_TILE(iq3_s, kl_block_iq3_s, 0)
IQ_GEMM(kl_avx512_gemm_iq3_s, iq3_s)
