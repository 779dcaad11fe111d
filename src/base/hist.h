/* base/hist.h: a latency histogram with fixed upper bounds, as Prometheus exposes them (each
 * value counted in the first bucket whose bound is >= it; the last bucket is +Inf). The bounds
 * are the caller's (static) array. net/prom.h renders one. */
#ifndef KILN_BASE_HIST_H
#define KILN_BASE_HIST_H
#include <stdint.h>

#define KL_HIST_MAX_LE 23 /* bounds at most (+Inf not counted) */

typedef struct kl_hist {
    const double *le; /* n_le increasing upper bounds, borrowed */
    int n_le;
    uint64_t count[KL_HIST_MAX_LE + 1]; /* per bucket (not cumulative); [n_le]: +Inf */
    double sum;
    uint64_t n;
} kl_hist;

/* An empty histogram over le[0..n_le) (at most KL_HIST_MAX_LE of them are used). */
void kl_hist_init(kl_hist *h, const double *le, int n_le);
/* Counts v (negative or NaN counts as 0). */
void kl_hist_observe(kl_hist *h, double v);
#endif
