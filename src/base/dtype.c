#include "base/dtype.h"

#include <strings.h>

// clang-format off
static const kl_dtype_info table[KL_DTYPE_COUNT] = {
    [KL_F32]  = {"f32", 1, 4},
    [KL_F16]  = {"f16", 1, 2},
    [KL_Q4_0] = {"q4_0", 32, 18},
    [KL_Q4_1] = {"q4_1", 32, 20},
    [KL_Q5_0] = {"q5_0", 32, 22},
    [KL_Q5_1] = {"q5_1", 32, 24},
    [KL_Q8_0] = {"q8_0", 32, 34},
    [KL_Q8_1] = {"q8_1", 32, 36},
    [KL_Q2_K] = {"q2_k", 256, 84},
    [KL_Q3_K] = {"q3_k", 256, 110},
    [KL_Q4_K] = {"q4_k", 256, 144},
    [KL_Q5_K] = {"q5_k", 256, 176},
    [KL_Q6_K] = {"q6_k", 256, 210},
    [KL_Q8_K] = {"q8_k", 256, 292},
    [KL_IQ4_NL] = {"iq4_nl", 32, 18},
    [KL_IQ4_XS] = {"iq4_xs", 256, 136},
    [KL_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [KL_IQ3_S] = {"iq3_s", 256, 110},
    [KL_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [KL_IQ2_XS] = {"iq2_xs", 256, 74},
    [KL_IQ2_S] = {"iq2_s", 256, 82},
    [KL_IQ1_S] = {"iq1_s", 256, 50},
    [KL_IQ1_M] = {"iq1_m", 256, 56},
    [KL_TQ1_0] = {"tq1_0", 256, 54},
    [KL_TQ2_0] = {"tq2_0", 256, 66},
    [KL_I8]   = {"i8", 1, 1},
    [KL_I16]  = {"i16", 1, 2},
    [KL_I32]  = {"i32", 1, 4},
    [KL_I64]  = {"i64", 1, 8},
    [KL_F64]  = {"f64", 1, 8},
    [KL_BF16] = {"bf16", 1, 2},
};
// clang-format on
_Static_assert(sizeof table / sizeof table[0] == KL_DTYPE_COUNT, "dtype table size");

const kl_dtype_info *kl_dtype_get(int t)
{
    if (t < 0 || t >= KL_DTYPE_COUNT || !table[t].name) return NULL;
    return &table[t];
}

int kl_dtype_from_name(const char *name)
{
    for (int t = 0; t < KL_DTYPE_COUNT; t++)
        if (table[t].name && strcasecmp(table[t].name, name) == 0) return t;
    return -1;
}

size_t kl_dtype_row_bytes(kl_dtype t, int64_t n)
{
    const kl_dtype_info *d = kl_dtype_get(t);
    if (!d || n < 0 || n % d->block_elems) return 0;
    return (size_t)(n / d->block_elems) * d->block_bytes;
}
