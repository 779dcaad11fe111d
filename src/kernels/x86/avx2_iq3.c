/* kernels/x86/avx2_iq3.c: IQ3_XXS and IQ3_S against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h). A chunk of 32 elements is one sub-block: 8 grid indices (one 32-bit gather
 * of 4 magnitudes each) and 4 sign bytes, spread to one byte per element and applied as
 * (g ^ m) - m. */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} iq3_st;
typedef iq3_st iq3_xxs_st;
typedef iq3_st iq3_s_st;

static inline __m256i odd_scales(const int s[8])
{
    int16_t v[16];
    for (int ib = 0; ib < 8; ib++)
        v[2 * ib] = v[2 * ib + 1] = (int16_t)(2 * s[ib] + 1);
    return _mm256_loadu_si256((const __m256i *)v);
}

/* Magnitudes g with the signs of 4 sign bytes (byte l: elements 8l..8l+7, bit j element 8l+j). */
static inline __m256i apply_signs(__m256i g, uint32_t signs)
{
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    __m256i m = _mm256_shuffle_epi8(_mm256_set1_epi32((int)signs), spread);
    m = _mm256_cmpeq_epi8(_mm256_and_si256(m, bit), bit);
    return _mm256_sub_epi8(_mm256_xor_si256(g, m), m);
}

static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq3_st *st)
{
    uint32_t aux[8];
    memcpy(aux, w->qs + KL_QKK / 4, sizeof aux);
    int s[8];
    for (int ib = 0; ib < 8; ib++)
        s[ib] = (int)(aux[ib] >> 28);
    st->s16 = odd_scales(s);
    st->d = 0.25f * _cvtsh_ss(w->d);
}

static inline __m256i iq3_xxs_chunk32(const kl_block_iq3_xxs *w, const iq3_st *st, int c)
{
    (void)st;
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    __m256i g = _mm256_i32gather_epi32((const int *)kl_iq3xxs_grid, idx, 4);
    uint32_t aux;
    memcpy(&aux, w->qs + KL_QKK / 4 + 4 * c, 4);
    uint32_t signs = 0;
    for (int l = 0; l < 4; l++)
        signs |= (uint32_t)kl_iq_ksigns[(aux >> (7 * l)) & 127] << (8 * l);
    return apply_signs(g, signs);
}

static inline void iq3_s_begin(const kl_block_iq3_s *w, iq3_st *st)
{
    int s[8];
    for (int ib = 0; ib < 8; ib++)
        s[ib] = (w->scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
    st->s16 = odd_scales(s);
    st->d = _cvtsh_ss(w->d);
}

static inline __m256i iq3_s_chunk32(const kl_block_iq3_s *w, const iq3_st *st, int c)
{
    (void)st;
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * c)));
    /* bit k of qh[c] is the ninth bit of index k */
    __m256i hi =
        _mm256_sllv_epi32(_mm256_set1_epi32(w->qh[c]), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1));
    idx = _mm256_or_si256(idx, _mm256_and_si256(hi, _mm256_set1_epi32(256)));
    __m256i g = _mm256_i32gather_epi32((const int *)kl_iq3s_grid, idx, 4);
    uint32_t signs;
    memcpy(&signs, w->signs + 4 * c, 4);
    return apply_signs(g, signs);
}

IQ2_TILE(iq3_xxs, kl_block_iq3_xxs, 0)
IQ2_GEMM(kl_avx2_gemm_iq3_xxs, iq3_xxs)
IQ2_TILE(iq3_s, kl_block_iq3_s, 0)
IQ2_GEMM(kl_avx2_gemm_iq3_s, iq3_s)
