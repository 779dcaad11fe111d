/* tests/unit/base_rng.c: the one generator (base/rng.h): known answers of xoshiro256**
 * seeded by splitmix64 (computed by an independent implementation), determinism, ranges. */
#include "t.h"
#include "base/rng.h"

TEST(base_rng_known_answers)
{
    /* splitmix64 from 0 fills the state; then the first outputs of xoshiro256** */
    kl_rng r;
    kl_rng_seed(&r, 0);
    T_ASSERT(kl_rng_next(&r) == 0x99ec5f36cb75f2b4ull);
    T_ASSERT(kl_rng_next(&r) == 0xbf6e1f784956452aull);
    T_ASSERT(kl_rng_next(&r) == 0x1a5f849d4933e6e0ull);
    kl_rng_seed(&r, 42);
    T_ASSERT(kl_rng_next(&r) == 0x15780b2e0c2ec716ull);
    T_ASSERT(kl_rng_next(&r) == 0x6104d9866d113a7eull);
}

TEST(base_rng_seed_and_unit)
{
    kl_rng a, b, c;
    kl_rng_seed(&a, 42);
    kl_rng_seed(&b, 42);
    kl_rng_seed(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = kl_rng_next(&a);
        T_ASSERT(x == kl_rng_next(&b));
        if (x == kl_rng_next(&c)) same_c++;
    }
    T_EQ(same_c, 0);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = kl_rng_unit(&a);
        T_ASSERT(u >= 0.0 && u < 1.0);
        sum += u;
    }
    T_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(base_rng_below_and_streams)
{
    kl_rng r;
    kl_rng_seed(&r, 7);
    int hist[5] = {0};
    for (int i = 0; i < 50000; i++) {
        uint64_t x = kl_rng_below(&r, 5);
        T_ASSERT(x < 5);
        hist[x]++;
    }
    for (int i = 0; i < 5; i++)
        T_NEAR(hist[i], 10000, 500);
    T_EQ(kl_rng_below(&r, 1), 0);
    /* streams of one seed differ from each other and from the plain seed; each repeats */
    kl_rng s0, s1, s0b;
    kl_rng_seed_stream(&s0, 9, 0);
    kl_rng_seed_stream(&s1, 9, 1);
    kl_rng_seed_stream(&s0b, 9, 0);
    uint64_t x0 = kl_rng_next(&s0);
    T_ASSERT(x0 != kl_rng_next(&s1));
    T_ASSERT(x0 == kl_rng_next(&s0b));
}
