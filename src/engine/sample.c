/* engine/sample.c: per-sequence sampling (see sample.h for the order of operations and
 * the cost model).
 *
 * Candidates are (value, id) pairs. "Better" is a higher value, then a lower id, so every
 * selection and sort is a total order and results never depend on qsort's stability. */
#include "engine/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

typedef struct cand {
    float v;
    int32_t id;
} cand;

enum { M_SAVED = 1, M_PEN = 2 };

struct sample_scratch {
    int n_vocab;
    float *e;         /* (n_vocab) exp((l - max) / T) on the full-vocab paths */
    cand *c;          /* (n_vocab) candidates */
    cand *c2;         /* (n_vocab) radix sort buffer */
    float *raw;       /* (n_vocab) raw logit of each token modified this call (M_SAVED) */
    int32_t *cnt;     /* (n_vocab) occurrences in the output, for touched tokens */
    uint8_t *mark;    /* (n_vocab) M_* flags; all zero between calls */
    int32_t *touched; /* (n_vocab) ids with a nonzero mark this call */
    int n_touched;
};

/* ---- scratch ---- */

sample_scratch *sample_scratch_create(int n_vocab)
{
    if (n_vocab < 1) return NULL;
    sample_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t n = (size_t)n_vocab;
    s->n_vocab = n_vocab;
    s->e = malloc(n * sizeof *s->e);
    s->c = malloc(n * sizeof *s->c);
    s->c2 = malloc(n * sizeof *s->c2);
    s->raw = malloc(n * sizeof *s->raw);
    s->cnt = calloc(n, sizeof *s->cnt);
    s->mark = calloc(n, 1);
    s->touched = malloc(n * sizeof *s->touched);
    if (!s->e || !s->c || !s->c2 || !s->raw || !s->cnt || !s->mark || !s->touched) {
        sample_scratch_destroy(s);
        return NULL;
    }
    return s;
}

void sample_scratch_destroy(sample_scratch *s)
{
    if (!s) return;
    free(s->e);
    free(s->c);
    free(s->c2);
    free(s->raw);
    free(s->cnt);
    free(s->mark);
    free(s->touched);
    free(s);
}

/* ---- selection ---- */

static inline int better(cand a, cand b)
{
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    if (better(a, b)) return -1;
    if (better(b, a)) return 1;
    return 0;
}

/* Min-heap on "better": h[0] is the worst kept candidate. */
static void sift_down(cand *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w], h[l])) w = l;
        if (r < n && better(h[w], h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Writes the k best of v (n, no NaN) to out (k), best first. 1 <= k <= n. O(n log k). */
static void select_top(const float *v, int n, int k, cand *out)
{
    for (int i = 0; i < k; i++)
        out[i] = (cand){v[i], i};
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(out, k, i);
    for (int i = k; i < n; i++) {
        /* common case first: not better than the worst kept */
        if (v[i] < out[0].v || (v[i] == out[0].v)) continue; /* equal value: higher id loses */
        out[0] = (cand){v[i], i};
        sift_down(out, k, 0);
    }
    qsort(out, (size_t)k, sizeof *out, cand_cmp);
}

/* Sorts c (n, values >= 0, in id order) by value descending, ids ascending on ties: an
 * LSD radix sort on the float bits (stable, so equal values keep id order). tmp: (n). */
static void sort_desc(cand *c, cand *tmp, int n)
{
    if (n < 2) return;
    cand *src = c, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        uint32_t count[256] = {0};
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &src[i].v, 4);
            count[((~b) >> shift) & 255]++;
        }
        bool one = false;
        for (int k = 0; k < 256; k++)
            if (count[k] == (uint32_t)n) one = true;
        if (one) continue; /* every key has the same byte here */
        uint32_t pos = 0;
        for (int k = 0; k < 256; k++) {
            uint32_t t = count[k];
            count[k] = pos;
            pos += t;
        }
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &src[i].v, 4);
            dst[count[((~b) >> shift) & 255]++] = src[i];
        }
        cand *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, (size_t)n * sizeof *c);
}

/* ---- row sums ---- */

