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

static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq3_st *st)
{
    /* bits 28-31 of sub-block ib's word */
    __m256i a = _mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 4));
    st->s16 = iq2_odd16(iq2_twice16(_mm256_srli_epi32(a, 28)));
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
    return iq2_apply_signs(g, signs);
}

static inline void iq3_s_begin(const kl_block_iq3_s *w, iq3_st *st)
{
    uint32_t sc;
    memcpy(&sc, w->scales, 4);
    st->s16 = iq2_odd16(iq2_twice16(iq2_nibbles32(sc)));
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
    return iq2_apply_signs(g, signs);
}

IQ2_TILE(iq3_xxs, kl_block_iq3_xxs, 0)
IQ2_GEMM(kl_avx2_gemm_iq3_xxs, iq3_xxs)
IQ2_TILE(iq3_s, kl_block_iq3_s, 0)
IQ2_GEMM(kl_avx2_gemm_iq3_s, iq3_s)
