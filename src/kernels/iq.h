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
/* IQ2_XXS: per 32 elements, 8 bytes: 4 indices into kl_iq2xxs_grid (8 magnitudes each), then
 * a little-endian uint32 of 4 x 7 sign bits (kl_iq_ksigns) and the scale s in bits 28-31:
 * x = d (0.5 + s) / 4 g. */
typedef struct {
    uint16_t d;
    uint16_t qs[KL_QKK / 8];
} kl_block_iq2_xxs;
/* IQ2_XS: per 8 elements a uint16: 9-bit index into kl_iq2xs_grid, 7 sign bits above; a byte
 * of two 4-bit scales per 32 (low nibble the first 16 elements). */
typedef struct {
    uint16_t d;
    uint16_t qs[KL_QKK / 8];
    uint8_t scales[KL_QKK / 32];
} kl_block_iq2_xs;
/* IQ2_S: per 8 elements a 10-bit index into kl_iq2s_grid (qs[4 ib + l], bits 8-9 from bits
 * 2l.. of qh[ib]) and a sign byte (qs[32 + 4 ib + l]); scales as IQ2_XS's. */
typedef struct {
    uint16_t d;
    uint8_t qs[KL_QKK / 4];
    uint8_t qh[KL_QKK / 32];
    uint8_t scales[KL_QKK / 32];
} kl_block_iq2_s;
/* IQ1_S: per 8 elements an 11-bit index into kl_iq1s_grid (values -1 0 1): qs[4 ib + l], bits
 * 8-10 from bits 3l.. of qh[ib]; qh[ib] bits 12-14 the scale s, bit 15 the shift's sign:
 * x = d (2 s + 1) (g +- 1/8). */
typedef struct {
    uint16_t d;
    uint8_t qs[KL_QKK / 8];
    uint16_t qh[KL_QKK / 32];
} kl_block_iq1_s;
/* IQ1_M: IQ1_S's grid; per 8 elements a nibble of qh (index bits 8-10, shift sign in bit 3),
 * 3-bit scales per 16 in the scales words' low 12 bits, the fp16 d in their top nibbles. */
