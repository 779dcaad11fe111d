/* kernels/x86/avx512_lora.c: LoRA's shrink and expand (kernels/lora.c) over 16 lanes, tails
 * masked, up to four batch rows at a time sharing each load of the adapter's weights (a
 * variant per count, so fewer rows do no extra work). Every row is
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

/* t[i][r] = dot(A[r], x[idx[i]]) for R rows: per row two accumulators (even and odd chunks of
 * 16), added and reduced at the end. R is a constant at each call (the loops unroll). */
static inline __attribute__((always_inline)) void shrink_rows(const int R, const uint16_t *A,
                                                              int rank, int64_t cols,
                                                              const float *const *xr, float *t)
{
    for (int r = 0; r < rank; r++) {
        const uint16_t *a = A + (size_t)r * (size_t)cols;
        __m512 s[ROWS][2];
        for (int k = 0; k < R; k++)
            s[k][0] = s[k][1] = _mm512_setzero_ps();
        /* chunk pairs with constant accumulator indices: a runtime index kept s in memory
         * (spilled around every multiply-add); chunk i still goes to s[.][i % 2] */
        int64_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            __m512 a0 = load_h(a + c, 0xFFFF), a1 = load_h(a + c + 16, 0xFFFF);
            for (int k = 0; k < R; k++) {
                s[k][0] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(xr[k] + c), s[k][0]);
                s[k][1] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(xr[k] + c + 16), s[k][1]);
            }
        }
        for (int h = 0; h < 2 && c < cols; h++, c += 16) {
            __mmask16 mk = tail(cols, c);
            __m512 av = load_h(a + c, mk);
            for (int k = 0; k < R; k++) {
                __m512 xv = _mm512_maskz_loadu_ps(mk, xr[k] + c);
                if (h == 0)
                    s[k][0] = _mm512_fmadd_ps(av, xv, s[k][0]);
                else
                    s[k][1] = _mm512_fmadd_ps(av, xv, s[k][1]);
            }
        }
        for (int k = 0; k < R; k++)
            t[(size_t)k * (size_t)rank + (size_t)r] =
                _mm512_reduce_add_ps(_mm512_add_ps(s[k][0], s[k][1]));
    }
}

static void shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                   const int32_t *idx, int n, float *t)
{
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        int m = n - i0 < ROWS ? n - i0 : ROWS;
        const float *xr[ROWS];
        for (int k = 0; k < m; k++)
            xr[k] = x + (size_t)idx[i0 + k] * (size_t)ldx;
        float *ti = t + (size_t)i0 * (size_t)rank;
        switch (m) {
        case 4:
            shrink_rows(4, A, rank, cols, xr, ti);
            break;
        case 3:
            shrink_rows(3, A, rank, cols, xr, ti);
            break;
        case 2:
            shrink_rows(2, A, rank, cols, xr, ti);
            break;
        default:
            shrink_rows(1, A, rank, cols, xr, ti);
            break;
        }
    }
}

/* y[idx[k]][o] += scale sum_r t[k][r] Bt[r][o] over [o0, o1) for R rows (R constant). */
static inline __attribute__((always_inline)) void expand_rows(const int R, const uint16_t *Bt,
                                                              int rank, int64_t ldb, int64_t o0,
                                                              int64_t o1, const float *t,
                                                              float scale, float *const *yr)
{
    __m512 sc = _mm512_set1_ps(scale);
    for (int64_t o = o0; o < o1; o += 16) {
        __mmask16 mk = tail(o1, o);
        __m512 acc[ROWS];
        for (int k = 0; k < R; k++)
            acc[k] = _mm512_setzero_ps();
        for (int r = 0; r < rank; r++) {
            __m512 b = load_h(Bt + (size_t)r * (size_t)ldb + (size_t)o, mk);
            for (int k = 0; k < R; k++)
                acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(t[(size_t)k * (size_t)rank + (size_t)r]), b,
                                         acc[k]);
        }
        for (int k = 0; k < R; k++) {
            __m512 yv = _mm512_maskz_loadu_ps(mk, yr[k] + o);
            _mm512_mask_storeu_ps(yr[k] + o, mk, _mm512_fmadd_ps(sc, acc[k], yv));
        }
    }
}

static void expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                   const float *t, int n, float scale, float *y, int64_t ldy, const int32_t *idx)
{
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        int m = n - i0 < ROWS ? n - i0 : ROWS;
        float *yr[ROWS];
        for (int k = 0; k < m; k++)
            yr[k] = y + (size_t)idx[i0 + k] * (size_t)ldy;
        const float *ti = t + (size_t)i0 * (size_t)rank;
        switch (m) {
        case 4:
            expand_rows(4, Bt, rank, ldb, o0, o1, ti, scale, yr);
            break;
        case 3:
            expand_rows(3, Bt, rank, ldb, o0, o1, ti, scale, yr);
            break;
        case 2:
            expand_rows(2, Bt, rank, ldb, o0, o1, ti, scale, yr);
            break;
        default:
            expand_rows(1, Bt, rank, ldb, o0, o1, ti, scale, yr);
            break;
        }
    }
}

void kl_avx512_lora_init(kl_isa *isa)
{
    isa->lora = (kl_lora_ops){shrink, expand};
}
