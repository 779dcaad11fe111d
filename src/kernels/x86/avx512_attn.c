/* kernels/x86/avx512_attn.c: attention's two inner loops over a run of cached positions,
 * for one query row, over F32 rows or F16 rows converted as they are loaded. The query (scores) or
 * the output row (weighted sum) stays in registers across the run, in chunks of up to 8 vectors
 * (head_dim 128); tails are masked.
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
void kl_avx512_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                            int ldv, int nk, int hd);
void kl_avx512_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr,
                                const uint16_t *v, int ldv, int nk, int hd);
void kl_avx512_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                                int hd, float scale, float *s, int lds);
void kl_avx512_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                    int nk, int hd, float scale, float *s, int lds);

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

/* The sum of a's 16 lanes in a fixed order: halves added lane-wise (i + 8, then i + 4, i + 2,
 * i + 1), written out so that sums16 below can give the same bits for 16 keys at once. */
static inline float hsum(__m512 a)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/* hsum of each of a[0..15], as one vector (lane j = hsum(a[j])): the same additions, pairing
 * lanes of different keys in one instruction (15 adds and 30 shuffles instead of 16 x 4 adds
 * and 16 x 4 shuffles). Step 1 adds 256-bit halves of keys e, e+4 (and e+8, e+12), step 2 the
 * 128-bit quarters, steps 3 and 4 within 128-bit lanes; the key order comes out straight. */
static inline __m512 sums16(const __m512 a[16])
{
    __m512 z[4];
    for (int e = 0; e < 4; e++) {
        __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(a[e], a[e + 4], 0x44),  /* lo halves */
                                 _mm512_shuffle_f32x4(a[e], a[e + 4], 0xEE)); /* hi halves */
        __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(a[e + 8], a[e + 12], 0x44),
                                 _mm512_shuffle_f32x4(a[e + 8], a[e + 12], 0xEE));
        /* x = [e: 8 sums | e+4: 8 sums], y likewise for e+8, e+12; quarters 0-3 of z[e] are
         * keys e, e+4, e+8, e+12, 4 sums each */
        z[e] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
    }
    /* within each quarter L: [z0 0+2, z0 1+3, z1 0+2, z1 1+3], then pairs summed */
    __m512 w0 =
        _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x44), _mm512_shuffle_ps(z[0], z[1], 0xEE));
    __m512 w1 =
        _mm512_add_ps(_mm512_shuffle_ps(z[2], z[3], 0x44), _mm512_shuffle_ps(z[2], z[3], 0xEE));
    /* quarter L: [key 4L + 0, 4L + 1, 4L + 2, 4L + 3] */
    return _mm512_add_ps(_mm512_shuffle_ps(w0, w1, 0x88), _mm512_shuffle_ps(w0, w1, 0xDD));
}

/* Scores for head_dim <= 128: the query in nv registers; keys 16 at a time, then one by one. */
static inline __attribute__((always_inline)) void scores_regs(const float *q, const void *k,
                                                              int ldk, int nk, int hd, float scale,
                                                              float *s, int nv, bool f16, bool full)
{
    __m512 qv[8];
    __mmask16 m[8]; /* all ones when hd = 16 nv (full): plain loads */
    size_t es = f16 ? 2 : 4;
    _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++)
    {
        m[c] = full ? (__mmask16)0xFFFF : lanes(hd, 16 * c);
        qv[c] = _mm512_maskz_loadu_ps(m[c], q + 16 * c);
    }
    int j = 0;
    for (; j + 16 <= nk; j += 16) {
        __m512 acc[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)
        {
            const void *kj = (const char *)k + (size_t)(j + i) * (size_t)ldk * es;
            acc[i] = _mm512_setzero_ps();
            _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) acc[i] =
                _mm512_fmadd_ps(qv[c], load_kv(kj, 16 * c, m[c], f16), acc[i]);
        }
        _mm512_storeu_ps(s + j, _mm512_mul_ps(sums16(acc), _mm512_set1_ps(scale)));
    }
    for (; j < nk; j++) {
        const void *kj = (const char *)k + (size_t)j * (size_t)ldk * es;
        __m512 acc = _mm512_setzero_ps();
        _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) acc =
            _mm512_fmadd_ps(qv[c], load_kv(kj, 16 * c, m[c], f16), acc);
        s[j] = hsum(acc) * scale;
    }
}

