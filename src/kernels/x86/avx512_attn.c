/* kernels/x86/avx512_attn.c: attention's two inner loops over a run of cached positions,
 * for one query row. The query (scores) or the output row (weighted sum) stays in registers
 * across the run, in chunks of up to 8 vectors (head_dim 128); tails are masked.
 *
 * Batch invariance: a score is one accumulator over head_dim in 16-lane steps and one
 * horizontal sum, the same instructions for every key; an output element is a chain of FMAs
 * in key order. Neither depends on how many rows or keys a call is given. */
#include <immintrin.h>

#include "kernels/impl.h"

void kl_avx512_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                           float *s);
void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);

static inline __mmask16 lanes(int n, int i)
{
    int r = n - i;
    return r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1);
}

/* Scores for head_dim <= 128: the query in nv registers. */
static inline __attribute__((always_inline)) void scores_regs(const float *q, const float *k,
                                                             int ldk, int nk, int hd,
                                                             float scale, float *s, int nv)
{
    __m512 qv[8];
    for (int c = 0; c < nv; c++) qv[c] = _mm512_maskz_loadu_ps(lanes(hd, 16 * c), q + 16 * c);
    for (int j = 0; j < nk; j++) {
        const float *kj = k + (size_t)j * (size_t)ldk;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < nv; c++)
            acc = _mm512_fmadd_ps(qv[c], _mm512_maskz_loadu_ps(lanes(hd, 16 * c), kj + 16 * c), acc);
        s[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

void kl_avx512_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                           float *s)
{
    switch ((hd + 15) / 16) { /* constant register counts for the common head sizes */
    case 4: scores_regs(q, k, ldk, nk, hd, scale, s, 4); return;
    case 8: scores_regs(q, k, ldk, nk, hd, scale, s, 8); return;
    default: break;
    }
    for (int j = 0; j < nk; j++) {
        const float *kj = k + (size_t)j * (size_t)ldk;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < hd; c += 16)
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes(hd, c), q + c),
                                  _mm512_maskz_loadu_ps(lanes(hd, c), kj + c), acc);
        s[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

/* o[c0, c0 + 16 nv) += sum_j p[j] v_j[...], the chunk held in registers. */
static inline __attribute__((always_inline)) void pv_regs(float *o, const float *p,
                                                         const float *v, int ldv, int nk,
                                                         int hd, int c0, int nv)
{
    __m512 acc[8];
    for (int c = 0; c < nv; c++) acc[c] = _mm512_maskz_loadu_ps(lanes(hd, c0 + 16 * c), o + c0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const float *vj = v + (size_t)j * (size_t)ldv + c0;
        __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < nv; c++)
            acc[c] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(lanes(hd, c0 + 16 * c), vj + 16 * c),
                                     acc[c]);
    }
    for (int c = 0; c < nv; c++) _mm512_mask_storeu_ps(o + c0 + 16 * c, lanes(hd, c0 + 16 * c), acc[c]);
}

void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    int c0 = 0;
    for (; hd - c0 > 64; c0 += 128) pv_regs(o, p, v, ldv, nk, hd, c0, 8);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4);
}
