/* engine/sample: greedy, seeded draws, the distribution at T=1 (chi-square with a fixed
 * seed), top_k / top_p / min_p against a full-sort reference on a large vocabulary,
 * penalties, logit bias, log probabilities, non-finite logits. */
#include <float.h>
#include <stdbool.h>
#include <time.h>

#include "engine/sample.h"
#include "kernels/kernels.h"
#include "t.h"

static void sp_init(engine_sampling *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->temperature = 1.0f;
    sp->top_p = 1.0f;
    sp->repetition_penalty = 1.0f;
    sp->logprobs = -1;
    sp->max_tokens = 16;
}

/* Deterministic test logits in [-scale, scale]. */
static void fill_logits(float *l, int n, uint64_t seed, float scale)
{
    kl_rng r;
    kl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        l[i] = (float)(kl_rng_unit(&r) * 2.0 - 1.0) * scale;
}

static int32_t argmax(const float *l, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static int32_t sample1(sample_scratch *s, const float *logits, int n, const engine_sampling *sp,
                       kl_rng *rng)
{
    static float work[1 << 17];
    T_ASSERT(n <= (1 << 17));
    memcpy(work, logits, (size_t)n * sizeof *work);
    int32_t t = sample_token(s, work, n, sp, NULL, 0, NULL, 0, rng, NULL, NULL, NULL);
    T_ASSERT(t >= 0 && t < n);
    return t;
}

TEST(engine_sample_greedy_is_argmax)
{
    enum { N = 5000 };
    static float l[N];
    sample_scratch *s = sample_scratch_create(N);
    T_ASSERT(s);
    engine_sampling sp;
    sp_init(&sp);
    for (int trial = 0; trial < 50; trial++) {
        fill_logits(l, N, (uint64_t)trial, 10.0f);
        kl_rng r, r0;
        kl_rng_seed(&r, 7);
        r0 = r;
        sp.temperature = 0.0f;
        T_EQ(sample1(s, l, N, &sp, &r), argmax(l, N));
        sp.temperature = 5e-6f; /* below 1e-5 is greedy too */
        T_EQ(sample1(s, l, N, &sp, &r), argmax(l, N));
        T_MEMEQ(&r, &r0, sizeof r); /* greedy does not advance the generator */
    }
    /* ties: lowest id */
    for (int i = 0; i < N; i++)
        l[i] = 0.0f;
    l[17] = l[3000] = l[9] = 2.0f;
    kl_rng r;
    kl_rng_seed(&r, 1);
    sp.temperature = 0.0f;
    T_EQ(sample1(s, l, N, &sp, &r), 9);
    sample_scratch_destroy(s);
    T_ASSERT(sample_scratch_create(0) == NULL);
    sample_scratch_destroy(NULL);
}

TEST(engine_sample_same_seed_same_draws)
{
    enum { N = 1000 };
    static float l[N];
    fill_logits(l, N, 3, 3.0f);
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    sp_init(&sp);
    sp.temperature = 0.9f;
    sp.top_p = 0.95f;
    int32_t a[300], b[300];
    int differ = 0;
    for (int pass = 0; pass < 3; pass++) {
        kl_rng r;
        kl_rng_seed(&r, pass == 2 ? 1235 : 1234);
        for (int i = 0; i < 300; i++) {
            int32_t t = sample1(s, l, N, &sp, &r);
            if (pass == 0)
                a[i] = t;
            else if (pass == 1)
                b[i] = t;
            else
                differ += t != a[i];
        }
    }
    T_MEMEQ(a, b, sizeof a);
    T_ASSERT(differ > 200); /* another seed gives other draws */
    sample_scratch_destroy(s);
}

/* Pearson chi-square of counts against probabilities p. */
static double chi2(const int *count, const double *p, int n, int draws)
{
    double x = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * draws;
        x += (count[i] - e) * (count[i] - e) / e;
    }
    return x;
}

static void softmax_ref(const float *l, int n, float t, double *p)
{
    double m = -1e300, z = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, (double)l[i] / (double)t);
    for (int i = 0; i < n; i++)
        z += (p[i] = exp((double)l[i] / (double)t - m));
    for (int i = 0; i < n; i++)
        p[i] /= z;
}

