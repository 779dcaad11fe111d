/* kernels/x86/avx2_iq2.c: IQ2_XXS, IQ2_XS and IQ2_S against Q8_K activations, AVX2 (the tile
 * is x86/avx2_iq.h; the plan is x86/avx512_iq2.c's, 32 elements at a time: 4 grid entries of
 * magnitudes loaded into one register, 4 sign bytes spread to +-1 per element for the
 * activations). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
    __m256i signs; /* IQ2_XXS, IQ2_XS: lane c: chunk c's 4 sign bytes */
} iq2_st;
typedef iq2_st iq2_xxs_st;
typedef iq2_st iq2_xs_st;
typedef iq2_st iq2_s_st;

/* IQ2_XS, IQ2_S: a byte per 32 elements, the low nibble for its first 16 (group t in lane t) */
static inline __m256i nibble_scales(const uint8_t sc[8])
{
    __m128i x = _mm_loadl_epi64((const __m128i *)sc), m4 = _mm_set1_epi8(0x0F);
    __m128i t = _mm_unpacklo_epi8(_mm_and_si128(x, m4), _mm_and_si128(_mm_srli_epi16(x, 4), m4));
    return iq2_odd16(_mm256_cvtepu8_epi16(t));
}

static inline void iq2_xxs_begin(const kl_block_iq2_xxs *w, iq2_st *st)
{
    /* bits 28-31 of the second word of each chunk's 8 bytes: the odd words, in chunk order
     * after shuffle_ps (0, 1, 4, 5 | 2, 3, 6, 7) and a qword permute */
    __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)w->qs));
    __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(w->qs + 16)));
    __m256i odd = _mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    odd = _mm256_permute4x64_epi64(odd, _MM_SHUFFLE(3, 1, 2, 0));
    st->s16 = iq2_odd16(iq2_twice16(_mm256_srli_epi32(odd, 28)));
    st->d = 0.125f * _cvtsh_ss(w->d);
    st->signs = iq2_ksigns32(iq2_fields7(odd));
}

static inline __m256i iq2_xxs_chunk32(const kl_block_iq2_xxs *w, const iq2_st *st, int c,
                                      __m256i *sg)
{
    const uint8_t *q = (const uint8_t *)(w->qs + 4 * c);
    *sg = iq2_chunk_signs(st->signs, c);
    return iq2_lut64x4(kl_iq2xxs_grid, q[0], q[1], q[2], q[3]);
}

static inline void iq2_xs_begin(const kl_block_iq2_xs *w, iq2_st *st)
{
    st->s16 = nibble_scales(w->scales);
    st->d = 0.125f * _cvtsh_ss(w->d);
    /* the top 7 bits of each uint16; packus interleaves 128-bit lanes, the permute undoes it */
    __m256i a = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)w->qs), 9);
    __m256i b = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(w->qs + 16)), 9);
    st->signs = iq2_ksigns32(_mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8));
}

static inline __m256i iq2_xs_chunk32(const kl_block_iq2_xs *w, const iq2_st *st, int c, __m256i *sg)
{
    const uint16_t *q = w->qs + 4 * c;
    *sg = iq2_chunk_signs(st->signs, c);
    return iq2_lut64x4(kl_iq2xs_grid, q[0] & 511u, q[1] & 511u, q[2] & 511u, q[3] & 511u);
}

static inline void iq2_s_begin(const kl_block_iq2_s *w, iq2_st *st)
{
    st->s16 = nibble_scales(w->scales);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m256i iq2_s_chunk32(const kl_block_iq2_s *w, const iq2_st *st, int c, __m256i *sg)
{
    (void)st;
    const uint8_t *q = w->qs + 4 * c;
    unsigned h = w->qh[c];
    uint32_t signs;
    memcpy(&signs, w->qs + KL_QKK / 8 + 4 * c, 4);
    *sg = iq2_sign_pm1(signs);
    return iq2_lut64x4(kl_iq2s_grid, q[0] | (h << 8 & 0x300), q[1] | (h << 6 & 0x300),
                       q[2] | (h << 4 & 0x300), q[3] | (h << 2 & 0x300));
}

IQ2_TILE_MS(iq2_xxs, kl_block_iq2_xxs)
IQ2_GEMM(kl_avx2_gemm_iq2_xxs, iq2_xxs)
IQ2_TILE_MS(iq2_xs, kl_block_iq2_xs)
IQ2_GEMM(kl_avx2_gemm_iq2_xs, iq2_xs)
IQ2_TILE_MS(iq2_s, kl_block_iq2_s)
IQ2_GEMM(kl_avx2_gemm_iq2_s, iq2_s)
