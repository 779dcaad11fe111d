/* kernels/x86/avx512_init.c: the AVX-512 table entries (filled as kernels land). */
#include "kernels/impl.h"
#include "kernels/iq.h"

void kl_avx512_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q4_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q5_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_q6_k(const kl_gemm *g, int64_t r0, int64_t r1);

void kl_avx512_gemm_packed_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_packed_f16(const kl_gemm *g, int64_t r0, int64_t r1);

float kl_avx512_dot(const float *a, const float *b, int n);
void kl_avx512_axpy(float *y, float a, const float *x, int n);
float kl_avx512_dot_f16(const uint16_t *a, const float *b, int n);
void kl_avx512_axpy_f16(float *y, float a, const uint16_t *x, int n);
void kl_avx512_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void kl_avx512_softmax(float *x, int n);
double kl_avx512_softmax_part(float *x, int n, float *max);
void kl_avx512_swiglu(float *out, const float *g, const float *u, int n);
void kl_avx512_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                           float *s);
void kl_avx512_quant_act_q8_0(const float *x, void *dst, int64_t n);
void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);
void kl_avx512_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd,
                               float scale, float *s);
void kl_avx512_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);
void kl_avx512_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                            int ldv, int nk, int hd);
void kl_avx512_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr,
                                const uint16_t *v, int ldv, int nk, int hd);
void kl_avx512_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                                int hd, float scale, float *s, int lds);
void kl_avx512_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                    int nk, int hd, float scale, float *s, int lds);

void kl_isa_avx512_init(kl_isa *isa)
{
    isa->vec.dot = kl_avx512_dot;
    isa->vec.axpy = kl_avx512_axpy;
    isa->vec.dot_f16 = kl_avx512_dot_f16;
    isa->vec.axpy_f16 = kl_avx512_axpy_f16;
    isa->vec.rmsnorm = kl_avx512_rmsnorm;
    isa->vec.softmax = kl_avx512_softmax;
    isa->vec.softmax_part = kl_avx512_softmax_part;
    isa->vec.swiglu = kl_avx512_swiglu;
    isa->vec.attn_scores = kl_avx512_attn_scores;
    isa->vec.attn_pv = kl_avx512_attn_pv;
    isa->vec.attn_scores_f16 = kl_avx512_attn_scores_f16;
    isa->vec.attn_pv_f16 = kl_avx512_attn_pv_f16;
    isa->vec.attn_pv_rows = kl_avx512_attn_pv_rows;
    isa->vec.attn_pv_rows_f16 = kl_avx512_attn_pv_rows_f16;
    isa->vec.attn_scores_rows = kl_avx512_attn_scores_rows;
    isa->vec.attn_scores_rows_f16 = kl_avx512_attn_scores_rows_f16;
    isa->types[KL_Q8_0].gemm = kl_avx512_gemm_q8_0;
    isa->types[KL_Q4_0].gemm = kl_avx512_gemm_q4_0;
    isa->types[KL_F16].gemm = kl_avx512_gemm_f16;
    isa->types[KL_F32].gemm = kl_avx512_gemm_f32;
    isa->types[KL_BF16].gemm = kl_avx512_gemm_bf16;
    isa->types[KL_Q4_K].gemm = kl_avx512_gemm_q4_k;
    isa->types[KL_Q5_K].gemm = kl_avx512_gemm_q5_k;
    isa->types[KL_Q6_K].gemm = kl_avx512_gemm_q6_k;
    isa->types[KL_Q8_0].quant_act = kl_avx512_quant_act_q8_0;
    isa->types[KL_Q4_0].quant_act = kl_avx512_quant_act_q8_0;
    /* the packers (kernels/pack.c) are the AVX2 table's, below this one */
    isa->types[KL_Q8_0].gemm_packed = kl_avx512_gemm_packed_q8_0;
    isa->types[KL_Q4_0].gemm_packed = kl_avx512_gemm_packed_q4_0;
    isa->types[KL_F32].gemm_packed = kl_avx512_gemm_packed_f32;
    isa->types[KL_F16].gemm_packed = kl_avx512_gemm_packed_f16;
    kl_avx512_types_packed_kquant(isa);
    kl_avx512_types_packed_legacy(isa);
    kl_avx512_types_iq(isa);
    kl_avx512_lora_init(isa);
}
