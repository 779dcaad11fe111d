/* engine/spec_policy.c: how many draft tokens each decoder gets (see spec.h): a pure function
 * of the step-time model, the decoders' acceptance rates and their limits, so it is tested on
 * its own.
 *
 * A decoder's j-th draft is kept with probability about rate^j. The step's time is predicted
 * by the fit a + b * tokens (plus one drafting pass per draft position for model drafters).
 * Drafts are granted best first while the step's expected tokens per second grows: on a
 * memory-bound machine (b small against a) one stream drafts up to its limit; a batch that
 * already saturates the machine (the time grows with every token) drafts nothing. A decoder
 * whose rate fell below SPEC_RATE_MIN drafts nothing at all, whatever the machine. */
#include "engine/spec.h"

#include <math.h>

#define COST_KEEP    0.97 /* forgetting of the fit, per decode step */
#define COST_PRIOR   0.2  /* prior: one more token costs 0.2 of a step's fixed part */
#define COST_PRIOR_W 4.0  /* the prior's weight, in squared tokens of spread */

void spec_cost_observe(spec_cost *c, int n, double secs)
{
    c->s0 = c->s0 * COST_KEEP + 1;
    c->s1 = c->s1 * COST_KEEP + n;
    c->s2 = c->s2 * COST_KEEP + (double)n * n;
    c->sy = c->sy * COST_KEEP + secs;
    c->sny = c->sny * COST_KEEP + n * secs;
}

double spec_cost_at(const spec_cost *c, int n)
{
    if (c->s0 <= 0) return 1.0 + COST_PRIOR * n;
    double nb = c->s1 / c->s0, yb = c->sy / c->s0;
    double snn = c->s2 - c->s1 * nb, sny = c->sny - c->s1 * yb;
    double b0 = COST_PRIOR * yb / (1.0 + COST_PRIOR * nb);
    double b = (sny + COST_PRIOR_W * b0) / (snn + COST_PRIOR_W);
    if (b < 0) b = 0;
    double a = yb - b * nb;
    return (a > 0 ? a : 0) + b * n;
}

#define PASS_GAIN 0.2 /* weight of the latest drafting pass in its moving average */
#define PASS_ROWS 2   /* a decode-shaped pass: at most this many tokens a sequence */

void spec_pass_observe(double *pass_s, int n, int ns, double secs)
{
    if (ns <= 0 || n > PASS_ROWS * ns) return;
    *pass_s = *pass_s > 0 ? *pass_s + PASS_GAIN * (secs - *pass_s) : secs;
}

/* The candidate with the best next draft (rate^(nd + 1)), or -1 when none may take one. */
static int best_next(const spec_grant_in *in, const int *nd, double *g)
{
    int best = -1;
    *g = 0;
    for (int i = 0; i < in->nc; i++) {
        if (nd[i] >= in->avail[i] || (!in->fixed && in->rate[i] < SPEC_RATE_MIN)) continue;
        double gi = in->fixed ? 1.0 : pow((double)in->rate[i], nd[i] + 1);
        if (gi > *g) best = i, *g = gi;
    }
    return best;
}

int spec_grant(const spec_grant_in *in, int *nd)
{
    int n = in->n, total = 0, passes = 0;
    double gain = n, cost = spec_cost_at(in->cost, n);
    for (int i = 0; i < in->nc; i++)
        nd[i] = 0;
    for (; total < in->spare; total++) {
        double g;
        int best = best_next(in, nd, &g);
        if (best < 0) break;
        int p2 = nd[best] + 1 > passes ? nd[best] + 1 : passes;
        double c2 = spec_cost_at(in->cost, n + 1) + p2 * in->draft_pass_s;
        if (!in->fixed && (gain + g) * cost <= gain * c2) break;
        nd[best]++;
        gain += g, cost = c2, passes = p2, n++;
    }
    return total;
}
