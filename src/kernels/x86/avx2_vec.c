/* kernels/x86/avx2_vec.c: the float kernels over 8 lanes (AVX2 + FMA + F16C), the AVX2 forms
 * of x86/avx512_vec.c: dot and axpy (F32 and F16 operands), rmsnorm (sum of squares in double,
 * like the reference), softmax (sum in double) and swiglu over a vector exp. Tails of fewer
 * than 8 lanes go through masked loads and stores (F32) or a zero-padded copy (F16): lanes
 * past n are read as 0 and never written. */
#include <immintrin.h>
#include <math.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_lanes.h"
#include "kernels/x86/avx2_reduce.h"
#include "kernels/x86/avx2_vec.h"

static inline __m256 load_m(const float *p, __m256i m)
{
    return _mm256_maskload_ps(p, m);
}

/* e^x per lane, the operations of kl_exp (kernels/exp.c) fused: x clamped to [-87, 88],
 * x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts), e^r by its degree-6 Taylor polynomial
 * (relative error < 2e-7), times 2^n built from bits; x below -87 (-inf included) gives 0. */
static inline __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.f));
    __m256 nf = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    /* n in [-126, 127]: 2^n is a normal float */
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
}

/* acc + the 8 lanes of v, widened to double. */
static inline __m256d widen_add(__m256d acc, __m256 v)
{
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

static inline double hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

float kl_avx2_dot(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        s0 = _mm256_fmadd_ps(load_m(a + i, m), load_m(b + i, m), s0);
    }
    return kl_avx2_hsum_ps(_mm256_add_ps(s0, s1));
}

void kl_avx2_axpy(float *y, float a, const float *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = kl_avx2_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(av, load_m(x + i, m), load_m(y + i, m)));
    }
}

float kl_avx2_dot_f16(const uint16_t *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(kl_avx2_load_ph(a + i, 8), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(kl_avx2_load_ph(a + i + 8, 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i < n; i += 8)
        s0 = _mm256_fmadd_ps(kl_avx2_load_ph(a + i, n - i), load_m(b + i, kl_avx2_mask(n - i)), s0);
    return kl_avx2_hsum_ps(_mm256_add_ps(s0, s1));
}

void kl_avx2_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, kl_avx2_load_ph(x + i, 8), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = kl_avx2_mask(n - i);
        _mm256_maskstore_ps(y + i, m,
                            _mm256_fmadd_ps(av, kl_avx2_load_ph(x + i, n - i), load_m(y + i, m)));
    }
}

void kl_avx2_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    __m256d sum = _mm256_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        __m256 v = load_m(x + i, kl_avx2_mask(n - i));
        sum = widen_add(sum, _mm256_mul_ps(v, v));
    }
    float mean = (float)(hsum_pd(sum) / n);
    __m256 scale = _mm256_set1_ps(1.0f / sqrtf(mean + eps));
    for (int i = 0; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        __m256 v = _mm256_mul_ps(load_m(x + i, m), scale);
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(v, load_m(w + i, m)));
    }
}

double kl_avx2_softmax_part(float *x, int n, float *max)
{
    __m256 mx = _mm256_set1_ps(*max);
    for (int i = 0; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        __m256 v =
            _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), load_m(x + i, m), _mm256_castsi256_ps(m));
        mx = _mm256_max_ps(mx, v);
    }
    *max = kl_avx2_hmax_ps(mx);
    __m256 mv = _mm256_set1_ps(*max);
    __m256d sum = _mm256_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        __m256 e =
            _mm256_and_ps(_mm256_castsi256_ps(m), exp256(_mm256_sub_ps(load_m(x + i, m), mv)));
        _mm256_maskstore_ps(x + i, m, e);
        sum = widen_add(sum, e);
    }
    return hsum_pd(sum);
}

void kl_avx2_softmax(float *x, int n)
{
    if (n < 1) return;
    float max = -INFINITY;
    __m256 inv = _mm256_set1_ps((float)(1.0 / kl_avx2_softmax_part(x, n, &max)));
    for (int i = 0; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(load_m(x + i, m), inv));
    }
}

void kl_avx2_swiglu(float *out, const float *g, const float *u, int n)
{
    __m256 one = _mm256_set1_ps(1.f);
    for (int i = 0; i < n; i += 8) {
        __m256i m = kl_avx2_mask(n - i);
        __m256 gv = load_m(g + i, m);
        __m256 s =
            _mm256_div_ps(gv, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(s, load_m(u + i, m)));
    }
}
