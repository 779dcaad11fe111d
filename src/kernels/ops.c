/* kernels/ops.c: the public float kernels, through the ISA table. */
#include "kernels/impl.h"

void kl_rmsnorm(float *out, const float *x, const float *weight, int n, float eps)
{
    kl_isa_get()->vec.rmsnorm(out, x, weight, n, eps);
}

void kl_softmax(float *x, int n)
{
    kl_isa_get()->vec.softmax(x, n);
}

void kl_swiglu(float *out, const float *gate, const float *up, int n)
{
    kl_isa_get()->vec.swiglu(out, gate, up, n);
}

float kl_dot_f32(const float *a, const float *b, int n)
{
    return kl_isa_get()->vec.dot(a, b, n);
}

void kl_axpy_f32(float *y, float a, const float *x, int n)
{
    kl_isa_get()->vec.axpy(y, a, x, n);
}

float kl_dot_f16(const uint16_t *a, const float *b, int n)
{
    return kl_isa_get()->vec.dot_f16(a, b, n);
}

void kl_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    kl_isa_get()->vec.axpy_f16(y, a, x, n);
}

void kl_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale, float *s)
{
    kl_isa_get()->vec.attn_scores(q, k, ldk, nk, hd, scale, s);
}

void kl_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    kl_isa_get()->vec.attn_pv(o, p, v, ldv, nk, hd);
}

void kl_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd, float scale,
                        float *s)
{
    kl_isa_get()->vec.attn_scores_f16(q, k, ldk, nk, hd, scale, s);
}

void kl_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd)
{
    kl_isa_get()->vec.attn_pv_f16(o, p, v, ldv, nk, hd);
}

void kl_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v, int ldv,
                     int nk, int hd)
{
    kl_isa_get()->vec.attn_pv_rows(o, ldo, p, ldp, nr, v, ldv, nk, hd);
}

void kl_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                         int ldv, int nk, int hd)
{
    kl_isa_get()->vec.attn_pv_rows_f16(o, ldo, p, ldp, nr, v, ldv, nk, hd);
}
