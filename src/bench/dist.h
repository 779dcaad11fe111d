/* bench/dist.h: the seeded random numbers behind a benchmark's workload. Draws from base/rng.h:
 * length distributions ("128", "uniform:64:256", "normal:128:32") and Poisson
 * arrival gaps. The same seed always gives the same workload, on any machine. */
#ifndef KILN_BENCH_DIST_H
#define KILN_BENCH_DIST_H
#include <stdint.h>

#include "base/err.h"
#include "base/rng.h"

/* Standard normal (Box-Muller). */
double kb_rng_normal(kl_rng *r);
/* Exponential gap with the given rate (> 0): the time to the next Poisson arrival. */
double kb_rng_exp(kl_rng *r, double rate);

enum { KB_DIST_FIXED, KB_DIST_UNIFORM, KB_DIST_NORMAL };

typedef struct kb_dist {
    int kind;
    double a, b; /* fixed: a; uniform: [a, b]; normal: mean a, stddev b */
} kb_dist;

/* Parses "N", "uniform:LO:HI" or "normal:MEAN:SD" (integers 1..1000000 for lengths).
 * Returns 0, or KL_EINVAL with a message naming the text; d is untouched on failure. */
int kb_dist_parse(kb_dist *d, const char *s, kl_err *err);
/* A length drawn from d, clamped to [1, 1000000]. */
int kb_dist_sample(const kb_dist *d, kl_rng *r);
/* "uniform:64:256" etc. into buf (always NUL-terminated). */
void kb_dist_format(const kb_dist *d, char *buf, int cap);
#endif