static inline __attribute__((always_inline)) void
scores(const float *q, const void *k, int ldk, int nk, int hd, float scale, float *s, bool f16)
{
    switch ((hd + 15) / 16) { /* constant register counts for the common head sizes */
    case 4:
        if (hd == 64)
            scores_regs(q, k, ldk, nk, hd, scale, s, 4, f16, true);
        else
            scores_regs(q, k, ldk, nk, hd, scale, s, 4, f16, false);
        return;
    case 8:
        if (hd == 128)
            scores_regs(q, k, ldk, nk, hd, scale, s, 8, f16, true);
        else
            scores_regs(q, k, ldk, nk, hd, scale, s, 8, f16, false);
        return;
    default:
        break;
    }
    size_t es = f16 ? 2 : 4;
    for (int j = 0; j < nk; j++) {
        const void *kj = (const char *)k + (size_t)j * (size_t)ldk * es;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < hd; c += 16)
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes(hd, c), q + c),
                                  load_kv(kj, c, lanes(hd, c), f16), acc);
        s[j] = hsum(acc) * scale;
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

/* Scores of 4 query rows (q + h * ldq into s + h * lds) for head_dim = 16 nv (64 or 128), keys
 * 4 at a time: each key's vectors are loaded (converted from F16) once for the 4 rows, where
 * one row at a time converts them once per row (GQA's query heads share their KV head: 4 per
 * head in llama3). The 16 sums (row h, key i in a[4h + i]) go through sums16, so each score is
 * the one-row kernel's accumulator and horizontal sum: the same bits. Tail keys: one row at a
 * time. */
static inline __attribute__((always_inline)) void scores4_regs(const float *q, int ldq,
                                                               const void *k, int ldk, int nk,
                                                               float scale, float *s, int lds,
                                                               int nv, bool f16)
{
    size_t es = f16 ? 2 : 4;
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        __m512 acc[16];
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
        {
            const void *kj = (const char *)k + (size_t)(j + i) * (size_t)ldk * es;
            __m512 kv[8];
            _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) kv[c] =
                load_kv(kj, 16 * c, (__mmask16)0xFFFF, f16);
            _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)
            {
                const float *qh = q + (size_t)h * (size_t)ldq;
                __m512 a = _mm512_setzero_ps();
                _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) a =
                    _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * c), kv[c], a);
                acc[4 * h + i] = a;
            }
        }
        __m512 r = _mm512_mul_ps(sums16(acc), _mm512_set1_ps(scale));
        _mm_storeu_ps(s + j, _mm512_castps512_ps128(r));
        _mm_storeu_ps(s + (size_t)lds + j, _mm512_extractf32x4_ps(r, 1));
        _mm_storeu_ps(s + 2 * (size_t)lds + j, _mm512_extractf32x4_ps(r, 2));
        _mm_storeu_ps(s + 3 * (size_t)lds + j, _mm512_extractf32x4_ps(r, 3));
    }
    if (j < nk)
        for (int h = 0; h < 4; h++)
            scores_regs(q + (size_t)h * (size_t)ldq, (const char *)k + (size_t)j * (size_t)ldk * es,
                        ldk, nk - j, 16 * nv, scale, s + (size_t)h * (size_t)lds + j, nv, f16,
                        true);
}

static inline __attribute__((always_inline)) void scores_rows(const float *q, int ldq, int nr,
                                                              const void *k, int ldk, int nk,
                                                              int hd, float scale, float *s,
                                                              int lds, bool f16)
{
    int r = 0;
    if (hd == 64 || hd == 128)
        for (; r + 4 <= nr; r += 4) {
            const float *qr = q + (size_t)r * (size_t)ldq;
            float *sr = s + (size_t)r * (size_t)lds;
            if (hd == 64)
                scores4_regs(qr, ldq, k, ldk, nk, scale, sr, lds, 4, f16);
            else
                scores4_regs(qr, ldq, k, ldk, nk, scale, sr, lds, 8, f16);
        }
    for (; r < nr; r++)
        scores(q + (size_t)r * (size_t)ldq, k, ldk, nk, hd, scale, s + (size_t)r * (size_t)lds,
               f16);
}

void kl_avx512_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                                int hd, float scale, float *s, int lds)
{
    scores_rows(q, ldq, nr, k, ldk, nk, hd, scale, s, lds, false);
}

void kl_avx512_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                    int nk, int hd, float scale, float *s, int lds)
{
    scores_rows(q, ldq, nr, k, ldk, nk, hd, scale, s, lds, true);
}

/* o[c0, c0 + 16 nv) += sum_j p[j] v_j[...], the chunk held in registers. */
static inline __attribute__((always_inline)) void
pv_regs(float *o, const float *p, const void *v, int ldv, int nk, int hd, int c0, int nv, bool f16)
{
    __m512 acc[8];
    size_t es = f16 ? 2 : 4;
    for (int c = 0; c < nv; c++)
        acc[c] = _mm512_maskz_loadu_ps(lanes(hd, c0 + 16 * c), o + c0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const void *vj = (const char *)v + (size_t)j * (size_t)ldv * es;
        __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < nv; c++)
            acc[c] =
                _mm512_fmadd_ps(pj, load_kv(vj, c0 + 16 * c, lanes(hd, c0 + 16 * c), f16), acc[c]);
    }
    for (int c = 0; c < nv; c++)
        _mm512_mask_storeu_ps(o + c0 + 16 * c, lanes(hd, c0 + 16 * c), acc[c]);
}

