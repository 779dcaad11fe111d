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
    int16_t s[16];
    for (int ib = 0; ib < 8; ib++)
        s[2 * ib] = s[2 * ib + 1] = (int16_t)kl_iq4_xs_scale(w, ib);
    st->s16 = _mm256_loadu_si256((const __m256i *)s);
    st->d = _cvtsh_ss(w->d);
}

static inline __m256i iq4_xs_chunk32(const kl_block_iq4_xs *w, const iq4_xs_st *st, int c)
{
    (void)st;
    __m128i v = _mm_loadu_si128((const __m128i *)(w->qs + 16 * c)), m4 = _mm_set1_epi8(0x0F);
    __m256i x = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
    __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq4nl_values));
    return _mm256_shuffle_epi8(lut, x);
}

IQ2_TILE(iq4_xs, kl_block_iq4_xs, 0)
IQ2_GEMM(kl_avx2_gemm_iq4_xs, iq4_xs)
