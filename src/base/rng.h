/* base/rng.h: the one seeded random generator: xoshiro256** seeded through splitmix64.
 * Fast, 256 bits of state, good in every bit; not for secrets. The same seed gives the same
 * sequence on any machine: sampling seeds, benchmark workloads and random model weights all
 * rest on that. */
#ifndef KILN_BASE_RNG_H
#define KILN_BASE_RNG_H
#include <stdint.h>

typedef struct kl_rng {
    uint64_t s[4];
} kl_rng;

/* Seeds r from one 64-bit value (any value, 0 included, gives a valid state). */
void kl_rng_seed(kl_rng *r, uint64_t seed);
/* Seeds r from a seed and a stream number: independent streams of one seed (item i of a
 * workload draws from stream i, so it does not depend on the order items are drawn in). */
void kl_rng_seed_stream(kl_rng *r, uint64_t seed, uint64_t stream);
uint64_t kl_rng_next(kl_rng *r);
/* Uniform in [0, 1), 53 random bits. */
double kl_rng_unit(kl_rng *r);
/* Uniform integer in [0, n) (n > 0), exactly uniform (rejection). */
uint64_t kl_rng_below(kl_rng *r, uint64_t n);
/* splitmix64's step: advances *x and returns a well-mixed value of it. */
uint64_t kl_splitmix64(uint64_t *x);
#endif
