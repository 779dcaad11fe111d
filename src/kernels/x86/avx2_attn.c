/* kernels/x86/avx2_attn.c: attention's two inner loops over a run of cached positions, for one
 * query row, over F32 rows or F16 rows converted as they are loaded (8 lanes: AVX2 + FMA +
 * F16C), the AVX2 forms of x86/avx512_attn.c. Tails of fewer than 8 lanes: masked loads and
 * stores (F32) or a zero-padded copy (F16).
 *
 * Batch invariance: a score is one accumulator over head_dim in 8-lane steps and one
 * horizontal sum (kl_avx2_hsum_ps), the same instructions for every key (4 keys are computed
 * side by side only to overlap their chains); an output element is a chain of FMAs in key
 * order. Neither depends on how many rows or keys a call is given, and the _rows forms are
 * the one-row kernels called per row: the same bits by construction. */
#include <immintrin.h>
#include <stdbool.h>

#include "kernels/impl.h"
#include "kernels/x86/avx2_lanes.h"
#include "kernels/x86/avx2_reduce.h"
#include "kernels/x86/avx2_vec.h"

/* 8 lanes of a key or value row from column c, F32 or F16 (converted exactly: the same
 * operands); lanes at or past hd read as 0. */
static inline __m256 load_kv(const void *row, int c, int hd, bool f16)
{
    if (!f16) {
        const float *p = (const float *)row + c;
        return hd - c >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, kl_avx2_mask(hd - c));
    }
    return kl_avx2_load_ph((const uint16_t *)row + c, hd - c);
}

static inline __m256 load_q(const float *q, int c, int hd)
{
    return hd - c >= 8 ? _mm256_loadu_ps(q + c) : _mm256_maskload_ps(q + c, kl_avx2_mask(hd - c));
}

/* Keys 4 at a time (4 independent chains), then one by one: each key's score is the same
 * accumulator chain and horizontal sum either way. */
static inline __attribute__((always_inline)) void
scores(const float *q, const void *k, int ldk, int nk, int hd, float scale, float *s, bool f16)
{
    size_t es = f16 ? 2 : 4, row = (size_t)ldk * es;
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        const char *k0 = (const char *)k + (size_t)j * row;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int c = 0; c < hd; c += 8) {
            __m256 qv = load_q(q, c, hd);
            a0 = _mm256_fmadd_ps(qv, load_kv(k0, c, hd, f16), a0);
            a1 = _mm256_fmadd_ps(qv, load_kv(k0 + row, c, hd, f16), a1);
            a2 = _mm256_fmadd_ps(qv, load_kv(k0 + 2 * row, c, hd, f16), a2);
            a3 = _mm256_fmadd_ps(qv, load_kv(k0 + 3 * row, c, hd, f16), a3);
        }
        s[j] = kl_avx2_hsum_ps(a0) * scale;
        s[j + 1] = kl_avx2_hsum_ps(a1) * scale;
        s[j + 2] = kl_avx2_hsum_ps(a2) * scale;
        s[j + 3] = kl_avx2_hsum_ps(a3) * scale;
    }
    for (; j < nk; j++) {
        const char *kj = (const char *)k + (size_t)j * row;
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < hd; c += 8)
            a = _mm256_fmadd_ps(load_q(q, c, hd), load_kv(kj, c, hd, f16), a);
        s[j] = kl_avx2_hsum_ps(a) * scale;
    }
}

void kl_avx2_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                         float *s)
{
    scores(q, k, ldk, nk, hd, scale, s, false);
}

void kl_avx2_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd,
                             float scale, float *s)
{
    scores(q, k, ldk, nk, hd, scale, s, true);
}

void kl_avx2_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                              int hd, float scale, float *s, int lds)
{
    for (int r = 0; r < nr; r++)
        scores(q + (size_t)r * (size_t)ldq, k, ldk, nk, hd, scale, s + (size_t)r * (size_t)lds,
               false);
}

void kl_avx2_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                  int nk, int hd, float scale, float *s, int lds)
{
    for (int r = 0; r < nr; r++)
        scores(q + (size_t)r * (size_t)ldq, k, ldk, nk, hd, scale, s + (size_t)r * (size_t)lds,
               true);
}

/* o[c0, c0 + 8 nv) += sum_j p[j] v_j[...], the chunk held in nv registers (lanes at or past
 * hd neither read nor written). */
static inline __attribute__((always_inline)) void
pv_regs(float *o, const float *p, const void *v, int ldv, int nk, int hd, int c0, int nv, bool f16)
{
    __m256 acc[8];
    size_t es = f16 ? 2 : 4;
    for (int c = 0; c < nv; c++)
        acc[c] = load_q(o, c0 + 8 * c, hd);
    for (int j = 0; j < nk; j++) {
        const void *vj = (const char *)v + (size_t)j * (size_t)ldv * es;
        __m256 pj = _mm256_set1_ps(p[j]);
        for (int c = 0; c < nv; c++)
            acc[c] = _mm256_fmadd_ps(pj, load_kv(vj, c0 + 8 * c, hd, f16), acc[c]);
    }
    for (int c = 0; c < nv; c++) {
        int cc = c0 + 8 * c;
        if (hd - cc >= 8)
            _mm256_storeu_ps(o + cc, acc[c]);
        else
            _mm256_maskstore_ps(o + cc, kl_avx2_mask(hd - cc), acc[c]);
    }
}

/* Chunks of 64 columns (8 registers), the last one of 1..4 or 5..8 registers. */
static inline __attribute__((always_inline)) void pv(float *o, const float *p, const void *v,
                                                     int ldv, int nk, int hd, bool f16)
{
    int c0 = 0;
    for (; hd - c0 > 32; c0 += 64)
        pv_regs(o, p, v, ldv, nk, hd, c0, 8, f16);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4, f16);
}

void kl_avx2_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    pv(o, p, v, ldv, nk, hd, false);
}

void kl_avx2_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd)
{
    pv(o, p, v, ldv, nk, hd, true);
}

void kl_avx2_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                          int ldv, int nk, int hd)
{
    for (int r = 0; r < nr; r++)
        pv(o + (size_t)r * (size_t)ldo, p + (size_t)r * (size_t)ldp, v, ldv, nk, hd, false);
}

void kl_avx2_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                              int ldv, int nk, int hd)
{
    for (int r = 0; r < nr; r++)
        pv(o + (size_t)r * (size_t)ldo, p + (size_t)r * (size_t)ldp, v, ldv, nk, hd, true);
}