typedef struct {
    uint8_t qs[KL_QKK / 8];
    uint8_t qh[KL_QKK / 16];
    uint8_t scales[KL_QKK / 32];
} kl_block_iq1_m;
/* TQ1_0 and TQ2_0: ternary weights times d (layouts in ref_tq.c). */
typedef struct {
    uint8_t qs[48]; /* 5 trits per byte */
    uint8_t qh[4];  /* 4 trits per byte */
    uint16_t d;
} kl_block_tq1_0;
typedef struct {
    uint8_t qs[KL_QKK / 4]; /* 2 bits per element */
    uint16_t d;
} kl_block_tq2_0;
_Static_assert(sizeof(kl_block_iq2_xxs) == 66, "iq2_xxs block");
_Static_assert(sizeof(kl_block_iq2_xs) == 74, "iq2_xs block");
_Static_assert(sizeof(kl_block_iq2_s) == 82, "iq2_s block");
_Static_assert(sizeof(kl_block_iq1_s) == 50, "iq1_s block");
_Static_assert(sizeof(kl_block_iq1_m) == 56, "iq1_m block");
_Static_assert(sizeof(kl_block_tq1_0) == 54, "tq1_0 block");
_Static_assert(sizeof(kl_block_tq2_0) == 66, "tq2_0 block");
_Static_assert(sizeof(kl_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(kl_block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(kl_block_iq3_xxs) == 98, "iq3_xxs block");
_Static_assert(sizeof(kl_block_iq3_s) == 110, "iq3_s block");

/* The integer scale of each 16 elements of a block (2 s + 1 from the stored s; TQ: 1). The
 * references and the SIMD tiles' per-block steps both take them from here. */
static inline void kl_iq_odd16(int16_t o[16], int t, int s)
{
    o[t] = (int16_t)(2 * s + 1);
}
static inline void kl_iq_scales_iq3_xxs(const kl_block_iq3_xxs *b, int16_t o[16])
{
    for (int ib = 0; ib < 8; ib++) {
        int s = b->qs[KL_QKK / 4 + 4 * ib + 3] >> 4; /* bits 28-31 of the little-endian word */
        kl_iq_odd16(o, 2 * ib, s), kl_iq_odd16(o, 2 * ib + 1, s);
    }
}
static inline void kl_iq_scales_iq3_s(const kl_block_iq3_s *b, int16_t o[16])
{
    for (int t = 0; t < 16; t++)
        kl_iq_odd16(o, t, (b->scales[t / 4] >> (4 * (t / 2 % 2))) & 0xF);
}
static inline void kl_iq_scales_iq2_xxs(const kl_block_iq2_xxs *b, int16_t o[16])
{
    for (int t = 0; t < 16; t++)
        kl_iq_odd16(o, t, b->qs[4 * (t / 2) + 3] >> 12); /* bits 28-31 of the second word */
}
/* IQ2_XS, IQ2_S: a byte per 32, the low nibble for its first 16 elements */
static inline void kl_iq_scales_nibbles(const uint8_t sc[8], int16_t o[16])
{
    for (int t = 0; t < 16; t++)
        kl_iq_odd16(o, t, (sc[t / 2] >> (4 * (t % 2))) & 0xF);
}
static inline void kl_iq_scales_iq1_s(const kl_block_iq1_s *b, int16_t o[16])
{
    for (int t = 0; t < 16; t++)
        kl_iq_odd16(o, t, (b->qh[t / 2] >> 12) & 7);
}
/* IQ1_M: 3 bits per 16 in the low 12 bits of the four scale words; the fp16 d is spread over
 * their top nibbles. */
static inline void kl_iq_scales_iq1_m(const kl_block_iq1_m *b, int16_t o[16])
{
    for (int t = 0; t < 16; t++) {
        int w = b->scales[2 * (t / 4)] | b->scales[2 * (t / 4) + 1] << 8;
        kl_iq_odd16(o, t, (w >> (3 * (t % 4))) & 7);
    }
}
static inline uint16_t kl_iq1_m_d(const kl_block_iq1_m *b)
{
    return (uint16_t)((b->scales[1] >> 4) | (b->scales[3] & 0xF0) | (b->scales[5] >> 4) << 8 |
                      (b->scales[7] & 0xF0) << 8);
}

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
/* 8 magnitudes (bytes of g, element 0 lowest) times the signs of a sign byte (bit j: -). */
static inline void kl_iq_put8(int8_t *q, uint64_t g, uint8_t signs)
{
    for (int j = 0; j < 8; j++) {
        int v = (int)((g >> (8 * j)) & 0xFF);
        q[j] = (int8_t)(signs >> j & 1 ? -v : v);
    }
}
void kl_iq_decode_iq3_xxs(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq3_s(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq2_xxs(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq2_xs(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq2_s(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq1_s(const void *block, kl_iq_dec *o);
void kl_iq_decode_iq1_m(const void *block, kl_iq_dec *o);
void kl_iq_decode_tq1_0(const void *block, kl_iq_dec *o);
void kl_iq_decode_tq2_0(const void *block, kl_iq_dec *o);

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
void kl_avx2_types_iq1_packed(kl_isa *isa); /* x86/avx2_iq1_packed.c, from kl_isa_avx2_own */
void kl_avx2_types_iq2_packed(kl_isa *isa); /* x86/avx2_iq2_packed.c, from kl_isa_avx2_own */
void kl_avx512_types_iq(kl_isa *isa);
/* over avx512's rows: x86/avx512vbmi_iq.c (IQ2), x86/avx512vbmi_iq3.c (IQ3),
 * x86/avx512vbmi_iq1.c (IQ1) */
void kl_avx512vbmi_types_iq(kl_isa *isa);
void kl_avx512vbmi_types_iq2_packed(kl_isa *isa); /* x86/avx512vbmi_iq2_packed.c, after it */
void kl_avx512vbmi_types_iq3(kl_isa *isa);
void kl_avx512vbmi_types_iq1(kl_isa *isa);

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
void kl_ref_dequant_iq2_xxs(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_iq2_xs(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_iq2_s(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);
/* The row-by-row packed forms' panels (kernels/pack_records.c): 16 rows one after another,
 * each its blocks' records of rec bytes in order. kl_pack_records packs panels [p0, p1) of W
 * (type t) by block(file block, record); kl_packed_rows(g): g with a row's stride for a
 * panel's, for a dot that walks the rows as a plain matrix. */
typedef void (*kl_pack_block_fn)(const void *block, uint8_t *rec);
size_t kl_pack_records_bytes(int64_t rows, int64_t cols, size_t rec);
void kl_pack_records(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                     void *dst, size_t rec, kl_pack_block_fn block);
static inline kl_gemm kl_packed_rows(const kl_gemm *g)
{
    kl_gemm h = *g;
    h.w_stride = g->w_stride / 16;
    return h;
}
/* IQ2_XXS, IQ2_XS and IQ2_S packed into one form, magnitude indices and sign bits in planes
 * (kernels/pack_iq2.c has the layout): a row's block record and its parts' offsets, the packer
 * (of any of the three), a record decoded (ref_iq2.c) and the reference dot over the form. */
void kl_iq_decode_iq2_packed(const void *rec, kl_iq_dec *o);
void kl_ref_gemm_iq2_packed(const kl_gemm *g, int64_t r0, int64_t r1);
size_t kl_pack_iq2_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_iq2(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst);
/* The VBMI table's form of the same bits, laid out in the lanes of T8P activations (same size,
 * kl_pack_iq2_bytes; pack_iq2.c has the layout). */
void kl_pack_iq2_t8p(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                     void *dst);
#define KL_IQ2P_REC 106
#define KL_IQ2P_SG  64 /* sg */
#define KL_IQ2P_S   96 /* s */
#define KL_IQ2P_D   104
/* IQ3_XXS's and IQ3_S's packed form for the AVX-512 VBMI plane dot, the file's indices with
 * the signs beside them (kernels/pack_iq3.c has the layout): the records, their parts'
 * offsets, the packer (of either) and a record back to the file's block. */
#define KL_IQ3P_XXS_REC 104
#define KL_IQ3P_S_REC   112
#define KL_IQ3P_SG      64 /* sg */
#define KL_IQ3P_S       96 /* s */
#define KL_IQ3P_D       100
#define KL_IQ3P_QH      104 /* IQ3_S only */
/* The bit of a record's sign byte i that holds the sign of element j (0..3) of entry i; entry
 * 32 + i's is 2 bits up (the packer and the VBMI tile's planes both read it here). */
#define KL_IQ3P_SGBIT(j) ((j) % 2 ? (j) / 2 : 4 + (j) / 2)
size_t kl_pack_iq3_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_iq3(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst);
void kl_unpack_iq3_block(kl_dtype t, const uint8_t *rec, void *block);
void kl_ref_dequant_iq1_s(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
/* IQ1_S's packed form, 2-bit codes (kernels/pack_iq1.c has the layout): a row's block record
 * and its parts' offsets, the packer and the reference dot over it. */
#define KL_IQ1P_REC 70
#define KL_IQ1P_D   64
#define KL_IQ1P_S   66
size_t kl_pack_iq1_s_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_iq1_s(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst);
void kl_ref_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_iq1_m(const void *src, float *y, int64_t n);
void kl_ref_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);
/* IQ1_M's packed form, IQ1_S's code bytes with the per-8 shift signs and per-16 scales beside
 * them (kernels/pack_iq1.c has the layout): the record, its parts' offsets, the packer and the
 * reference dot over it. */
#define KL_IQ1MP_REC 76
#define KL_IQ1MP_SH  64
#define KL_IQ1MP_SD  68
size_t kl_pack_iq1_m_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_iq1_m(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst);
void kl_ref_gemm_iq1_m_packed(const kl_gemm *g, int64_t r0, int64_t r1);
/* IQ1_M's AVX2 record (kernels/pack_iq1.c has the layout): the same code bytes, each chunk of
 * 32's shift signs and scales as one table row offset, d / 8 as a float. */
#define KL_IQ1MA_REC 84
#define KL_IQ1MA_IX  64
#define KL_IQ1MA_D   80
size_t kl_pack_iq1_m_avx2_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_iq1_m_avx2(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                        int64_t p1, void *dst);
void kl_ref_gemm_iq1_m_avx2_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_tq1_0(const void *src, float *y, int64_t n);
void kl_ref_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_dequant_tq2_0(const void *src, float *y, int64_t n);
void kl_ref_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_quant_tq1_0(const float *x, void *dst, int64_t n);
/* TQ1_0's packed form, TQ2_0's blocks in 16-row panels (kernels/pack_tq.c): the packer and
 * the reference dot over it. A panel is 16 plain TQ2_0 rows, so every dot over it is TQ2_0's
 * gemm on kl_packed_rows(g). */
size_t kl_pack_tq1_0_bytes(kl_dtype t, int64_t rows, int64_t cols);
void kl_pack_tq1_0(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst);
void kl_ref_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_quant_tq2_0(const float *x, void *dst, int64_t n);
#endif
