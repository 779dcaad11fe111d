/* kernels/x86/avx2_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX2 (the decoders are
 * x86/avx2_iq1.h's, the tile x86/avx2_iq.h's). */
#include "kernels/x86/avx2_iq1.h"

void kl_avx2_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

/* vpmaddubsw's pair sums of 8 sc g a are at most 120 * 254: no saturation */
static inline __m256i iq1_acc8_avx2(__m256i s, __m256i u, __m256i v)
{
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)));
    __asm__("" : "+x"(s));
    return s;
}

IQ1_GEMMS(kl_avx2_gemm_iq1_s, kl_avx2_gemm_iq1_m, iq1_acc8_avx2, iq2_acc_avx2, IQ2_BT, IQ2_GEMM)
