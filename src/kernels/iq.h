/* kernels/iq.h: the IQ and TQ quantization types (llama.cpp's "i-quants" and ternary types):
 * GGUF block layouts, the codebooks they decode through (kernels/iq_grids.c) and the scalar
 * reference pieces the dispatch tables point at. Kernel files only.
 *
 * Block layouts are GGUF's (ggml-common.h in llama.cpp), byte for byte. Super-blocks hold 256
 * elements (KL_QKK) except IQ4_NL's 32. The dots take the activation layout llama.cpp uses
 * for the type (Q8_0 for IQ4_NL, Q8_K for the others) and sum exact integers per block before
 * one float multiply, so results match llama.cpp's to float rounding. */
#ifndef KILN_KERNELS_IQ_H
#define KILN_KERNELS_IQ_H
#include <stdint.h>

#include "kernels/impl.h"

/* IQ4_NL: 32 elements, x = d * kl_iq4nl_values[q], q a nibble (low nibbles elements 0-15). */
typedef struct {
    uint16_t d;
    uint8_t qs[KL_QK / 2];
} kl_block_iq4_nl;
/* IQ4_XS: IQ4_NL's values with a 6-bit signed scale per 32 (ls - 32, low 4 bits in scales_l,
 * high 2 in scales_h) under an fp16 super-scale. Sub-block ib: qs[16 ib .. 16 ib + 15]. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[KL_QKK / 64];
    uint8_t qs[KL_QKK / 2];
} kl_block_iq4_xs;
/* IQ3_XXS: per 32 elements (sub-block ib), 8 indices into kl_iq3xxs_grid (4 magnitudes each)
 * in qs[8 ib ..], then a little-endian uint32 at qs[64 + 4 ib]: 4 x 7 sign bits (kl_iq_ksigns,
 * one sign byte per 8 elements) and the scale s in bits 28-31: x = d (0.5 + s) / 2 * g. */
typedef struct {
    uint16_t d;
    uint8_t qs[3 * KL_QKK / 8];
} kl_block_iq3_xxs;
/* IQ3_S: per 32 elements, 8 indices of 9 bits (qs[8 ib + k], bit 8 = bit k of qh[ib]) into
 * kl_iq3s_grid, signs one bit per element (signs[4 ib ..], bit j of byte l: element 8l + j),
 * scale s (nibble ib % 2 of scales[ib / 2]): x = d (1 + 2 s) g. */
typedef struct {
    uint16_t d;
    uint8_t qs[KL_QKK / 4];
    uint8_t qh[KL_QKK / 32];
    uint8_t signs[KL_QKK / 8];
    uint8_t scales[KL_QKK / 64];
} kl_block_iq3_s;
_Static_assert(sizeof(kl_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(kl_block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(kl_block_iq3_xxs) == 98, "iq3_xxs block");
_Static_assert(sizeof(kl_block_iq3_s) == 110, "iq3_s block");

/* One 256-element block of a grid type decoded to integers (ref_iq.c runs the references of
 * every type through this form): element e is dl[e / 16] * q[e] with the float dl computed as
 * llama.cpp's dequantizer computes it (so dequantization gives its floats, bit for bit), and
 * the dot with a Q8_K row is d * d_a * sum_e sc[e / 16] * q[e] * a[e] (llama.cpp's integer
 * sums, its float factor). */
typedef struct {
    int8_t q[KL_QKK]; /* signed integer weights, |q| <= 127 */
    int16_t sc[16];   /* integer scale of each 16 elements */
    float dl[16];     /* float step of each 16 elements */
    float d;          /* factor of the block's integer dot */
} kl_iq_dec;
typedef void (*kl_iq_decode_fn)(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq3_xxs(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq3_s(const void *block, kl_iq_dec *o);

/* Codebooks (kernels/iq_grids.c). */
extern const int8_t kl_iq4nl_values[16];
extern const uint8_t kl_iq_ksigns[128]; /* 7 sign bits -> 8 with even parity */
extern const uint64_t kl_iq2xxs_grid[256];
extern const uint64_t kl_iq2xs_grid[512];
extern const uint64_t kl_iq2s_grid[1024];
extern const uint32_t kl_iq3xxs_grid[256];
extern const uint32_t kl_iq3s_grid[512];
extern const uint64_t kl_iq1s_grid[2048];

/* IQ4_XS sub-block scale ib (0..7), ls - 32 in -32..31. */
static inline int kl_iq4_xs_scale(const kl_block_iq4_xs *b, int ib)
{
    int lo = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF, hi = (b->scales_h >> (2 * ib)) & 3;
    return (lo | (hi << 4)) - 32;
}

/* The scalar table's rows of each family (called from dispatch.c). */
void kl_ref_types_iq4(kl_isa *isa); /* IQ4_NL IQ4_XS */
void kl_ref_types_iq(kl_isa *isa);  /* the grid types through kl_iq_dec (ref_iq.c) */

/* The SIMD tables' rows of the IQ and TQ types (x86/avx2_iq_types.c, avx512_iq_types.c). */
void kl_avx2_types_iq(kl_isa *isa);
void kl_avx512_types_iq(kl_isa *isa);

/* Scalar reference row conversions and matmuls (ref_iq4.c, ...). */
void kl_ref_quant_iq4_nl(const float *x, void *dst, int64_t n);
void kl_ref_dequant_iq4_nl(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq4_nl(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_quant_iq4_xs(const float *x, void *dst, int64_t n);
void kl_ref_dequant_iq4_xs(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq4_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_iq3_xxs(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_iq3_s(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);
#endif
