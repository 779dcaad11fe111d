/* kernels/x86/avx512_lora.c: LoRA's shrink and expand (kernels/lora.c) over 16 lanes, tails
 * masked, four batch rows at a time sharing each load of the adapter's weights. Every row is
 * computed by the same operations whatever rows come with it (batch invariance); expand does
 * the reference's fused multiply-adds per lane, so it matches it bit for bit. */
#include <immintrin.h>

#include "kernels/impl.h"

#define ROWS 4

static inline __mmask16 tail(int64_t n, int64_t i)
{
    return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
}

static inline __m512 load_h(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* t[i][r] = dot(A[r], x[idx[i]]): per row two accumulators (even and odd chunks of 16),
 * added and reduced at the end. Rows past n repeat the first (computed, not stored). */
static void shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                   const int32_t *idx, int n, float *t)
{
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        int m = n - i0 < ROWS ? n - i0 : ROWS;
        const float *xr[ROWS];
        for (int k = 0; k < ROWS; k++)
            xr[k] = x + (size_t)idx[i0 + (k < m ? k : 0)] * (size_t)ldx;
        for (int r = 0; r < rank; r++) {
            const uint16_t *a = A + (size_t)r * (size_t)cols;
            __m512 s[ROWS][2];
            for (int k = 0; k < ROWS; k++)
                s[k][0] = s[k][1] = _mm512_setzero_ps();
            int64_t c = 0;
            for (int h = 0; c < cols; c += 16, h ^= 1) {
                __mmask16 mk = tail(cols, c);
                __m512 av = load_h(a + c, mk);
                for (int k = 0; k < ROWS; k++)
                    s[k][h] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mk, xr[k] + c), s[k][h]);
            }
            for (int k = 0; k < m; k++)
                t[(size_t)(i0 + k) * (size_t)rank + (size_t)r] =
                    _mm512_reduce_add_ps(_mm512_add_ps(s[k][0], s[k][1]));
        }
    }
}

static void expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                   const float *t, int n, float scale, float *y, int64_t ldy, const int32_t *idx)
{
    __m512 sc = _mm512_set1_ps(scale);
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        int m = n - i0 < ROWS ? n - i0 : ROWS;
        const float *ti[ROWS];
        for (int k = 0; k < ROWS; k++)
            ti[k] = t + (size_t)(i0 + (k < m ? k : 0)) * (size_t)rank;
        for (int64_t o = o0; o < o1; o += 16) {
            __mmask16 mk = tail(o1, o);
            __m512 acc[ROWS];
            for (int k = 0; k < ROWS; k++)
                acc[k] = _mm512_setzero_ps();
            for (int r = 0; r < rank; r++) {
                __m512 b = load_h(Bt + (size_t)r * (size_t)ldb + (size_t)o, mk);
                for (int k = 0; k < ROWS; k++)
                    acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(ti[k][r]), b, acc[k]);
            }
            for (int k = 0; k < m; k++) {
                float *yr = y + (size_t)idx[i0 + k] * (size_t)ldy + (size_t)o;
                __m512 yv = _mm512_maskz_loadu_ps(mk, yr);
                _mm512_mask_storeu_ps(yr, mk, _mm512_fmadd_ps(sc, acc[k], yv));
            }
        }
    }
}

void kl_avx512_lora_init(kl_isa *isa)
{
    isa->lora = (kl_lora_ops){shrink, expand};
}
