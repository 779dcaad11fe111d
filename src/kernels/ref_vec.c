/* kernels/ref_vec.c: the float kernels, scalar. Reductions mirror llama.cpp's (rmsnorm and
 * softmax sum in double) so a forward pass built on them tracks its numerics. */
#include <math.h>

#include "kernels/impl.h"

float kl_ref_dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void kl_ref_axpy(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

float kl_ref_dot_f16(const uint16_t *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += kl_fp16_to_fp32(a[i]) * b[i];
    return s;
}

void kl_ref_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * kl_fp16_to_fp32(x[i]);
}

void kl_ref_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                        float *s)
{
    for (int j = 0; j < nk; j++)
        s[j] = kl_ref_dot(q, k + (size_t)j * (size_t)ldk, hd) * scale;
}

void kl_ref_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    for (int j = 0; j < nk; j++)
        kl_ref_axpy(o, p[j], v + (size_t)j * (size_t)ldv, hd);
}

/* The same float operands, in the same order, as kl_ref_attn_scores (pv) over converted rows. */
void kl_ref_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd, float scale,
                            float *s)
{
    for (int j = 0; j < nk; j++)
        s[j] = kl_ref_dot_f16(k + (size_t)j * (size_t)ldk, q, hd) * scale;
}

void kl_ref_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd)
{
    for (int j = 0; j < nk; j++)
        kl_ref_axpy_f16(o, p[j], v + (size_t)j * (size_t)ldv, hd);
}

/* nr rows at once: the bits of nr calls of the one-row kernel. */
void kl_ref_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                         int ldv, int nk, int hd)
{
    for (int r = 0; r < nr; r++)
        kl_ref_attn_pv(o + (size_t)r * (size_t)ldo, p + (size_t)r * (size_t)ldp, v, ldv, nk, hd);
}

void kl_ref_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                             int hd, float scale, float *s, int lds)
{
    for (int r = 0; r < nr; r++)
        kl_ref_attn_scores(q + (size_t)r * (size_t)ldq, k, ldk, nk, hd, scale,
                           s + (size_t)r * (size_t)lds);
}

void kl_ref_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                 int nk, int hd, float scale, float *s, int lds)
{
    for (int r = 0; r < nr; r++)
        kl_ref_attn_scores_f16(q + (size_t)r * (size_t)ldq, k, ldk, nk, hd, scale,
                               s + (size_t)r * (size_t)lds);
}

void kl_ref_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                             int ldv, int nk, int hd)
{
    for (int r = 0; r < nr; r++)
        kl_ref_attn_pv_f16(o + (size_t)r * (size_t)ldo, p + (size_t)r * (size_t)ldp, v, ldv, nk,
                           hd);
}

void kl_ref_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++)
        out[i] = (x[i] * scale) * w[i];
}

double kl_ref_softmax_part(float *x, int n, float *max)
{
    for (int i = 0; i < n; i++)
        *max = fmaxf(*max, x[i]);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - *max);
        sum += (double)x[i];
    }
    return sum;
}

void kl_ref_softmax(float *x, int n)
{
    float max = -INFINITY;
    float inv = (float)(1.0 / kl_ref_softmax_part(x, n, &max));
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

void kl_ref_swiglu(float *out, const float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
