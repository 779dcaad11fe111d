/* kernels/x86/avx512_vec.c: the float kernels over 16 lanes, tails masked: dot and axpy
 * (F32 and F16 operands: attention's inner loops over the F16 KV cache), rmsnorm (sum of
 * squares in double, like the reference), softmax (sum in double) and swiglu over a
 * vector exp. */
#include <immintrin.h>
#include <math.h>

#include "kernels/impl.h"

float kl_avx512_dot(const float *a, const float *b, int n);
void kl_avx512_axpy(float *y, float a, const float *x, int n);
float kl_avx512_dot_f16(const uint16_t *a, const float *b, int n);
void kl_avx512_axpy_f16(float *y, float a, const uint16_t *x, int n);
void kl_avx512_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void kl_avx512_softmax(float *x, int n);
double kl_avx512_softmax_part(float *x, int n, float *max);
void kl_avx512_swiglu(float *out, const float *g, const float *u, int n);

static inline __mmask16 tail(int n, int i)
{
    return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
}

static inline __m512 load_h(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* e^x per lane: x clamped to [-127, 88.7], x = n ln2 + r with |r| <= ln2/2, e^r by its
 * degree-6 Taylor polynomial (relative error < 2e-7), scaled by 2^n (vscalefps: no
 * exponent overflow handling needed; -127 gives 0). */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-127.f)), _mm512_set1_ps(88.7f));
    __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, nf);
}

/* Sum of the 16 lanes of v, widened to double. */
static inline __m512d widen_add(__m512d acc, __m512 v)
{
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

float kl_avx512_dot(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void kl_avx512_axpy(float *y, float a, const float *x, int n)
{
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), yv));
    }
}

float kl_avx512_dot_f16(const uint16_t *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(load_h(a + i, 0xFFFF), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(load_h(a + i + 16, 0xFFFF), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        s0 = _mm512_fmadd_ps(load_h(a + i, m), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void kl_avx512_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, load_h(x + i, m), yv));
    }
}

void kl_avx512_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    __m512d sum = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail(n, i), x + i);
        sum = widen_add(sum, _mm512_mul_ps(v, v));
    }
    float mean = (float)(_mm512_reduce_add_pd(sum) / n);
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
    }
}

double kl_avx512_softmax_part(float *x, int n, float *max)
{
    __m512 mx = _mm512_set1_ps(*max);
    for (int i = 0; i < n; i += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail(n, i), x + i));
    *max = _mm512_reduce_max_ps(mx);
    __m512 m512 = _mm512_set1_ps(*max);
    __m512d sum = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        __m512 e =
            _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), m512)));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = widen_add(sum, e);
    }
    return _mm512_reduce_add_pd(sum);
}

void kl_avx512_softmax(float *x, int n)
{
    if (n < 1) return;
    float max = -INFINITY;
    __m512 inv = _mm512_set1_ps((float)(1.0 / kl_avx512_softmax_part(x, n, &max)));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

void kl_avx512_swiglu(float *out, const float *g, const float *u, int n)
{
    __m512 one = _mm512_set1_ps(1.f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n, i);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
        __m512 s =
            _mm512_div_ps(gv, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
    }
}
