/* The sampler's exp (kernels/exp.c): the SSE2 row against the scalar function, bit for bit,
 * and the scalar one against libm's. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "t.h"

TEST(kernels_exp_row_matches_scalar)
{
    enum { N = 4099 };
    static float l[N], e[N];
    uint64_t r = 17;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(r >> 11) * 0x1.0p-53 * 200.0 - 150.0);
    }
    const float edge[] = {-87.0f, -87.00001f, -86.99999f, 0.0f,     -0.0f,     88.0f,
                          1e-30f, -INFINITY,  -FLT_MAX,   0.34657f, -0.34657f, -103.0f};
    for (int i = 0; i < (int)(sizeof edge / sizeof edge[0]); i++)
        l[i * 3] = edge[i];
    const float ms[3] = {0.0f, 5.0f, -2.5f}, ks[3] = {1.0f, 0.7f, 1.9f};
    for (int t = 0; t < 3; t++) {
        kl_exp_row(e, l, N, ms[t], ks[t]);
        for (int i = 0; i < N; i++) {
            float want = kl_exp((l[i] - ms[t]) * ks[t]);
            T_MEMEQ(&e[i], &want, sizeof want); /* bit-identical, whatever the path */
        }
    }
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        float x = -87.0f + 95.0f * (float)i / 200000.0f;
        double ref = exp((double)x), got = (double)kl_exp(x);
        double rel = fabs(got - ref) / ref;
        if (rel > worst) worst = rel;
    }
    printf("# kl_exp worst relative error on [-87, 8]: %.3g\n", worst);
    T_ASSERT(worst < 3e-7);
    T_EQ(kl_exp(-INFINITY), 0);
    T_EQ(kl_exp(-87.5f), 0);
    T_NEAR(kl_exp(0.0f), 1.0, 0);
}
