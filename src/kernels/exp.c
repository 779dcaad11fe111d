/* kernels/exp.c: the sampler's exp over rows of logits (moved here from engine/sample.c; the
 * sampler's draws depend on these exact bits, so they must not change). */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "kernels/kernels.h"

/* exp(x) for x <= 88: Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-6 Taylor
 * polynomial (relative error < 2e-7), times 2^n built from bits. x < -87 gives 0 (so -inf
 * logits get no weight at all). Branch-free, so a loop over it vectorizes. */
float kl_exp(float x)
{
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float t = xc * 1.44269504f + shift;
    float nf = t - shift;
    uint32_t tb, sb;
    memcpy(&tb, &t, 4);
    memcpy(&sb, &shift, 4);
    int32_t n = (int32_t)(tb - sb);   /* round(x / ln2), in [-126, 127] */
    float r = xc - nf * 0.693359375f; /* ln2 in two parts: n * this one is exact ... */
    r = r + nf * 2.12194440e-4f;      /* ... and the correction */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t pb = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &pb, 4);
    float y = p * scale;
    return x < -87.0f ? 0.0f : y;
}

/* e[i] = exp((l[i] - m) * k) (n). SSE2 (the x86-64 baseline) four at a time, with the
 * very same operations in the same order as kl_exp, its scalar reference: the results
 * are bit-identical (tested), so the sampler's draws never depend on the code path. */
void kl_exp_row(float *restrict e, const float *restrict l, int n, float m, float k)
{
    int i = 0;
#ifdef __SSE2__
    const __m128 vm = _mm_set1_ps(m), vk = _mm_set1_ps(k), lo = _mm_set1_ps(-87.0f),
                 hi = _mm_set1_ps(88.0f), shift = _mm_set1_ps(12582912.0f),
                 log2e = _mm_set1_ps(1.44269504f), c1 = _mm_set1_ps(0.693359375f),
                 c2 = _mm_set1_ps(2.12194440e-4f), one = _mm_set1_ps(1.0f);
    const __m128i bias = _mm_set1_epi32(127);
    const __m128i sb = _mm_castps_si128(shift);
    for (; i + 4 <= n; i += 4) {
        __m128 x = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(l + i), vm), vk);
        __m128 xc = _mm_max_ps(x, lo);
        xc = _mm_min_ps(xc, hi);
        __m128 t = _mm_add_ps(_mm_mul_ps(xc, log2e), shift);
        __m128 nf = _mm_sub_ps(t, shift);
        __m128i ni = _mm_sub_epi32(_mm_castps_si128(t), sb);
        __m128 r = _mm_sub_ps(xc, _mm_mul_ps(nf, c1));
        r = _mm_add_ps(r, _mm_mul_ps(nf, c2));
        __m128 p = _mm_set1_ps(1.0f / 720.0f);
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 120.0f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 24.0f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 6.0f));
        p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(0.5f));
        p = _mm_add_ps(_mm_mul_ps(p, r), one);
        p = _mm_add_ps(_mm_mul_ps(p, r), one);
        __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, bias), 23));
        __m128 y = _mm_mul_ps(p, scale);
        __m128 under = _mm_cmplt_ps(x, lo);
        _mm_storeu_ps(e + i, _mm_andnot_ps(under, y));
    }
#endif
    for (; i < n; i++)
        e[i] = kl_exp((l[i] - m) * k);
}
