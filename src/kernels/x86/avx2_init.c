/* kernels/x86/avx2_init.c: the AVX2+FMA table entries (kernels not listed stay scalar). */
#include "kernels/impl.h"
#include "kernels/iq.h"

void kl_avx2_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);

void kl_isa_avx2_init(kl_isa *isa)
{
    isa->types[KL_Q8_0].gemm = kl_avx2_gemm_q8_0;
    isa->types[KL_Q4_0].gemm = kl_avx2_gemm_q4_0;
    isa->types[KL_F32].gemm = kl_avx2_gemm_f32;
    isa->types[KL_F16].gemm = kl_avx2_gemm_f16;
    isa->types[KL_BF16].gemm = kl_avx2_gemm_bf16;
    kl_panel_types(isa); /* packers; gemm_packed below, where AVX2 has one */
    kl_panel_types_kquant(isa);
    kl_avx2_types_kquant(isa);
    kl_avx2_types_packed_kquant(isa);
    kl_avx2_types_legacy(isa);
    kl_avx2_types_packed(isa);
    kl_avx2_types_iq(isa);
}
