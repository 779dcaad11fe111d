/* kernels/x86/avx512_init.c: the AVX-512 table entries (filled as kernels land). */
#include "kernels/impl.h"

void kl_avx512_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);

float kl_avx512_dot(const float *a, const float *b, int n);
void kl_avx512_axpy(float *y, float a, const float *x, int n);

void kl_isa_avx512_init(kl_isa *isa)
{
    isa->vec.dot = kl_avx512_dot;
    isa->vec.axpy = kl_avx512_axpy;
    isa->types[KL_Q8_0].gemm = kl_avx512_gemm_q8_0;
    isa->types[KL_Q4_0].gemm = kl_avx512_gemm_q4_0;
    isa->types[KL_F16].gemm = kl_avx512_gemm_f16;
    isa->types[KL_F32].gemm = kl_avx512_gemm_f32;
}