TEST(engine_sample_frequencies_match_softmax)
{
    enum { N = 8, DRAWS = 200000 };
    float l[N] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.25f, 1.5f};
    double p[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    sp_init(&sp);
    const float temps[3] = {1.0f, 0.5f, 2.0f};
    for (int ti = 0; ti < 3; ti++) {
        sp.temperature = temps[ti];
        softmax_ref(l, N, sp.temperature, p);
        int count[N] = {0};
        kl_rng r;
        kl_rng_seed(&r, 2024 + (uint64_t)ti);
        for (int d = 0; d < DRAWS; d++)
            count[sample1(s, l, N, &sp, &r)]++;
        double x = chi2(count, p, N, DRAWS);
        printf("# T=%.1f chi2=%.2f (df 7, 0.1%% critical 24.3)\n", (double)sp.temperature, x);
        T_ASSERT(x < 24.3);
    }
    /* a wrong distribution fails the same check: guard against a test that cannot fail */
    sp.temperature = 1.0f;
    softmax_ref(l, N, 1.1f, p);
    int count[N] = {0};
    kl_rng r;
    kl_rng_seed(&r, 99);
    for (int d = 0; d < DRAWS; d++)
        count[sample1(s, l, N, &sp, &r)]++;
    T_ASSERT(chi2(count, p, N, DRAWS) > 100.0);
    sample_scratch_destroy(s);
}

TEST(engine_sample_top_k_1_and_tiny_top_p_are_greedy)
{
    enum { N = 32000 };
    static float l[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    sp_init(&sp);
    kl_rng r;
    kl_rng_seed(&r, 5);
    for (int trial = 0; trial < 40; trial++) {
        fill_logits(l, N, 100 + (uint64_t)trial, 4.0f);
        int32_t g = argmax(l, N);
        sp_init(&sp);
        sp.top_k = 1;
        T_EQ(sample1(s, l, N, &sp, &r), g);
        sp_init(&sp);
        sp.top_p = 1e-6f;
        T_EQ(sample1(s, l, N, &sp, &r), g);
        sp.top_p = 0.0f;
        T_EQ(sample1(s, l, N, &sp, &r), g);
        sp_init(&sp);
        sp.min_p = 1.0f; /* only the max itself */
        T_EQ(sample1(s, l, N, &sp, &r), g);
    }
    sample_scratch_destroy(s);
}

/* A straightforward reference: full exp, full sort, then the same filters and the same
 * draw arithmetic as sample.c's (so the same u gives the same token). */
typedef struct rc {
    float e;
    int32_t id;
} rc;
static int rc_cmp(const void *a, const void *b)
{
    const rc *x = a, *y = b;
    if (x->e != y->e) return x->e > y->e ? -1 : 1;
    return x->id < y->id ? -1 : 1;
}

/* The sampler's own summation order over a full row: eight partial sums. */
static double sum8(const float *e, int n)
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

static int32_t ref_sample(const float *l, int n, const engine_sampling *sp, double u, int *n_kept)
{
    static rc c[1 << 17];
    static float e[1 << 17];
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, l[i]);
    float inv_t = 1.0f / sp->temperature;
    bool use_k = sp->top_k > 0 && sp->top_k < n, use_p = sp->top_p < 1.0f;
    int nc = n;
    double z = 0;
    if (use_k) { /* rank by logit, keep k, then exponentiate */
        for (int i = 0; i < n; i++)
            c[i] = (rc){l[i], i};
        qsort(c, (size_t)n, sizeof *c, rc_cmp);
        nc = sp->top_k;
        for (int i = 0; i < nc; i++)
            z += (double)(c[i].e = kl_exp((c[i].e - m) * inv_t));
    } else {
        for (int i = 0; i < n; i++)
            c[i] = (rc){e[i] = kl_exp((l[i] - m) * inv_t), i};
        z = sum8(e, n);
        if (use_p) qsort(c, (size_t)n, sizeof *c, rc_cmp);
    }
    int keep = nc;
    if (use_p) {
        double cum = 0, target = (double)sp->top_p * z;
        for (keep = 0; keep < nc;) {
            cum += (double)c[keep++].e;
            if (cum >= target) break;
        }
    }
    if (sp->min_p > 0.0f) {
        if (use_k || use_p) {
            while (keep > 1 && c[keep - 1].e < sp->min_p)
                keep--;
        } else { /* min_p alone: filter in id order */
            int k = 0;
            for (int i = 0; i < nc; i++)
                if (c[i].e >= sp->min_p) c[k++] = c[i];
            keep = k;
        }
    }
    *n_kept = keep;
    double w = 0;
    if (!use_k && !use_p && !(sp->min_p > 0.0f))
        w = z; /* the unfiltered path draws against the row's sum */
    else
        for (int i = 0; i < keep; i++)
            w += (double)c[i].e;
    double r = u * w, acc = 0;
    int32_t last = c[0].id;
    for (int i = 0; i < keep; i++) {
        if (c[i].e <= 0.0f) continue;
        acc += (double)c[i].e;
        last = c[i].id;
        if (r < acc) return c[i].id;
    }
    return last;
}

