/* kernels/x86/avx2_vec.h: the AVX2 float kernels of the vec table: x86/avx2_vec.c (dot, axpy,
 * rmsnorm, softmax, swiglu) and x86/avx2_attn.c (attention's inner loops), set by
 * x86/avx2_init.c. The contracts are kl_vec_ops' (kernels/impl.h). */
#ifndef KILN_KERNELS_X86_AVX2_VEC_H
#define KILN_KERNELS_X86_AVX2_VEC_H
#include <stdint.h>

float kl_avx2_dot(const float *a, const float *b, int n);
void kl_avx2_axpy(float *y, float a, const float *x, int n);
float kl_avx2_dot_f16(const uint16_t *a, const float *b, int n);
void kl_avx2_axpy_f16(float *y, float a, const uint16_t *x, int n);
void kl_avx2_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void kl_avx2_softmax(float *x, int n);
double kl_avx2_softmax_part(float *x, int n, float *max);
void kl_avx2_swiglu(float *out, const float *g, const float *u, int n);
void kl_avx2_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                         float *s);
void kl_avx2_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);
void kl_avx2_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd,
                             float scale, float *s);
void kl_avx2_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);
void kl_avx2_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                          int ldv, int nk, int hd);
void kl_avx2_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                              int ldv, int nk, int hd);
void kl_avx2_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                              int hd, float scale, float *s, int lds);
void kl_avx2_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                  int nk, int hd, float scale, float *s, int lds);

#endif
