/* base/dtype.h: facts about tensor types, shared by gguf (the format) and kernels (the math)
 * so that neither includes the other. Values are GGUF's ggml_type ids. */
#ifndef KILN_BASE_DTYPE_H
#define KILN_BASE_DTYPE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum kl_dtype {
    KL_F32 = 0,
    KL_F16 = 1,
    KL_Q4_0 = 2,
    KL_Q4_1 = 3,
    KL_Q5_0 = 6,
    KL_Q5_1 = 7,
    KL_Q8_0 = 8,
    KL_Q8_1 = 9,
    KL_Q2_K = 10,
    KL_Q3_K = 11,
    KL_Q4_K = 12,
    KL_Q5_K = 13,
    KL_Q6_K = 14,
    KL_Q8_K = 15,
    KL_IQ2_XXS = 16,
    KL_IQ2_XS = 17,
    KL_IQ3_XXS = 18,
    KL_IQ1_S = 19,
    KL_IQ4_NL = 20,
    KL_IQ3_S = 21,
    KL_IQ2_S = 22,
    KL_IQ4_XS = 23,
    KL_I8 = 24,
    KL_I16 = 25,
    KL_I32 = 26,
    KL_I64 = 27,
    KL_F64 = 28,
    KL_IQ1_M = 29,
    KL_BF16 = 30,
    KL_TQ1_0 = 34,
    KL_TQ2_0 = 35,
    KL_DTYPE_COUNT = 36, /* one past the largest id; ids in between are unknown */
} kl_dtype;

typedef struct kl_dtype_info {
    const char *name;     /* "q8_0"; NULL for an id GGUF does not define (or we do not know) */
    uint32_t block_elems; /* elements per block (1 for plain types) */
    uint32_t block_bytes; /* bytes per block */
} kl_dtype_info;

/* Facts for t, or NULL when t is not a type Kiln knows. */
const kl_dtype_info *kl_dtype_get(int t);
/* "q8_0" → KL_Q8_0; -1 when unknown. Case-insensitive. */
int kl_dtype_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t kl_dtype_row_bytes(kl_dtype t, int64_t n);
#endif
