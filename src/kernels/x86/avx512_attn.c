/* kernels/x86/avx512_attn.c: attention's two inner loops over a run of cached positions,
 * for one query row, over F32 rows or F16 rows converted as they are loaded. The query (scores) or the output row (weighted sum) stays in registers
 * across the run, in chunks of up to 8 vectors (head_dim 128); tails are masked.
 *
 * Batch invariance: a score is one accumulator over head_dim in 16-lane steps and one
 * horizontal sum, the same instructions for every key; an output element is a chain of FMAs
 * in key order. Neither depends on how many rows or keys a call is given. */
#include <immintrin.h>
#include <stdbool.h>

#include "kernels/impl.h"

void kl_avx512_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                           float *s);
void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);
void kl_avx512_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd,
                               float scale, float *s);
void kl_avx512_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);

static inline __mmask16 lanes(int n, int i)
{
    int r = n - i;
    return r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1);
}

/* 16 keys' or values' lanes from c, F32 or F16 (converted exactly: the same operands). */
static inline __m512 load_kv(const void *row, int c, __mmask16 m, bool f16)
{
    return f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + c))
               : _mm512_maskz_loadu_ps(m, (const float *)row + c);
}

/* Scores for head_dim <= 128: the query in nv registers. */
static inline __attribute__((always_inline)) void scores_regs(const float *q, const void *k,
                                                             int ldk, int nk, int hd,
                                                             float scale, float *s, int nv,
                                                             bool f16)
{
    __m512 qv[8];
    size_t es = f16 ? 2 : 4;
    for (int c = 0; c < nv; c++) qv[c] = _mm512_maskz_loadu_ps(lanes(hd, 16 * c), q + 16 * c);
    for (int j = 0; j < nk; j++) {
        const void *kj = (const char *)k + (size_t)j * (size_t)ldk * es;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < nv; c++)
            acc = _mm512_fmadd_ps(qv[c], load_kv(kj, 16 * c, lanes(hd, 16 * c), f16), acc);
        s[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

static inline __attribute__((always_inline)) void scores(const float *q, const void *k, int ldk,
                                                        int nk, int hd, float scale, float *s,
                                                        bool f16)
{
    switch ((hd + 15) / 16) { /* constant register counts for the common head sizes */
    case 4: scores_regs(q, k, ldk, nk, hd, scale, s, 4, f16); return;
    case 8: scores_regs(q, k, ldk, nk, hd, scale, s, 8, f16); return;
    default: break;
    }
    size_t es = f16 ? 2 : 4;
    for (int j = 0; j < nk; j++) {
        const void *kj = (const char *)k + (size_t)j * (size_t)ldk * es;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < hd; c += 16)
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes(hd, c), q + c),
                                  load_kv(kj, c, lanes(hd, c), f16), acc);
        s[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

void kl_avx512_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                           float *s)
{
    scores(q, k, ldk, nk, hd, scale, s, false);
}

void kl_avx512_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd,
                               float scale, float *s)
{
    scores(q, k, ldk, nk, hd, scale, s, true);
}

/* o[c0, c0 + 16 nv) += sum_j p[j] v_j[...], the chunk held in registers. */
static inline __attribute__((always_inline)) void pv_regs(float *o, const float *p,
                                                         const void *v, int ldv, int nk,
                                                         int hd, int c0, int nv, bool f16)
{
    __m512 acc[8];
    size_t es = f16 ? 2 : 4;
    for (int c = 0; c < nv; c++) acc[c] = _mm512_maskz_loadu_ps(lanes(hd, c0 + 16 * c), o + c0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const void *vj = (const char *)v + (size_t)j * (size_t)ldv * es;
        __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < nv; c++)
            acc[c] = _mm512_fmadd_ps(pj, load_kv(vj, c0 + 16 * c, lanes(hd, c0 + 16 * c), f16), acc[c]);
    }
    for (int c = 0; c < nv; c++) _mm512_mask_storeu_ps(o + c0 + 16 * c, lanes(hd, c0 + 16 * c), acc[c]);
}

void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    int c0 = 0;
    for (; hd - c0 > 64; c0 += 128) pv_regs(o, p, v, ldv, nk, hd, c0, 8, false);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4, false);
}

void kl_avx512_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd)
{
    int c0 = 0;
    for (; hd - c0 > 64; c0 += 128) pv_regs(o, p, v, ldv, nk, hd, c0, 8, true);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4, true);
}
