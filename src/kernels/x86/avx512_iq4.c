/* kernels/x86/avx512_iq4.c: IQ4_XS against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h). A chunk of 64 elements is 32 bytes of nibbles: sub-block 2c's 16 bytes
 * (low nibbles elements 0-15, high 16-31) then sub-block 2c+1's; the nibbles go through a byte
 * shuffle to kl_iq4nl_values (signed, |v| <= 127: the tile's signed path). */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_iq4_xs(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st iq4_xs_st;

static inline void iq4_xs_begin(const kl_block_iq4_xs *w, iq4_xs_st *st)
{
    uint32_t sl;
    memcpy(&sl, w->scales_l, 4);
    __m128i t = _mm_cvtsi32_si128((int)sl), m4 = _mm_set1_epi8(0x0F);
    /* byte ib: low 4 bits from nibble ib of scales_l, high 2 from bits 2ib of scales_h */
    __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(t, m4), _mm_and_si128(_mm_srli_epi16(t, 4), m4));
    __m128i hi = _mm_and_si128(_mm_srlv_epi16(_mm_set1_epi16((short)w->scales_h),
                                              _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14)),
                               _mm_set1_epi16(3));
    hi = _mm_slli_epi16(_mm_packus_epi16(hi, hi), 4);
    __m128i ls = _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32)); /* 8 scales, -32..31 */
    /* each scale covers two 16-element groups */
    st->s16 = _mm256_cvtepi8_epi16(
        _mm_shuffle_epi8(ls, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
    st->d = _cvtsh_ss(w->d);
}

static inline __m512i iq4_xs_chunk(const kl_block_iq4_xs *w, const iq4_xs_st *st, int c)
{
    (void)st;
    __m256i v = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * c));
    /* 128-bit lanes: bytes 0-15 twice, then 16-31 twice; the second of each pair high nibbles */
    __m512i x = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                         _mm512_castsi256_si512(v));
    x = _mm512_mask_srli_epi16(x, 0xFF00FF00u, x, 4);
    x = _mm512_and_si512(x, _mm512_set1_epi8(0x0F));
    __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    return _mm512_shuffle_epi8(lut, x);
}

IQ_TILE(iq4_xs, kl_block_iq4_xs, 0)
IQ_GEMM(kl_avx512_gemm_iq4_xs, iq4_xs)
