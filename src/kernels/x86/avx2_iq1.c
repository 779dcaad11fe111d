/* kernels/x86/avx2_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX2 (the decoders are
 * x86/avx2_iq1.h's, the tile x86/avx2_iq.h's). */
#include "kernels/x86/avx2_iq1.h"

void kl_avx2_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

/* vpmaddubsw's pair sums of sc g a, added as int16 (SUM16: a block's at most 8 * 2 * 15 * 128) */
static inline __m256i iq1_acc8_avx2(__m256i s, __m256i u, __m256i v)
{
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u, v));
    __asm__("" : "+x"(s));
    return s;
}

IQ1_GEMMS(kl_avx2_gemm_iq1_s, kl_avx2_gemm_iq1_m, iq1_acc8_avx2, 1, iq2_acc_avx2, IQ2_BT, IQ2_GEMM)
