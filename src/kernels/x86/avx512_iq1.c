/* kernels/x86/avx512_iq1.c: IQ1_S and IQ1_M against Q8_K activations for the AVX-512 table:
 * the 256-bit tiles and decoders of x86/avx2_iq1.h with AVX-512 VNNI (IQ1_M: vpdpwssd, a
 * chunk's pair sums times their scales added into int32 lanes in one instruction, where AVX2
 * needs vpmaddwd and an add; IQ1_S: vpdpbusd, where AVX2 needs vpmaddubsw, vpmaddwd and an add)
 * and BMI2's pdep for the grid indices, in tiles of 8 activation rows (the 32 registers hold
 * them; AVX2's 16 hold 4). The 512-bit kernels it replaced (64 elements a chunk, the grid by 8
 * loads, sign masks) were slower than AVX2's at one activation row on Zen 4. Exact integers in
 * AVX2's int32 lanes. Needs no VBMI: the avx512vbmi table keeps these. */
#include "kernels/x86/avx2_iq1.h"
#include "kernels/x86/avx512_iq.h" /* IQ_GEMM: tiles of 8 activation rows */

void kl_avx512_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i iq1_acc_vnni(__m256i s, __m256i p, __m256i sc)
{
    s = _mm256_dpwssd_epi32(s, p, sc);
    __asm__("" : "+v"(s)); /* keeps the accumulation in order, as in avx2_iq.h */
    return s;
}

static inline __m256i iq1_acc8_vnni(__m256i s, __m256i u, __m256i v)
{
    return _mm256_dpbusd_epi32(s, u, v);
}

IQ1_GEMMS(kl_avx512_gemm_iq1_s, kl_avx512_gemm_iq1_m, iq1_acc8_vnni, 0, iq1_acc_vnni, IQ_BT,
          IQ_GEMM)
