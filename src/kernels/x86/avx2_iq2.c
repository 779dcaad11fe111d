/* kernels/x86/avx2_iq2.c: IQ2_XXS, IQ2_XS and IQ2_S against Q8_K activations, AVX2 (the tile
 * is x86/avx2_iq.h; the plan is x86/avx512_iq2.c's, 32 elements at a time: 4 grid entries of
 * magnitudes loaded into one register, 4 sign bytes spread to a sign per element for the
 * activations). A block's scales and sign bytes are arranged once where one vpshufb takes a
 * chunk's (as IQ3's in x86/avx2_iq3.c): before, each chunk took them with a vpermd, and the
 * signs with a compare and an or more. */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;   /* chunk c's scale 2 s + 1 in 16-bit lane c of each 128-bit lane: that of its
                      elements 0-15 in the low lane, 16-31 in the high one */
    __m256i signs; /* iq2_signs_by_chunk */
    float d;
} iq2_st;
typedef iq2_st iq2_xxs_st;
typedef iq2_st iq2_xs_st;
typedef iq2_st iq2_s_st;

/* IQ2_XS, IQ2_S: a byte per 32 elements (a chunk), the low nibble for its first 16: byte c to
 * 16-bit lane c of both 128-bit lanes, the low lane's times 16, the nibble kept at bits 4-7. */
static inline __m256i nibble_scales(const uint8_t sc[8])
{
    __m256i x = _mm256_shuffle_epi8(_mm256_castpd_si256(_mm256_broadcast_sd((const double *)sc)),
                                    _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6,
                                                     -1, 7, -1, 0, -1, 1, -1, 2, -1, 3, -1, 4, -1,
                                                     5, -1, 6, -1, 7, -1));
    x = _mm256_and_si256(_mm256_mullo_epi16(x, _mm256_setr_epi16(16, 16, 16, 16, 16, 16, 16, 16, 1,
                                                                 1, 1, 1, 1, 1, 1, 1)),
                         _mm256_set1_epi16(0xF0));
    return _mm256_or_si256(_mm256_srli_epi16(x, 3), _mm256_set1_epi16(1)); /* 2 s + 1 */
}

/* A chunk's scales and signs: one vpshufb each, by controls loaded as constants (stepped in
 * registers instead, as x86/avx2_iq3.c does, IQ2_XXS measured 3% slower at B=1). */
#define IQ2_CTL(a, b) a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b
static _Alignas(32) const int8_t sign_ctl[8][32] = {
    {IQ2_CTL(0, 1), IQ2_CTL(0, 1)},     {IQ2_CTL(2, 3), IQ2_CTL(2, 3)},
    {IQ2_CTL(4, 5), IQ2_CTL(4, 5)},     {IQ2_CTL(6, 7), IQ2_CTL(6, 7)},
    {IQ2_CTL(8, 9), IQ2_CTL(8, 9)},     {IQ2_CTL(10, 11), IQ2_CTL(10, 11)},
    {IQ2_CTL(12, 13), IQ2_CTL(12, 13)}, {IQ2_CTL(14, 15), IQ2_CTL(14, 15)}};
#undef IQ2_CTL
static inline __m256i iq2_signs_of(const iq2_st *st, int c)
{
    return iq2_sign_of_bits(
        _mm256_shuffle_epi8(st->signs, _mm256_load_si256((const __m256i *)sign_ctl[c])));
}
static inline __m256i iq2_scales_of(const iq2_st *st, int c)
{
    return _mm256_shuffle_epi8(st->s16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * c)));
}

static inline void iq2_xxs_begin(const kl_block_iq2_xxs *w, iq2_st *st)
{
    /* bits 28-31 of the second word of each chunk's 8 bytes: the odd words, in chunk order
     * after shuffle_ps (0, 1, 4, 5 | 2, 3, 6, 7) and a qword permute */
    __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)w->qs));
    __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(w->qs + 16)));
    __m256i odd = _mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    odd = _mm256_permute4x64_epi64(odd, _MM_SHUFFLE(3, 1, 2, 0));
    __m256i s = _mm256_or_si256(_mm256_srli_epi32(odd, 27), _mm256_set1_epi32(1)); /* 2 s + 1 */
    s = _mm256_packus_epi32(s, s); /* 128-bit lane h: chunks 4h..4h+3, twice */
    st->s16 = _mm256_permute4x64_epi64(s, _MM_SHUFFLE(2, 0, 2, 0));
    st->d = 0.125f * _cvtsh_ss(w->d);
    st->signs = iq2_signs_by_chunk(iq2_ksigns32(iq2_fields7(odd)));
}

