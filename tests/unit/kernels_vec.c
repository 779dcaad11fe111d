/* SIMD dot and axpy against the scalar reference at every length 0..100. */
#include <math.h>

#include "kernels/impl.h"
#include "t.h"

TEST(kernels_vec_dot_axpy_match_reference)
{
    const kl_isa *isa = kl_isa_find("avx512");
    if (!isa) t_skip("no AVX-512 on this CPU");
    float a[100], b[100], y1[100], y2[100];
    for (int i = 0; i < 100; i++) a[i] = sinf((float)i), b[i] = cosf((float)i * 0.7f);
    for (int n = 0; n <= 100; n++) {
        double ref = 0;
        for (int i = 0; i < n; i++) ref += (double)a[i] * (double)b[i];
        T_NEAR(isa->vec.dot(a, b, n), ref, 1e-4);
        for (int i = 0; i < 100; i++) y1[i] = y2[i] = (float)i;
        isa->vec.axpy(y1, 0.5f, a, n);
        kl_ref_axpy(y2, 0.5f, a, n);
        for (int i = 0; i < 100; i++) T_NEAR(y1[i], y2[i], 1e-6); /* also: nothing past n touched */
    }
}