TEST(engine_sample_filters_match_full_sort_reference)
{
    enum { N = 50000 };
    static float l[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    struct {
        int k;
        float p, min_p, t;
    } cfg[] = {
        {0, 0.9f, 0.0f, 0.8f},    {0, 0.5f, 0.0f, 1.0f},  {40, 1.0f, 0.0f, 1.0f},
        {40, 0.9f, 0.0f, 0.7f},   {0, 1.0f, 0.05f, 1.0f}, {0, 0.95f, 0.1f, 1.3f},
        {200, 0.8f, 0.02f, 1.0f}, {5, 0.99f, 0.0f, 2.0f},
    };
    int mismatches = 0, total = 0; /* the reference repeats the sampler's arithmetic */
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        sp_init(&sp);
        sp.top_k = cfg[ci].k;
        sp.top_p = cfg[ci].p;
        sp.min_p = cfg[ci].min_p;
        sp.temperature = cfg[ci].t;
        int kept_max = 0;
        for (int trial = 0; trial < 12; trial++) {
            /* peaked logits like a language model's: a few high, a long low tail */
            fill_logits(l, N, 1000 * ci + (uint64_t)trial, 3.0f);
            for (int i = 0; i < 30; i++)
                l[(i * 7919 + trial) % N] += 9.0f - 0.3f * (float)i;
            kl_rng r1, r2;
            kl_rng_seed(&r1, 77 + (uint64_t)trial);
            r2 = r1;
            for (int d = 0; d < 20; d++) {
                int32_t got = sample1(s, l, N, &sp, &r1);
                int kept;
                int32_t want = ref_sample(l, N, &sp, kl_rng_unit(&r2), &kept);
                if (kept > kept_max) kept_max = kept;
                mismatches += got != want;
                total++;
            }
        }
        printf("# k=%d p=%.2f min_p=%.2f T=%.1f: up to %d tokens kept\n", cfg[ci].k,
               (double)cfg[ci].p, (double)cfg[ci].min_p, (double)cfg[ci].t, kept_max);
        T_ASSERT(kept_max > 1); /* the filters left a real choice */
    }
    T_EQ(mismatches, 0);
    T_EQ(total, 8 * 12 * 20);
    sample_scratch_destroy(s);
}

TEST(engine_sample_top_k_and_top_p_keep_the_right_set)
{
    enum { N = 6, DRAWS = 60000 };
    /* probabilities 0.5 0.3 0.15 0.05 (and two near zero) */
    float l[N] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f), -40.0f, -40.0f};
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    kl_rng r;
    kl_rng_seed(&r, 11);
    int count[N];

    sp_init(&sp);
    sp.top_p = 0.75f; /* nucleus {0, 1}: 0.5 < 0.75 <= 0.8 */
    memset(count, 0, sizeof count);
    for (int d = 0; d < DRAWS; d++)
        count[sample1(s, l, N, &sp, &r)]++;
    T_EQ(count[2] + count[3] + count[4] + count[5], 0);
    T_NEAR((double)count[0] / DRAWS, 0.5 / 0.8, 0.01);

    sp_init(&sp);
    sp.top_k = 3;
    memset(count, 0, sizeof count);
    for (int d = 0; d < DRAWS; d++)
        count[sample1(s, l, N, &sp, &r)]++;
    T_EQ(count[3] + count[4] + count[5], 0);
    T_NEAR((double)count[2] / DRAWS, 0.15 / 0.95, 0.01);

    sp_init(&sp);
    sp.min_p = 0.35f; /* keeps p >= 0.175: {0, 1} */
    memset(count, 0, sizeof count);
    for (int d = 0; d < DRAWS; d++)
        count[sample1(s, l, N, &sp, &r)]++;
    T_EQ(count[2] + count[3] + count[4] + count[5], 0);
    T_ASSERT(count[1] > DRAWS / 4);
    sp.min_p = 0.2f; /* keeps p >= 0.1: {0, 1, 2} */
    memset(count, 0, sizeof count);
    for (int d = 0; d < DRAWS; d++)
        count[sample1(s, l, N, &sp, &r)]++;
    T_EQ(count[3] + count[4] + count[5], 0);
    T_ASSERT(count[2] > DRAWS / 10);
    sample_scratch_destroy(s);
}

