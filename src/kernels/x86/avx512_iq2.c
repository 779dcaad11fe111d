/* kernels/x86/avx512_iq2.c: IQ2_XXS, IQ2_XS and IQ2_S against Q8_K activations, AVX-512 (the
 * tile is x86/avx512_iq.h; kernels/ref_iq2.c has the layouts). A chunk of 64 elements is 8
 * grid entries of 8 magnitudes, one 64-bit gather, and 8 sign bytes, which as they stand are
 * the chunk's __mmask64 (bit j of byte l: element 8l + j). */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st iq2_xxs_st;
typedef iq_block_st iq2_xs_st;
typedef iq_block_st iq2_s_st;

static inline __m512i signed_grid(__m256i idx, const uint64_t *grid, uint64_t neg)
{
    __m512i g = _mm512_i32gather_epi64(idx, (const void *)grid, 8);
    return _mm512_mask_sub_epi8(g, neg, _mm512_setzero_si512(), g);
}

static inline void iq2_xxs_begin(const kl_block_iq2_xxs *w, iq_block_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq2_xxs(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m512i iq2_xxs_chunk(const kl_block_iq2_xxs *w, const iq_block_st *st, int c)
{
    (void)st;
    uint32_t aux[4]; /* sub-block 2c: indices, signs; 2c + 1: indices, signs */
    memcpy(aux, w->qs + 8 * c, 16);
    __m256i idx = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)aux[2], (int)aux[0]));
    uint64_t neg = 0;
    for (int l = 0; l < 8; l++)
        neg |= (uint64_t)kl_iq_ksigns[(aux[1 + 2 * (l / 4)] >> (7 * (l % 4))) & 127] << (8 * l);
    return signed_grid(idx, kl_iq2xxs_grid, neg);
}

static inline void iq2_xs_begin(const kl_block_iq2_xs *w, iq_block_st *st)
{
    int16_t v[16];
    kl_iq_scales_nibbles(w->scales, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m512i iq2_xs_chunk(const kl_block_iq2_xs *w, const iq_block_st *st, int c)
{
    (void)st;
    __m128i q = _mm_loadu_si128((const __m128i *)(w->qs + 8 * c));
    __m256i idx = _mm256_cvtepu16_epi32(_mm_and_si128(q, _mm_set1_epi16(511)));
    uint64_t neg = 0;
    for (int l = 0; l < 8; l++)
        neg |= (uint64_t)kl_iq_ksigns[w->qs[8 * c + l] >> 9] << (8 * l);
    return signed_grid(idx, kl_iq2xs_grid, neg);
}

static inline void iq2_s_begin(const kl_block_iq2_s *w, iq_block_st *st)
{
    int16_t v[16];
    kl_iq_scales_nibbles(w->scales, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

/* IQ2_S: index k of sub-block ib takes bits 2(k % 4).. of qh[ib] as bits 8-9 */
static inline __m512i iq2_s_chunk(const kl_block_iq2_s *w, const iq_block_st *st, int c)
{
    (void)st;
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    __m256i hi =
        _mm256_setr_epi32(w->qh[2 * c], w->qh[2 * c], w->qh[2 * c], w->qh[2 * c], w->qh[2 * c + 1],
                          w->qh[2 * c + 1], w->qh[2 * c + 1], w->qh[2 * c + 1]);
    hi = _mm256_and_si256(_mm256_sllv_epi32(hi, _mm256_setr_epi32(8, 6, 4, 2, 8, 6, 4, 2)),
                          _mm256_set1_epi32(0x300));
    uint64_t neg;
    memcpy(&neg, w->qs + KL_QKK / 8 + 8 * c, 8);
    return signed_grid(_mm256_or_si256(lo, hi), kl_iq2s_grid, neg);
}

IQ_TILE(iq2_xxs, kl_block_iq2_xxs, 0)
IQ_GEMM(kl_avx512_gemm_iq2_xxs, iq2_xxs)
IQ_TILE(iq2_xs, kl_block_iq2_xs, 0)
IQ_GEMM(kl_avx512_gemm_iq2_xs, iq2_xs)
IQ_TILE(iq2_s, kl_block_iq2_s, 0)
IQ_GEMM(kl_avx512_gemm_iq2_s, iq2_s)
