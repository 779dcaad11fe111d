/* bench/dist.h: the seeded random numbers behind a benchmark's workload. A xoshiro256**
 * generator, length distributions ("128", "uniform:64:256", "normal:128:32") and Poisson
 * arrival gaps. The same seed always gives the same workload, on any machine. */
#ifndef KILN_BENCH_DIST_H
#define KILN_BENCH_DIST_H
#include <stdint.h>

#include "base/err.h"

typedef struct kb_rng {
    uint64_t s[4];
} kb_rng;

/* Seeds r from one 64-bit value (splitmix64 expansion); never leaves r all-zero. */
void kb_rng_seed(kb_rng *r, uint64_t seed);
/* Seeds r from a seed and a stream number: item i of a workload draws from stream i, so its
 * prompt does not depend on the order in which items are drawn. */
void kb_rng_seed2(kb_rng *r, uint64_t seed, uint64_t stream);
uint64_t kb_rng_next(kb_rng *r);
/* Uniform in [0, 1). */
double kb_rng_unit(kb_rng *r);
/* Uniform integer in [0, n) (n > 0). */
uint64_t kb_rng_below(kb_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double kb_rng_normal(kb_rng *r);
/* Exponential gap with the given rate (> 0): the time to the next Poisson arrival. */
double kb_rng_exp(kb_rng *r, double rate);

enum { KB_DIST_FIXED, KB_DIST_UNIFORM, KB_DIST_NORMAL };

typedef struct kb_dist {
    int kind;
    double a, b; /* fixed: a; uniform: [a, b]; normal: mean a, stddev b */
} kb_dist;

/* Parses "N", "uniform:LO:HI" or "normal:MEAN:SD" (integers 1..1000000 for lengths).
 * Returns 0, or KL_EINVAL with a message naming the text; d is untouched on failure. */
int kb_dist_parse(kb_dist *d, const char *s, kl_err *err);
/* A length drawn from d, clamped to [1, 1000000]. */
int kb_dist_sample(const kb_dist *d, kb_rng *r);
/* "uniform:64:256" etc. into buf (always NUL-terminated). */
void kb_dist_format(const kb_dist *d, char *buf, int cap);
#endif