TEST(engine_sample_penalties_change_the_right_logits)
{
    enum { N = 10 };
    float l0[N] = {1, 4, -1, 2, 0.5f, 3, -2, 0, 6, 1};
    float l[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    kl_rng r;
    kl_rng_seed(&r, 1);
    int32_t prompt[] = {1, 2, 1, 1, 99, -3}; /* out-of-range ids are ignored */
    int32_t out[] = {3, 3, 5, 2};

    sp_init(&sp);
    sp.temperature = 0.0f;
    sp.repetition_penalty = 2.0f;
    memcpy(l, l0, sizeof l);
    sample_token(s, l, N, &sp, prompt, 6, out, 4, &r, NULL, NULL, NULL);
    float want_rep[N] = {1, 2, -2, 1, 0.5f, 1.5f, -2, 0, 6, 1}; /* once per distinct token */
    for (int i = 0; i < N; i++)
        T_NEAR(l[i], want_rep[i], 1e-6);

    sp_init(&sp);
    sp.temperature = 0.0f;
    sp.presence_penalty = 0.5f;
    sp.frequency_penalty = 0.25f;
    memcpy(l, l0, sizeof l);
    sample_token(s, l, N, &sp, prompt, 6, out, 4, &r, NULL, NULL, NULL);
    float want_pf[N] = {1, 4, -1.75f, 1.0f, 0.5f, 2.25f, -2, 0, 6, 1}; /* prompt-only: untouched */
    for (int i = 0; i < N; i++)
        T_NEAR(l[i], want_pf[i], 1e-6);

    /* all together, then a call without penalties: no state leaks between calls */
    sp.repetition_penalty = 2.0f;
    memcpy(l, l0, sizeof l);
    sample_token(s, l, N, &sp, prompt, 6, out, 4, &r, NULL, NULL, NULL);
    T_NEAR(l[3], 2.0f / 2.0f - 1.0f, 1e-6);
    T_NEAR(l[2], -1.0f * 2.0f - 0.75f, 1e-6);
    T_NEAR(l[1], 2.0f, 1e-6);
    sp_init(&sp);
    sp.temperature = 0.0f;
    sp.frequency_penalty = 1.0f;
    memcpy(l, l0, sizeof l);
    int32_t out2[] = {8};
    T_EQ(sample_token(s, l, N, &sp, NULL, 0, out2, 1, &r, NULL, NULL, NULL), 8);
    T_NEAR(l[8], 5.0f, 1e-6);
    for (int i = 0; i < 8; i++)
        T_NEAR(l[i], l0[i], 0);
    /* a big frequency penalty turns greedy away from a repeated token */
    sp.frequency_penalty = 2.0f;
    memcpy(l, l0, sizeof l);
    T_EQ(sample_token(s, l, N, &sp, NULL, 0, out2, 1, &r, NULL, NULL, NULL), 1);
    sample_scratch_destroy(s);
}

TEST(engine_sample_logit_bias_bans_and_forces)
{
    enum { N = 1000 };
    static float l[N];
    fill_logits(l, N, 8, 5.0f);
    int32_t g = argmax(l, N);
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    kl_rng r;
    kl_rng_seed(&r, 3);
    int32_t ids[3] = {g, 5000, -1};
    float bias[3] = {-100.0f, 100.0f, 100.0f};
    sp_init(&sp);
    sp.temperature = 0.0f;
    sp.n_logit_bias = 3;
    sp.logit_bias_ids = ids;
    sp.logit_bias = bias;
    int32_t t = sample1(s, l, N, &sp, &r);
    T_ASSERT(t != g);
    sp.temperature = 1.0f;
    for (int d = 0; d < 2000; d++)
        T_ASSERT(sample1(s, l, N, &sp, &r) != g);
    ids[0] = 123;
    bias[0] = 100.0f;
    for (int d = 0; d < 2000; d++)
        T_EQ(sample1(s, l, N, &sp, &r), 123);
    sp.temperature = 0.0f;
    T_EQ(sample1(s, l, N, &sp, &r), 123);
    sample_scratch_destroy(s);
}

TEST(engine_sample_logprobs_raw_sorted_normalized)
{
    enum { N = 20 };
    float l0[N], l[N];
    fill_logits(l0, N, 21, 4.0f);
    l0[7] = l0[12]; /* a tie: the lower id comes first */
    double p[N];
    softmax_ref(l0, N, 1.0f, p);
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    kl_rng r;
    kl_rng_seed(&r, 4);
    engine_logprob top[ENGINE_MAX_LOGPROBS];
    int n_top = -1;
    float lp = 1;

    sp_init(&sp);
    sp.logprobs = 20;
    int32_t ids[1] = {3};
    float bias[1] = {100.0f}; /* forces 3, but its logprob stays the raw one */
    sp.n_logit_bias = 1;
    sp.logit_bias_ids = ids;
    sp.logit_bias = bias;
    memcpy(l, l0, sizeof l);
    int32_t t = sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top);
    T_EQ(t, 3);
    T_NEAR(lp, log(p[3]), 1e-5);
    T_EQ(n_top, 20);
    double sum = 0;
    for (int i = 0; i < n_top; i++) {
        sum += exp((double)top[i].logprob);
        T_NEAR(top[i].logprob, log(p[top[i].token]), 1e-5);
        if (i) {
            T_ASSERT(top[i].logprob <= top[i - 1].logprob);
            if (top[i].logprob == top[i - 1].logprob) T_ASSERT(top[i].token > top[i - 1].token);
        }
        for (int j = 0; j < i; j++)
            T_ASSERT(top[j].token != top[i].token);
    }
    T_NEAR(sum, 1.0, 1e-5);

    sp.logprobs = 3;
    sp.n_logit_bias = 0;
    sp.temperature = 0.0f;
    memcpy(l, l0, sizeof l);
    t = sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top);
    T_EQ(n_top, 3);
    T_EQ(top[0].token, t); /* greedy picks the top-1 */
    T_NEAR(lp, top[0].logprob, 1e-6);

    sp.logprobs = 0;
    t = sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top);
    T_EQ(n_top, 0);
    T_NEAR(lp, log(p[t]), 1e-5);
    sp.logprobs = -1;
    t = sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top);
    T_EQ(n_top, 0);
    T_NEAR(lp, 0.0, 0);
    sample_scratch_destroy(s);
}

