/* Row F16 conversions (F16C when present) against the scalar converters: every F16 value,
 * and floats around every rounding boundary, infinities and NaN, at awkward lengths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "t.h"

TEST(kernels_fp16_row_to_fp32_every_value)
{
    uint16_t *h = malloc(sizeof(uint16_t) * 65536);
    float *a = malloc(sizeof(float) * 65536), *b = malloc(sizeof(float) * 65536);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    kl_fp16_to_fp32_row(h, a, 65536);
    kl_ref_fp16_to_fp32_row(h, b, 65536);
    for (int i = 0; i < 65536; i++) { /* bit for bit; a NaN stays a NaN (F16C quiets it) */
        if (isnan(b[i]))
            T_ASSERT(isnan(a[i]));
        else
            T_MEMEQ(&a[i], &b[i], sizeof(float));
    }
    free(h), free(a), free(b);
}

TEST(kernels_fp32_row_to_fp16_rounds_like_reference)
{
    enum { N = 100003 }; /* not a multiple of 8 */
    float *x = malloc(sizeof(float) * N);
    uint16_t *a = malloc(sizeof(uint16_t) * N), *b = malloc(sizeof(uint16_t) * N);
    uint64_t s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(s >> 32);
        if (i % 3 == 0) bits = (bits & 0x8FFFFFFFu) | 0x38000000u; /* near F16's range */
        if (i % 7 == 0) bits = (bits & ~0x1FFFu) | 0x1000u;        /* exact ties */
        memcpy(&x[i], &bits, 4);
        if (isnan(x[i])) x[i] = 1.f; /* NaN payload handling differs by design; below */
    }
    x[0] = INFINITY, x[1] = -INFINITY, x[2] = 65520.f, x[3] = 1e-8f, x[4] = -0.f;
    kl_fp32_to_fp16_row(x, a, N);
    kl_ref_fp32_to_fp16_row(x, b, N);
    T_MEMEQ(a, b, sizeof(uint16_t) * N);
    float nan = NAN;
    kl_fp32_to_fp16_row(&nan, a, 1);
    T_ASSERT(isnan(kl_fp16_to_fp32(a[0])));
    free(x), free(a), free(b);
}

/* Rows of 1 to 15 elements (tails of 1 to 7 after the vectors of 8), back to back: every F16
 * value and the rounding cases above give the reference's bits in a tail too. */
TEST(kernels_fp16_rows_short_tails_match_reference)
{
    enum { N = 65536 };
    uint16_t *h = malloc(sizeof(uint16_t) * N), *a16 = malloc(sizeof(uint16_t) * N),
             *b16 = malloc(sizeof(uint16_t) * N);
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    kl_ref_fp16_to_fp32_row(h, b, N);
    for (int i = 0, k = 1; i < N; i += k, k = k % 15 + 1)
        kl_fp16_to_fp32_row(h + i, a + i, i + k <= N ? k : N - i);
    for (int i = 0; i < N; i++) {
        if (isnan(b[i]))
            T_ASSERT(isnan(a[i]));
        else
            T_MEMEQ(&a[i], &b[i], sizeof(float));
    }
    /* the floats of every non-NaN F16 value, and halfway between neighbours (ties to even) */
    int m = 0;
    for (int i = 0; i + 1 < N && m + 2 <= N; i++)
        if (!isnan(b[i]) && !isnan(b[i + 1]) && !isinf(b[i]) && !isinf(b[i + 1]) &&
            (h[i] & 0x7FFF) != 0x7BFF)
            a[m++] = b[i], a[m++] = 0.5f * (b[i] + b[i + 1]);
    kl_ref_fp32_to_fp16_row(a, b16, m);
    for (int i = 0, k = 1; i < m; i += k, k = k % 15 + 1)
        kl_fp32_to_fp16_row(a + i, a16 + i, i + k <= m ? k : m - i);
    T_MEMEQ(a16, b16, sizeof(uint16_t) * (size_t)m);
    free(h), free(a16), free(b16), free(a), free(b);
}