static inline __m256i iq2_xxs_chunk32(const kl_block_iq2_xxs *w, const iq2_st *st, int c,
                                      __m256i *sg)
{
    const uint8_t *q = (const uint8_t *)(w->qs + 4 * c);
    *sg = iq2_signs_of(st, c);
    return iq2_lut64x4(kl_iq2xxs_grid, q[0], q[1], q[2], q[3]);
}

static inline void iq2_xs_begin(const kl_block_iq2_xs *w, iq2_st *st)
{
    st->s16 = nibble_scales(w->scales);
    st->d = 0.125f * _cvtsh_ss(w->d);
    /* the top 7 bits of each uint16; packus interleaves 128-bit lanes, the permute undoes it */
    __m256i a = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)w->qs), 9);
    __m256i b = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(w->qs + 16)), 9);
    st->signs =
        iq2_signs_by_chunk(iq2_ksigns32(_mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8)));
}

static inline __m256i iq2_xs_chunk32(const kl_block_iq2_xs *w, const iq2_st *st, int c, __m256i *sg)
{
    const uint16_t *q = w->qs + 4 * c;
    *sg = iq2_signs_of(st, c);
    return iq2_lut64x4(kl_iq2xs_grid, q[0] & 511u, q[1] & 511u, q[2] & 511u, q[3] & 511u);
}

static inline void iq2_s_begin(const kl_block_iq2_s *w, iq2_st *st)
{
    st->s16 = nibble_scales(w->scales);
    st->d = 0.125f * _cvtsh_ss(w->d);
    st->signs = iq2_signs_by_chunk(_mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 8)));
}

static inline __m256i iq2_s_chunk32(const kl_block_iq2_s *w, const iq2_st *st, int c, __m256i *sg)
{
    const uint8_t *q = w->qs + 4 * c;
    unsigned h = w->qh[c];
    *sg = iq2_signs_of(st, c);
    return iq2_lut64x4(kl_iq2s_grid, q[0] | (h << 8 & 0x300), q[1] | (h << 6 & 0x300),
                       q[2] | (h << 4 & 0x300), q[3] | (h << 2 & 0x300));
}

/* PFX_chunk32 gives the magnitudes |w| and sets *sg to a negative byte where w < 0, else a
 * positive one (vpsignb's operand); the scales by iq2_scales_of. TILE: IQ2_TILE_ANY or, where
 * it measured faster, IQ2_TILE_AHEAD (IQ2_XXS, whose begin makes its signs from the 7-bit
 * fields: B=1 1.05x; IQ2_XS, the same parity chain, measured as IQ3_XXS's in x86/avx2_iq3.c:
 * B=1 10.0 -> 9.7 ns a block, B=4 19.6 -> 16.5; IQ2_S 0.96x). */
#define IQ2_TILE_BY_CHUNK(PFX, BLOCK, TILE)                                                        \
    static inline __m256i PFX##_chunk_scales(const iq2_st *st, int c)                              \
    {                                                                                              \
        return iq2_scales_of(st, c);                                                               \
    }                                                                                              \
    TILE(PFX, BLOCK, 1)

IQ2_TILE_BY_CHUNK(iq2_xxs, kl_block_iq2_xxs, IQ2_TILE_AHEAD)
IQ2_GEMM(kl_avx2_gemm_iq2_xxs, iq2_xxs)
IQ2_TILE_BY_CHUNK(iq2_xs, kl_block_iq2_xs, IQ2_TILE_AHEAD)
IQ2_GEMM(kl_avx2_gemm_iq2_xs, iq2_xs)
IQ2_TILE_BY_CHUNK(iq2_s, kl_block_iq2_s, IQ2_TILE_ANY)
IQ2_GEMM(kl_avx2_gemm_iq2_s, iq2_s)