TEST(engine_sample_non_finite_logits)
{
    enum { N = 16 };
    float l[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    sp_init(&sp);
    sp.logprobs = 2;
    kl_rng r;
    kl_rng_seed(&r, 9);
    engine_logprob top[2];
    int n_top;
    float lp;
    for (int i = 0; i < N; i++)
        l[i] = NAN;
    l[4] = 1.0f;
    l[9] = 0.5f;
    for (int d = 0; d < 100; d++) {
        float w[N];
        memcpy(w, l, sizeof w);
        int32_t t = sample_token(s, w, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top);
        T_ASSERT(t == 4 || t == 9);
        T_ASSERT(isfinite(lp));
    }
    for (int i = 0; i < N; i++)
        l[i] = -INFINITY;
    T_EQ(sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top), 0);
    for (int i = 0; i < N; i++)
        l[i] = 0.0f;
    l[6] = INFINITY;
    T_EQ(sample_token(s, l, N, &sp, NULL, 0, NULL, 0, &r, &lp, top, &n_top), 6);
    sample_scratch_destroy(s);
}

/* Cost on a 128k vocabulary (printed; bounded loosely so sanitizer builds pass). */
TEST(engine_sample_speed_128k)
{
    enum { N = 128256 };
    static float l[N];
    sample_scratch *s = sample_scratch_create(N);
    engine_sampling sp;
    kl_rng r;
    kl_rng_seed(&r, 1);
    struct {
        const char *name;
        float t, p;
        int k;
    } cfg[] = {{"greedy", 0.0f, 1.0f, 0},
               {"T=1", 1.0f, 1.0f, 0},
               {"T=0.8 top_p=0.9", 0.8f, 0.9f, 0},
               {"top_k=50", 1.0f, 1.0f, 50}};
    for (size_t ci = 0; ci < 4; ci++) {
        sp_init(&sp);
        sp.temperature = cfg[ci].t;
        sp.top_p = cfg[ci].p;
        sp.top_k = cfg[ci].k;
        fill_logits(l, N, 5, 4.0f);
        for (int i = 0; i < 50; i++)
            l[i * 977] += 12.0f - 0.2f * (float)i;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int it = 0; it < 20; it++)
            sample1(s, l, N, &sp, &r);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 20e3;
        printf("# %s: %.0f us per token (incl. a 512 KB copy)\n", cfg[ci].name, us);
        T_ASSERT(us < 100000.0);
    }
    sample_scratch_destroy(s);
}
