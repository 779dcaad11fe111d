/* kernels/x86/avx2_iq3.c: IQ3_XXS and IQ3_S against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h). A chunk of 32 elements is one sub-block: 8 grid indices (8 loads of 4
 * magnitudes each) and 4 sign bytes, spread to a sign per element for the activations. */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);

/* IQ3_XXS keeps its scales and signs where one in-lane vpshufb (its control a constant in
 * memory) takes out a chunk's: a vpermd per chunk costs a shuffle more, and shuffles bound
 * the chunk loop (with the 8 grid loads and their inserts). */
typedef struct {
    __m256i s16; /* in both 128-bit lanes: chunk c's scale 2 s + 1 in 16-bit lane c */
    float d;
    __m256i signs; /* chunk c's sign bytes 0, 1 at bytes 2c, 2c + 1 of the low 128-bit lane,
                      its bytes 2, 3 at the same places of the high lane */
} iq3_xxs_st;
typedef struct {
    __m256i s16;
    float d;
    _Alignas(32) uint16_t idx[KL_QKK / 4]; /* the block's 9-bit grid indices */
} iq3_s_st;

static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq3_xxs_st *st)
{
    /* sub-block ib's word: 4 x 7 sign bits, the scale in bits 28-31 */
    __m256i a = _mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 4));
    __m256i s = _mm256_or_si256(_mm256_srli_epi32(a, 27), _mm256_set1_epi32(1)); /* 2 s + 1 */
    s = _mm256_packus_epi32(s, s); /* 128-bit lane h: chunks 4h..4h+3, twice */
    st->s16 = _mm256_permute4x64_epi64(s, _MM_SHUFFLE(2, 0, 2, 0));
    st->d = 0.25f * _cvtsh_ss(w->d);
    /* lane h: bytes 0, 1 of chunks 4h..4h+3, then their bytes 2, 3; qwords reordered after */
    __m256i sg =
        _mm256_shuffle_epi8(iq2_ksigns32(iq2_fields7(a)),
                            _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                             0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    st->signs = _mm256_permute4x64_epi64(sg, _MM_SHUFFLE(3, 1, 2, 0));
}

static inline __m256i iq3_xxs_chunk_scales(const iq3_xxs_st *st, int c)
{
    return _mm256_shuffle_epi8(st->s16, _mm256_set1_epi16((short)(2 * c | (2 * c + 1) << 8)));
}

static inline __m256i iq3_xxs_chunk32(const kl_block_iq3_xxs *w, const iq3_xxs_st *st, int c,
                                      __m256i *sg)
{
    const uint8_t *q = w->qs + 8 * c;
    const uint32_t *grid = kl_iq3xxs_grid;
    __m256i spread =
        _mm256_add_epi8(_mm256_set1_epi8((char)(2 * c)),
                        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                                         0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    *sg = iq2_sign_of_bits(_mm256_shuffle_epi8(st->signs, spread));
    return _mm256_setr_epi32((int)grid[q[0]], (int)grid[q[1]], (int)grid[q[2]], (int)grid[q[3]],
                             (int)grid[q[4]], (int)grid[q[5]], (int)grid[q[6]], (int)grid[q[7]]);
}

/* All 64 indices of the block at once, 16 in 16-bit lanes per step: bit k of qh[c] is the
 * ninth bit of index 8c + k. */
static inline void iq3_s_begin(const kl_block_iq3_s *w, iq3_s_st *st)
{
    uint32_t sc;
    memcpy(&sc, w->scales, 4);
    st->s16 = iq2_odd16(iq2_twice16(iq2_nibbles32(sc)));
    st->d = _cvtsh_ss(w->d);
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                          8192, 16384, -32768);
    for (int i = 0; i < 4; i++) {
        uint16_t h;
        memcpy(&h, w->qh + 2 * i, 2);
        __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w->qs + 16 * i)));
        __m256i zero = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((short)h), bit),
                                          _mm256_setzero_si256());
        __m256i hi = _mm256_andnot_si256(zero, _mm256_set1_epi16(256));
        _mm256_store_si256((__m256i *)(st->idx + 16 * i), _mm256_or_si256(lo, hi));
    }
}

static inline __m256i iq3_s_chunk32(const kl_block_iq3_s *w, const iq3_s_st *st, int c, __m256i *sg)
{
    const uint16_t *i = st->idx + 8 * c;
    const uint32_t *grid = kl_iq3s_grid;
    uint32_t signs;
    memcpy(&signs, w->signs + 4 * c, 4);
    *sg = iq2_sign_pm1(signs);
    return _mm256_setr_epi32((int)grid[i[0]], (int)grid[i[1]], (int)grid[i[2]], (int)grid[i[3]],
                             (int)grid[i[4]], (int)grid[i[5]], (int)grid[i[6]], (int)grid[i[7]]);
}

IQ2_TILE_ANY(iq3_xxs, kl_block_iq3_xxs, 1)
IQ2_GEMM(kl_avx2_gemm_iq3_xxs, iq3_xxs)
IQ2_TILE_MS(iq3_s, kl_block_iq3_s)
IQ2_GEMM(kl_avx2_gemm_iq3_s, iq3_s)