/* Sum of e (n) in double, eight partial sums (a fixed order: deterministic). */
static double sum_row(const float *e, int n)
{
    double z[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            z[j] += (double)e[i + j];
    for (; i < n; i++)
        z[0] += (double)e[i];
    return ((z[0] + z[1]) + (z[2] + z[3])) + ((z[4] + z[5]) + (z[6] + z[7]));
}

/* Max of l (n) in place after NaN -> -inf, +inf -> FLT_MAX; the lowest id of the max in
 * *argmax when not NULL. */
static float sanitize_max(float *l, int n, int32_t *argmax)
{
    float mx[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int bad = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float x = l[i + j];
            bad |= !(x <= FLT_MAX); /* NaN or +inf */
            mx[j] = x > mx[j] ? x : mx[j];
        }
    for (; i < n; i++) {
        bad |= !(l[i] <= FLT_MAX);
        mx[0] = l[i] > mx[0] ? l[i] : mx[0];
    }
    float m = -INFINITY;
    if (bad) { /* rare: fix the row, then one more plain pass */
        for (int k = 0; k < n; k++) {
            float x = l[k];
            if (!(x <= FLT_MAX)) l[k] = isnan(x) ? -INFINITY : FLT_MAX;
            if (l[k] > m) m = l[k];
        }
    } else {
        for (int j = 0; j < 8; j++)
            m = mx[j] > m ? mx[j] : m;
    }
    if (argmax) {
        int32_t a = 0;
        for (int k = 0; k < n; k++)
            if (l[k] == m) {
                a = k;
                break;
            }
        *argmax = a;
    }
    return m;
}

/* ---- modifications ---- */

static inline void save(sample_scratch *s, const float *logits, int32_t t)
{
    if (s->mark[t] & M_SAVED) return;
    if (!s->mark[t]) s->touched[s->n_touched++] = t;
    s->mark[t] |= M_SAVED;
    s->raw[t] = logits[t];
}

static void apply_bias(sample_scratch *s, float *logits, int n_vocab, const engine_sampling *sp)
{
    if (sp->n_logit_bias <= 0 || !sp->logit_bias_ids || !sp->logit_bias) return;
    for (int i = 0; i < sp->n_logit_bias; i++) {
        int32_t t = sp->logit_bias_ids[i];
        if (t < 0 || t >= n_vocab) continue;
        save(s, logits, t);
        logits[t] += sp->logit_bias[i];
    }
}

static void apply_penalties(sample_scratch *s, float *logits, int n_vocab,
                            const engine_sampling *sp, const int32_t *prompt, int n_prompt,
                            const int32_t *out, int n_out)
{
    float rp = sp->repetition_penalty;
    bool rep = rp > 0.0f && rp != 1.0f;
    bool pf = sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f;
    if (!rep && !pf) return;
    for (int i = 0; out && i < n_out; i++) {
        int32_t t = out[i];
        if (t < 0 || t >= n_vocab) continue;
        save(s, logits, t);
        s->mark[t] |= M_PEN;
        s->cnt[t]++;
    }
    if (rep)
        for (int i = 0; prompt && i < n_prompt; i++) {
            int32_t t = prompt[i];
            if (t < 0 || t >= n_vocab) continue;
            save(s, logits, t);
            s->mark[t] |= M_PEN;
        }
    for (int j = 0; j < s->n_touched; j++) {
        int32_t t = s->touched[j];
        if (!(s->mark[t] & M_PEN)) continue;
        float x = logits[t];
        if (rep) x = x > 0.0f ? x / rp : x * rp;
        int32_t c = s->cnt[t];
        if (c > 0) x -= (float)c * sp->frequency_penalty + sp->presence_penalty;
        logits[t] = x;
    }
}

/* ---- drawing ---- */

/* Picks among c (n >= 1) with weights c[i].v >= 0; u in [0, 1). */
static int32_t draw(const cand *c, int n, double u)
{
    double w = 0.0;
    for (int i = 0; i < n; i++)
        w += (double)c[i].v;
    double r = u * w, acc = 0.0;
    int32_t last = c[0].id;
    for (int i = 0; i < n; i++) {
        if (c[i].v <= 0.0f) continue;
        acc += (double)c[i].v;
        last = c[i].id;
        if (r < acc) return c[i].id;
    }
    return last; /* rounding: r landed at the very end */
}

/* Temperature, top_k, top_p, min_p and the draw. m is the max logit, best its lowest id. */
static int32_t sample_filtered(sample_scratch *s, const float *logits, int n,
                               const engine_sampling *sp, float m, int32_t best, double u)
{
    float inv_t = 1.0f / sp->temperature;
    bool use_k = sp->top_k > 0 && sp->top_k < n;
    bool use_p = sp->top_p < 1.0f; /* <= 0 keeps one token */
    bool use_min = sp->min_p > 0.0f;
    float min_p = sp->min_p;
    cand *c = s->c;
    int nc;

    if (use_k) {
        nc = sp->top_k;
        select_top(logits, n, nc, c);
        for (int i = 0; i < nc; i++)
            c[i].v = kl_exp((c[i].v - m) * inv_t);
        int keep = nc;
        if (use_p) {
            double z = 0.0;
            for (int i = 0; i < nc; i++)
                z += (double)c[i].v;
            double target = (double)sp->top_p * z, cum = 0.0;
            for (keep = 0; keep < nc;) {
                cum += (double)c[keep++].v;
                if (cum >= target) break;
            }
        }
        if (use_min)
            while (keep > 1 && c[keep - 1].v < min_p)
                keep--;
        return draw(c, keep, u);
    }

    if (use_p) {
        float *e = s->e;
        kl_exp_row(e, logits, n, m, inv_t);
        double z = sum_row(e, n);
        /* No token below (1 - top_p) / (n - 1) of the mass can be in the nucleus. */
        double thr = n > 1 ? (1.0 - (double)sp->top_p) / (double)(n - 1) * z : 0.0;
        if (use_min && (double)min_p > thr) thr = (double)min_p;
        if (thr > 1.0) thr = 1.0; /* the max token (e = 1) is always a candidate */
        float fthr = (float)thr;
        nc = 0;
        for (int i = 0; i < n; i++)
            if (e[i] >= fthr && e[i] > 0.0f) c[nc++] = (cand){e[i], i};
        if (nc == 0) return best; /* unreachable: the argmax has e = 1 */
        sort_desc(c, s->c2, nc);
        double target = (double)sp->top_p * z, cum = 0.0;
        int keep;
        for (keep = 0; keep < nc;) {
            cum += (double)c[keep++].v;
            if (cum >= target) break;
        }
        return draw(c, keep, u);
    }

    if (use_min) {
        float lo = logf(min_p); /* e >= min_p  <=>  (l - m) / T >= log(min_p) */
        nc = 0;
        for (int i = 0; i < n; i++) {
            float x = (logits[i] - m) * inv_t;
            if (x >= lo) c[nc++] = (cand){kl_exp(x), i};
        }
        if (nc == 0) return best; /* min_p > 1: nothing passes, not even the max */
        return draw(c, nc, u);
    }

    /* the full distribution, in id order */
    float *e = s->e;
    kl_exp_row(e, logits, n, m, inv_t);
    double z = sum_row(e, n);
    double r = u * z, acc = 0.0;
    int32_t last = 0;
    for (int i = 0; i < n; i++) {
        if (e[i] <= 0.0f) continue;
        acc += (double)e[i];
        last = i;
        if (r < acc) return i;
    }
    return last;
}

int32_t sample_token(sample_scratch *s, float *logits, int n_vocab, const engine_sampling *sp,
                     const int32_t *prompt, int n_prompt, const int32_t *out, int n_out,
                     kl_rng *rng, float *chosen_logprob, engine_logprob *top, int *n_top)
{
    if (chosen_logprob) *chosen_logprob = 0.0f;
    if (n_top) *n_top = 0;
    int n = n_vocab < s->n_vocab ? n_vocab : s->n_vocab;
    if (n < 1) return 0;

    /* 1. raw log probabilities */
    float lse = 0.0f, raw_max = -INFINITY;
    bool want_lp = sp->logprobs >= 0;
    if (want_lp) {
        raw_max = sanitize_max(logits, n, NULL);
        double z = 0.0;
        if (raw_max > -INFINITY) {
            kl_exp_row(s->e, logits, n, raw_max, 1.0f);
            z = sum_row(s->e, n);
        }
        lse = raw_max + (float)log(z);
        int k = sp->logprobs < ENGINE_MAX_LOGPROBS ? sp->logprobs : ENGINE_MAX_LOGPROBS;
        if (k > n) k = n;
        if (k > 0 && top && n_top) {
            cand best[ENGINE_MAX_LOGPROBS];
            select_top(logits, n, k, best);
            for (int i = 0; i < k; i++) {
                top[i].token = best[i].id;
                top[i].logprob = raw_max > -INFINITY ? best[i].v - lse : -INFINITY;
            }
            *n_top = k;
        }
    }

    /* 2-4. bias and penalties, in place; raw values of touched tokens are kept */
    s->n_touched = 0;
    apply_bias(s, logits, n, sp);
    apply_penalties(s, logits, n, sp, prompt, n_prompt, out, n_out);

    /* 5. greedy, or temperature and filters */
    int32_t best;
    float m = sanitize_max(logits, n, &best);
    int32_t tok;
    if (!(sp->temperature >= 1e-5f) || m == -INFINITY) {
        if (sp->temperature >= 1e-5f) (void)kl_rng_next(rng); /* one draw per sampled call */
        tok = best;
    } else {
        double u = kl_rng_unit(rng);
        tok = sample_filtered(s, logits, n, sp, m, best, u);
    }

    if (want_lp && chosen_logprob) {
        float raw = (s->mark[tok] & M_SAVED) ? s->raw[tok] : logits[tok];
        *chosen_logprob = raw_max > -INFINITY ? raw - lse : -INFINITY;
    }
    for (int j = 0; j < s->n_touched; j++) {
        int32_t t = s->touched[j];
        s->mark[t] = 0;
        s->cnt[t] = 0;
    }
    s->n_touched = 0;
    return tok;
}
