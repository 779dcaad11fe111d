/* kernels/x86/avx2_iq4.c: IQ4_XS against Q8_K activations, AVX2 (the tile is x86/avx2_iq.h).
 * A chunk of 32 elements is one sub-block: 16 bytes, low nibbles then high, through a byte
 * shuffle to kl_iq4nl_values (signed, |v| <= 127). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq4_xs(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} iq4_xs_st;

static inline void iq4_xs_begin(const kl_block_iq4_xs *w, iq4_xs_st *st)
{
    uint32_t sl;
    memcpy(&sl, w->scales_l, 4);
    /* lane ib: nibble ib of scales_l, bits 2ib of scales_h above it, minus 32 */
    __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w->scales_h),
                                                    _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                  _mm256_set1_epi32(3));
    __m256i ls = _mm256_or_si256(iq2_nibbles32(sl), _mm256_slli_epi32(hi, 4));
    st->s16 = iq2_twice16(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
    st->d = _cvtsh_ss(w->d);
}

static inline __m256i iq4_xs_chunk32(const kl_block_iq4_xs *w, const iq4_xs_st *st, int c,
                                     __m256i *sg)
{
    (void)st, (void)sg;
    __m128i v = _mm_loadu_si128((const __m128i *)(w->qs + 16 * c)), m4 = _mm_set1_epi8(0x0F);
    __m256i x = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
    __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    return _mm256_shuffle_epi8(lut, x);
}

IQ2_TILE(iq4_xs, kl_block_iq4_xs)
IQ2_GEMM(kl_avx2_gemm_iq4_xs, iq4_xs)
