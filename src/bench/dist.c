/* bench/dist.c: seeded generator, length distributions, Poisson gaps (see dist.h). */
#include "bench/dist.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEN_MAX 1000000

double kb_rng_normal(kl_rng *r)
{
    double u1 = 1.0 - kl_rng_unit(r); /* (0, 1]: log is finite */
    double u2 = kl_rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double kb_rng_exp(kl_rng *r, double rate)
{
    return -log(1.0 - kl_rng_unit(r)) / rate;
}

/* Reads one integer field of a distribution; returns 0 or -1. */
static int read_len(const char *s, char **end, double *out)
{
    errno = 0;
    long v = strtol(s, end, 10);
    if (*end == s || errno || v < 0 || v > LEN_MAX) return -1;
    *out = (double)v;
    return 0;
}

int kb_dist_parse(kb_dist *d, const char *s, kl_err *err)
{
    kb_dist t = {0};
    char *end;
    const char *p = s;
    if (!strncmp(s, "uniform:", 8)) {
        t.kind = KB_DIST_UNIFORM;
        p = s + 8;
    } else if (!strncmp(s, "normal:", 7)) {
        t.kind = KB_DIST_NORMAL;
        p = s + 7;
    }
    if (read_len(p, &end, &t.a)) goto bad;
    if (t.kind == KB_DIST_FIXED) {
        if (*end || t.a < 1) goto bad;
    } else {
        if (*end != ':' || read_len(end + 1, &end, &t.b) || *end) goto bad;
        if (t.kind == KB_DIST_UNIFORM && (t.a < 1 || t.b < t.a)) goto bad;
        if (t.kind == KB_DIST_NORMAL && t.a < 1) goto bad;
    }
    *d = t;
    return 0;
bad:
    return kl_errf(err, KL_EINVAL,
                   "bad length distribution '%s' (want N, uniform:LO:HI or normal:MEAN:SD, "
                   "lengths 1..%d)",
                   s, LEN_MAX);
}

int kb_dist_sample(const kb_dist *d, kl_rng *r)
{
    double v;
    switch (d->kind) {
    case KB_DIST_UNIFORM:
        v = d->a + (double)kl_rng_below(r, (uint64_t)(d->b - d->a) + 1);
        break;
    case KB_DIST_NORMAL:
        v = floor(d->a + d->b * kb_rng_normal(r) + 0.5);
        break;
    default:
        v = d->a;
    }
    if (v < 1) v = 1;
    if (v > LEN_MAX) v = LEN_MAX;
    return (int)v;
}

void kb_dist_format(const kb_dist *d, char *buf, int cap)
{
    switch (d->kind) {
    case KB_DIST_UNIFORM:
        snprintf(buf, (size_t)cap, "uniform:%.0f:%.0f", d->a, d->b);
        break;
    case KB_DIST_NORMAL:
        snprintf(buf, (size_t)cap, "normal:%.0f:%.0f", d->a, d->b);
        break;
    default:
        snprintf(buf, (size_t)cap, "%.0f", d->a);
    }
}
