/* kernels/x86/avx2_init.c: the AVX2+FMA table entries (kernels not listed stay scalar). */
#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/x86/avx2_vec.h"

void kl_avx2_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_quant_act_q8_0(const float *x, void *dst, int64_t n); /* x86/avx2_quant.c */
void kl_avx2_quant_act_q8_1(const float *x, void *dst, int64_t n);
void kl_avx2_quant_act_q8_k(const float *x, void *dst, int64_t n);

void kl_isa_avx2_init(kl_isa *isa)
{
    isa->vec.dot = kl_avx2_dot;
    isa->vec.axpy = kl_avx2_axpy;
    isa->vec.dot_f16 = kl_avx2_dot_f16;
    isa->vec.axpy_f16 = kl_avx2_axpy_f16;
    isa->vec.rmsnorm = kl_avx2_rmsnorm;
    isa->vec.softmax = kl_avx2_softmax;
    isa->vec.softmax_part = kl_avx2_softmax_part;
    isa->vec.swiglu = kl_avx2_swiglu;
    isa->vec.attn_scores = kl_avx2_attn_scores;
    isa->vec.attn_pv = kl_avx2_attn_pv;
    isa->vec.attn_scores_f16 = kl_avx2_attn_scores_f16;
    isa->vec.attn_pv_f16 = kl_avx2_attn_pv_f16;
    isa->vec.attn_pv_rows = kl_avx2_attn_pv_rows;
    isa->vec.attn_pv_rows_f16 = kl_avx2_attn_pv_rows_f16;
    isa->vec.attn_scores_rows = kl_avx2_attn_scores_rows;
    isa->vec.attn_scores_rows_f16 = kl_avx2_attn_scores_rows_f16;
    isa->types[KL_Q8_0].gemm = kl_avx2_gemm_q8_0;
    isa->types[KL_Q4_0].gemm = kl_avx2_gemm_q4_0;
    isa->types[KL_F32].gemm = kl_avx2_gemm_f32;
    isa->types[KL_F16].gemm = kl_avx2_gemm_f16;
    isa->types[KL_BF16].gemm = kl_avx2_gemm_bf16;
    kl_panel_types(isa); /* packers; gemm_packed below, where AVX2 has one */
    kl_panel_types_kquant(isa);
    kl_panel_types_iq4_xs(isa);
    kl_avx2_types_kquant(isa);
    kl_avx2_types_packed_kquant(isa);
    kl_avx2_types_legacy(isa);
    kl_avx2_types_packed(isa);
    kl_avx2_types_iq(isa);
    /* every type that quantizes its activations with a scalar reference (the IQ families'
     * rows included) takes the AVX2 one: the same bytes */
    for (int t = 0; t < KL_DTYPE_COUNT; t++) {
        kl_row_fn *q = &isa->types[t].quant_act;
        if (*q == kl_ref_quant_act_q8_0) *q = kl_avx2_quant_act_q8_0;
        if (*q == kl_ref_quant_act_q8_1) *q = kl_avx2_quant_act_q8_1;
        if (*q == kl_ref_quant_act_q8_k) *q = kl_avx2_quant_act_q8_k;
    }
}

/* Packed forms that give AVX2's bits (IQ1, IQ2: the plain AVX2 kernels'), or that AVX-512
 * runs better from the file's blocks (IQ3: the VBMI plane kernels win from two activation rows
 * on), or a layout only AVX2's tile reads (Q3_K's); dispatch.c sets them after the AVX-512
 * tables have copied this one, so those keep their own. */
void kl_isa_avx2_own(kl_isa *isa)
{
    kl_avx2_types_iq1_packed(isa);
    kl_avx2_types_iq2_packed(isa);
    kl_panel_types_iq3(isa);
    kl_avx2_types_packed_own(isa);
}