void kl_avx512_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd)
{
    int c0 = 0;
    for (; hd - c0 > 64; c0 += 128)
        pv_regs(o, p, v, ldv, nk, hd, c0, 8, false);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4, false);
}

void kl_avx512_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd)
{
    int c0 = 0;
    for (; hd - c0 > 64; c0 += 128)
        pv_regs(o, p, v, ldv, nk, hd, c0, 8, true);
    if (c0 < hd) pv_regs(o, p, v, ldv, nk, hd, c0, 4, true);
}

/* pv_regs for NR rows (of weights p + r * ldp, outputs o + r * ldo) at once: each value vector
 * is loaded once for the NR rows, whose NR * nv sums are independent chains. */
static inline __attribute__((always_inline)) void pv_rows_regs(float *o, int ldo, const float *p,
                                                               int ldp, const void *v, int ldv,
                                                               int nk, int hd, int c0, int NR,
                                                               int nv, bool f16, bool full)
{
    __m512 acc[4][8];
    __mmask16 m[8]; /* all ones when the chunk has no tail (full): plain loads */
    size_t es = f16 ? 2 : 4;
    _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) m[c] =
        full ? (__mmask16)0xFFFF : lanes(hd, c0 + 16 * c);
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) acc[r][c] =
            _mm512_maskz_loadu_ps(m[c], o + (size_t)r * ldo + c0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const void *vj = (const char *)v + (size_t)j * (size_t)ldv * es;
        __m512 vv[8];
        _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) vv[c] =
            load_kv(vj, c0 + 16 * c, m[c], f16);
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)
        {
            __m512 pj = _mm512_set1_ps(p[(size_t)r * ldp + j]);
            _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++) acc[r][c] =
                _mm512_fmadd_ps(pj, vv[c], acc[r][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 8") for (int c = 0; c < nv; c++)
            _mm512_mask_storeu_ps(o + (size_t)r * ldo + c0 + 16 * c, m[c], acc[r][c]);
}

/* Rows in groups of 16 / nv (16 sums in registers), the last group smaller; a chunk of 128
 * columns (8 vectors) or of the last 64 or fewer (4). */
#define PV_GROUPS(NV, G, FULL)                                                                     \
    do {                                                                                           \
        int r = 0;                                                                                 \
        for (; r + G <= nr; r += G)                                                                \
            pv_rows_regs(o + (size_t)r * ldo, ldo, p + (size_t)r * ldp, ldp, v, ldv, nk, hd, c0,   \
                         G, NV, f16, FULL);                                                        \
        float *orow = o + (size_t)r * ldo;                                                         \
        const float *prow = p + (size_t)r * ldp;                                                   \
        switch (nr - r) {                                                                          \
        case 3:                                                                                    \
            pv_rows_regs(orow, ldo, prow, ldp, v, ldv, nk, hd, c0, 3, NV, f16, FULL);              \
            break;                                                                                 \
        case 2:                                                                                    \
            pv_rows_regs(orow, ldo, prow, ldp, v, ldv, nk, hd, c0, 2, NV, f16, FULL);              \
            break;                                                                                 \
        case 1:                                                                                    \
            pv_rows_regs(orow, ldo, prow, ldp, v, ldv, nk, hd, c0, 1, NV, f16, FULL);              \
            break;                                                                                 \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

static inline __attribute__((always_inline)) void pv_rows(float *o, int ldo, const float *p,
                                                          int ldp, int nr, const void *v, int ldv,
                                                          int nk, int hd, bool f16)
{
    for (int c0 = 0; c0 < hd; c0 += 128) {
        int left = hd - c0;
        if (left >= 128)
            PV_GROUPS(8, 2, true);
        else if (left > 64)
            PV_GROUPS(8, 2, false);
        else if (left == 64)
            PV_GROUPS(4, 4, true);
        else
            PV_GROUPS(4, 4, false);
    }
}

void kl_avx512_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                            int ldv, int nk, int hd)
{
    pv_rows(o, ldo, p, ldp, nr, v, ldv, nk, hd, false);
}

void kl_avx512_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr,
                                const uint16_t *v, int ldv, int nk, int hd)
{
    pv_rows(o, ldo, p, ldp, nr, v, ldv, nk, hd, true);
}
