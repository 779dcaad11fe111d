/* base/rng.c: xoshiro256** (Blackman and Vigna), seeded with splitmix64 (see rng.h). */
#include "base/rng.h"

uint64_t kl_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kl_rng_seed(kl_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = kl_splitmix64(&seed);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1; /* all-zero never moves */
}

void kl_rng_seed_stream(kl_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ 0x6a09e667f3bcc909ull;
    uint64_t mixed = kl_splitmix64(&x) ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    kl_rng_seed(r, mixed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t kl_rng_next(kl_rng *r)
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

double kl_rng_unit(kl_rng *r)
{
    return (double)(kl_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t kl_rng_below(kl_rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t x = kl_rng_next(r);
        if (x < lim) return x % n;
    }
}
