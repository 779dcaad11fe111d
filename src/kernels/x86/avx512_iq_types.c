/* kernels/x86/avx512_iq_types.c: the AVX-512 table rows of the IQ and TQ types. */
#include "kernels/iq.h"

void kl_avx512_gemm_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n);
void kl_avx512_gemm_iq4_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1);

void kl_avx512_types_iq(kl_isa *isa)
{
    /* IQ4_NL: Q4_0's block layout, packed by the same code (kernels/pack.c) */
    isa->types[KL_IQ4_NL].gemm = kl_avx512_gemm_iq4_nl;
    isa->types[KL_IQ4_NL].quant_act = kl_avx512_quant_act_q8_0;
    isa->types[KL_IQ4_NL].gemm_packed = kl_avx512_gemm_packed_iq4_nl;
    isa->types[KL_IQ4_XS].gemm = kl_avx512_gemm_iq4_xs;
    isa->types[KL_IQ3_XXS].gemm = kl_avx512_gemm_iq3_xxs;
    isa->types[KL_IQ3_S].gemm = kl_avx512_gemm_iq3_s;
    isa->types[KL_IQ2_XXS].gemm = kl_avx512_gemm_iq2_xxs;
    isa->types[KL_IQ2_XS].gemm = kl_avx512_gemm_iq2_xs;
    isa->types[KL_IQ2_S].gemm = kl_avx512_gemm_iq2_s;
    isa->types[KL_IQ1_S].gemm = kl_avx512_gemm_iq1_s;
    isa->types[KL_IQ1_M].gemm = kl_avx512_gemm_iq1_m;
    isa->types[KL_TQ1_0].gemm = kl_avx512_gemm_tq1_0;
    isa->types[KL_TQ2_0].gemm = kl_avx512_gemm_tq2_0;
    /* TQ1_0 packed as TQ2_0's blocks (kernels/pack_tq.c), run by the TQ2_0 kernel */
    isa->types[KL_TQ1_0].pack_bytes = kl_pack_tq1_0_bytes;
    isa->types[KL_TQ1_0].pack = kl_pack_tq1_0;
    isa->types[KL_TQ1_0].gemm_packed = kl_avx512_gemm_tq1_0_packed;
}
