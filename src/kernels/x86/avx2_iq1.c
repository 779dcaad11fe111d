/* kernels/x86/avx2_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX2 (the decoders are
 * x86/avx2_iq1.h's, the tile x86/avx2_iq.h's). */
#include "kernels/x86/avx2_iq1.h"

void kl_avx2_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

IQ1_GEMMS(kl_avx2_gemm_iq1_s, kl_avx2_gemm_iq1_m, iq2_acc_avx2, IQ2_BT, IQ2_GEMM)
