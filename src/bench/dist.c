/* bench/dist.c: seeded generator, length distributions, Poisson gaps (see dist.h). */
#include "bench/dist.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEN_MAX 1000000

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kb_rng_seed(kb_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

void kb_rng_seed2(kb_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ 0x6a09e667f3bcc909ull;
    uint64_t mixed = splitmix64(&x) ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    kb_rng_seed(r, mixed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t kb_rng_next(kb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double kb_rng_unit(kb_rng *r)
{
    return (double)(kb_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t kb_rng_below(kb_rng *r, uint64_t n)
{
    /* rejection keeps it exactly uniform */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t x = kb_rng_next(r);
        if (x < lim) return x % n;
    }
}

double kb_rng_normal(kb_rng *r)
{
    double u1 = 1.0 - kb_rng_unit(r); /* (0, 1]: log is finite */
    double u2 = kb_rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double kb_rng_exp(kb_rng *r, double rate)
{
    return -log(1.0 - kb_rng_unit(r)) / rate;
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

int kb_dist_sample(const kb_dist *d, kb_rng *r)
{
    double v;
    switch (d->kind) {
    case KB_DIST_UNIFORM:
        v = d->a + (double)kb_rng_below(r, (uint64_t)(d->b - d->a) + 1);
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
