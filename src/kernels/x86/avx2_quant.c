/* kernels/x86/avx2_quant.c: the activation rows quantized for the int8 dots (layouts in
 * kernels/impl.h), AVX2 + F16C. The same bytes as the references (ref_act.c, and
 * ref_quant_legacy.c's Q8_1 sums), for finite inputs:
 *   - the max |x| is exact in any order; the scales are the same float divisions, and F16C's
 *     round to nearest even is kl_fp32_to_fp16's;
 *   - vcvtps2dq rounds with the current mode (to nearest even), which is what the references'
 *     magic-number kl_nearest_int does for |v| < 2^22;
 *   - the int sums (Q8_0 c, Q8_1 s, Q8_K bsums) are of the same int8 values, exact in int32.
 * Q8_K takes its scale from the signed value of largest magnitude, the first one in the row's
 * order on ties (the reference's strict > scan): found by a compare against the max. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_reduce.h"

static inline __m256 abs_ps(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* f rounded to fp16 and back (kl_fp16_to_fp32(kl_fp32_to_fp16(f))). */
static inline float fp16_round(float f)
{
    __m128i h = _mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT);
    return _mm_cvtss_f32(_mm_cvtph_ps(h));
}

/* 32 int32 (q[0..3], 8 each, in order) -> 32 int8 at dst, saturating (|q| <= 127 here). */
static inline void store_q8(int8_t *dst, const __m256i q[4])
{
    __m256i a = _mm256_packs_epi32(q[0], q[1]); /* lanes: q0 0-3 q1 0-3 | q0 4-7 q1 4-7 */
    __m256i b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p = _mm256_packs_epi16(a, b); /* per lane: q0 q1 q2 q3, 4 each */
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, p);
}

/* One Q8_0 block of 32: writes qs, returns d and the sum of the qs, and the block's max |x|. */
static inline void block_q8_0(const float *x, int8_t *qs, float *d, int32_t *sum, float *amax)
{
    __m256 v[4];
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_loadu_ps(x + 8 * k);
    __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                             _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
    *amax = kl_avx2_hmax_ps(m);
    *d = fp16_round(*amax / 127.0f);
    __m256 id = _mm256_set1_ps(*d != 0.0f ? 127.0f / *amax : 0.0f); /* as the reference */
    __m256i q[4];
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
    *sum = kl_avx2_hsum_epi32(
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    store_q8(qs, q);
}

void kl_avx2_quant_act_q8_0(const float *x, void *dst, int64_t n);
void kl_avx2_quant_act_q8_1(const float *x, void *dst, int64_t n);
void kl_avx2_quant_act_q8_k(const float *x, void *dst, int64_t n);

void kl_avx2_quant_act_q8_0(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *c = (int32_t *)(d + n / KL_QK);
    for (int64_t i = 0; i < n / KL_QK; i++) {
        int32_t sum;
        float amax;
        block_q8_0(x + i * KL_QK, qs + i * KL_QK, &d[i], &sum, &amax);
        c[i] = -128 * sum;
    }
}

/* The Q8_0 row plus s = fp16(amax / 127 * sum) per block, in one pass (kl_act_q8_1_finish's
 * values: the same float product of the same operands). */
void kl_avx2_quant_act_q8_1(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int32_t *c = (int32_t *)(d + n / KL_QK);
    float *s = (float *)kl_act_q8_1_s(dst, n);
    for (int64_t i = 0; i < n / KL_QK; i++) {
        int32_t sum;
        float amax;
        block_q8_0(x + i * KL_QK, qs + i * KL_QK, &d[i], &sum, &amax);
        c[i] = -128 * sum;
        s[i] = fp16_round(amax / 127.0f * (float)sum);
    }
}

/* Sums of 8 int32 lanes of each of t[0..3] -> (sum t0, sum t1, sum t2, sum t3). */
static inline __m128i hsum4_epi32(const __m256i t[4])
{
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

void kl_avx2_quant_act_q8_k(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + n);
    int16_t *bsums = (int16_t *)(d + n / KL_QKK);
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK, qs += KL_QKK, bsums += 16) {
        __m256 m[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
        for (int k = 0; k < KL_QKK / 8; k++)
            m[k % 4] = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), m[k % 4]);
        float amax =
            kl_avx2_hmax_ps(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
        if (amax == 0.0f) {
            d[i] = 0.0f;
            memset(qs, 0, KL_QKK);
            memset(bsums, 0, 16 * sizeof *bsums);
            continue;
        }
        /* the first element of magnitude amax gives the sign */
        __m256 va = _mm256_set1_ps(amax);
        float max = amax;
        for (int k = 0; k < KL_QKK / 8; k++) {
            __m256 v = _mm256_loadu_ps(x + 8 * k);
            int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(v), va, _CMP_EQ_OQ));
            if (hit) {
                max = x[8 * k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        __m256i t[4];
        for (int b = 0; b < KL_QKK / 32; b++) { /* 32 values: 16-column groups 2b, 2b + 1 */
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * b + 8 * k))),
                    top);
            store_q8(qs + 32 * b, q);
            t[(2 * b) % 4] = _mm256_add_epi32(q[0], q[1]);
            t[(2 * b + 1) % 4] = _mm256_add_epi32(q[2], q[3]);
            if (b % 2 == 1)
                _mm_storel_epi64((__m128i *)(bsums + 4 * (b / 2)),
                                 _mm_packs_epi32(hsum4_epi32(t), _mm_setzero_si128()));
        }
        d[i] = 1.0f / iscale;
    }
}
