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

double kl_softmax_part(float *x, int n, float *max)
{
    return kl_isa_get()->vec.softmax_part(x, n, max);
}

void kl_swiglu(float *out, const float *gate, const float *up, int n)
{
    kl_isa_get()->vec.swiglu(out, gate, up, n);
}

void kl_axpy_f32(float *y, float a, const float *x, int n)
{
    kl_isa_get()->vec.axpy(y, a, x, n);
}
