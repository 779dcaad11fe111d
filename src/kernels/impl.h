/* kernels/impl.h: what the kernel files share and nobody else sees. GGUF block layouts,
 * the activation layouts matmul quantizes into, and the per-dtype traits table that
 * dispatch.c fills once from the CPU's features (STYLE.md habit 3).
 *
 * Block layouts are GGUF's (ggml-common.h), byte for byte: a file written by llama.cpp reads
 * here and one written here reads in llama.cpp. */
#ifndef KILN_KERNELS_IMPL_H
#define KILN_KERNELS_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "kernels/kernels.h"

#define KL_QK  32  /* elements per Q8_0 / Q4_0 block */
#define KL_QKK 256 /* elements per K-quant super-block */

typedef struct {
    uint16_t d;       /* fp16 scale */
    int8_t qs[KL_QK]; /* x = d * q */
} kl_block_q8_0;
typedef struct {
    uint16_t d;            /* fp16 scale */
    uint8_t qs[KL_QK / 2]; /* x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8) */
} kl_block_q4_0;
typedef struct {
    uint16_t d, m;         /* fp16 scale and min: x = d * q + m */
    uint8_t qs[KL_QK / 2]; /* q in 0..15, nibbles as Q4_0's */
} kl_block_q4_1;
typedef struct {
    uint16_t d;            /* fp16 scale: x = d * (q - 16) */
    uint8_t qh[4];         /* bit j (little-endian uint32): bit 4 of element j's q */
    uint8_t qs[KL_QK / 2]; /* low 4 bits, nibbles as Q4_0's */
} kl_block_q5_0;
typedef struct {
    uint16_t d, m; /* x = d * q + m */
    uint8_t qh[4];
    uint8_t qs[KL_QK / 2];
} kl_block_q5_1;
typedef struct {
    uint8_t scales[KL_QKK / 16]; /* per 16 elements: scale (low nibble), min (high nibble) */
    uint8_t qs[KL_QKK / 4];      /* 2-bit quants (ref_quant_q2k_q3k.c has the order) */
    uint16_t d, dmin;            /* fp16 super-scales of the scales and mins */
} kl_block_q2_k;
typedef struct {
    uint8_t hmask[KL_QKK / 8]; /* third bit of the quants */
    uint8_t qs[KL_QKK / 4];    /* low 2 bits */
    uint8_t scales[12];        /* 16 signed 6-bit scales, packed */
    uint16_t d;                /* fp16 super-scale */
} kl_block_q3_k;
typedef struct {
    uint16_t d, dmin;       /* fp16 super-scales of the 6-bit scales and mins */
    uint8_t scales[12];     /* 8 (scale, min) pairs, 6 bits each, packed (kl_k4_scale_min) */
    uint8_t qs[KL_QKK / 2]; /* 4-bit quants: 64-element chunks, low nibbles then high */
} kl_block_q4_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[KL_QKK / 8]; /* fifth bit: bit 2c of qh[l] for element l of chunk c's low half */
    uint8_t qs[KL_QKK / 2];
} kl_block_q5_k;
typedef struct {
    uint8_t ql[KL_QKK / 2];     /* low 4 bits */
    uint8_t qh[KL_QKK / 4];     /* high 2 bits */
    int8_t scales[KL_QKK / 16]; /* one signed scale per 16 elements */
    uint16_t d;                 /* fp16 super-scale */
} kl_block_q6_k;
_Static_assert(sizeof(kl_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(kl_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(kl_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(kl_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(kl_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(kl_block_q2_k) == 84, "q2_k block");
_Static_assert(sizeof(kl_block_q3_k) == 110, "q3_k block");
_Static_assert(sizeof(kl_block_q4_k) == 144, "q4_k block");
_Static_assert(sizeof(kl_block_q5_k) == 176, "q5_k block");
_Static_assert(sizeof(kl_block_q6_k) == 210, "q6_k block");

/* One K-quant super-block (any of Q2_K..Q6_K) as unsigned quants and per-16-column integer
 * scales (kernels/ref_ksb.c): element e is d sc[e/16] u[e] - dmin m[e/16] (Q2_K Q4_K Q5_K)
 * or d sc[e/16] (u[e] - off) (Q3_K off 4, Q6_K off 32). For the Q2_K/Q3_K references and
 * the packers. */
typedef struct kl_ksb {
    uint8_t u[KL_QKK];
    int16_t sc[16], m[16]; /* Q4_K/Q5_K: each 32-column value twice */
    uint16_t d, dmin;      /* fp16 */
} kl_ksb;
void kl_ksb_unpack(kl_dtype t, const void *block, kl_ksb *o);
/* Scale j (-32..31) of a Q3_K block's packed 12 bytes. */
int kl_k3_scale(const uint8_t *s, int j);

/* Scale and min j (0..7) of a Q4_K/Q5_K block's packed 12 bytes. */
static inline void kl_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Activation layouts (Kiln's own, in matmul scratch; every ISA writes the same bytes).
 * A row of n activations quantized for the dot, 64-byte aligned, kl_act_row_bytes() long:
 *   KL_Q8_0: int8 qs[n]; float d[n/32] (fp16-rounded, as llama.cpp's block_q8_0 holds it);
 *            int32 c[n/32]: -128 * the sum of the block's qs, the term that takes the +128 bias
 *            out of unsigned (w + 128) times signed int8 dots, ready to start their int32
 *            accumulator from memory (biases 8 and 16: c / 16, c / 8, exact shifts).
 *   KL_Q8_1: the Q8_0 row, then float s[n/32]: fp16(amax/127 * sum of the block's qs), the
 *            min term of Q4_1/Q5_1 dots (llama.cpp's block_q8_1.s).
 *   KL_Q8_K: int8 qs[n]; float d[n/256]; int16 bsums[n/16] (sums of 16 qs), llama.cpp's q8_K.
 *   KL_F32:  the caller's rows are used as they are; no scratch.
 * Two kernel-private layouts hold the Q8_K row with each 256-element block's qs permuted into
 * "planes", so that a dot over grid entries of 4 or 8 consecutive elements finds element j of
 * every entry in one vector and needs no per-chunk spread of the weights (d and bsums, and so
 * kl_act_q8_k_d and kl_act_q8_k_bsums, are Q8_K's; a[i] is element i of the block's Q8_K qs):
 *   KL_ACT_Q8_K_T4: byte 64 j + e = a[4 e + j]       (j 0..3 within an entry, e 0..63 the entry);
 *                   after bsums, int32 c[n/16] = -64 * bsums: the term that takes the +64 bias
 *                   of the VBMI packed IQ3 weights out (x86/avx512vbmi_iq3.c), ready to start
 *                   the int32 accumulator of each 16 elements from memory.
 *   KL_ACT_Q8_K_T8: byte 32 j + 4 s + e = a[32 s + 8 e + j]   (j 0..7 within an entry, s 0..7
 *                   the 32-element sub-block, e 0..3 the entry in it): a dword of plane j holds
 *                   element j of the 4 entries of one sub-block.
 *   KL_ACT_Q8_K_T8P: T8 over pairs of blocks: in blocks 2i, 2i + 1 (512 bytes) byte
 *                   64 j + 32 h + 4 s + e = element 32 s + 8 e + j of block 2i + h, so that a
 *                   vector holds plane j of both blocks; an odd last block is in T8 order.
 * They are ids past the dtypes: kl_type_ops.act may hold them, nothing indexes a type table by
 * them. */
#define KL_ACT_Q8_K_T4  ((kl_dtype)(KL_DTYPE_COUNT + 0))
#define KL_ACT_Q8_K_T8  ((kl_dtype)(KL_DTYPE_COUNT + 1))
#define KL_ACT_Q8_K_T8P ((kl_dtype)(KL_DTYPE_COUNT + 2))
/* The Q8_K byte (index into the block's qs) that byte p (0..255) of a T4 / T8 block holds. */
static inline int kl_act_t4_src(int p)
{
    return 4 * (p % 64) + p / 64;
}
static inline int kl_act_t8_src(int p)
{
    return 32 * (p % 32 / 4) + 8 * (p % 4) + p / 32;
}
/* The byte of a pair of Q8_K blocks' qs (0..511, the second block's from 256) that byte p
 * (0..511) of a T8P pair holds. */
static inline int kl_act_t8p_src(int p)
{
    return 256 * (p % 64 / 32) + kl_act_t8_src(32 * (p / 64) + p % 32);
}
size_t kl_act_row_bytes(kl_dtype act, int64_t n);
static inline const float *kl_act_q8_0_d(const void *row, int64_t n)
{
    return (const float *)((const uint8_t *)row + n);
}
static inline const int32_t *kl_act_q8_0_c(const void *row, int64_t n)
{
    return (const int32_t *)((const uint8_t *)row + n + 4 * (n / KL_QK));
}
static inline const float *kl_act_q8_1_s(const void *row, int64_t n)
{
    return (const float *)((const uint8_t *)row + n + 8 * (n / KL_QK));
}
static inline const float *kl_act_q8_k_d(const void *row, int64_t n)
{
    return (const float *)((const uint8_t *)row + n);
}
static inline const int16_t *kl_act_q8_k_bsums(const void *row, int64_t n)
{
    return (const int16_t *)((const uint8_t *)row + n + 4 * (n / KL_QKK));
}
static inline const int32_t *kl_act_q8_k_t4_c(const void *row, int64_t n)
{
    return (const int32_t *)((const uint8_t *)row + n + 4 * (n / KL_QKK) + 2 * (n / 16));
}

/* One matmul job: rows [r0, r1) of y for all B activation rows. */
typedef struct kl_gemm {
    const uint8_t *W; /* (rows, cols) weights */
    size_t w_stride;  /* bytes per weight row */
    int64_t cols;
    const uint8_t *act; /* (B, ...) activations in the dtype's act layout */
    size_t a_stride;    /* bytes between activation rows */
    int B;
    float *y; /* (B, rows), row stride ldy */
    int64_t ldy;
    int64_t rows; /* of W (packed gemms mask the last panel's stores) */
} kl_gemm;
typedef void (*kl_gemm_fn)(const kl_gemm *g, int64_t r0, int64_t r1);
typedef void (*kl_row_fn)(const float *x, void *dst, int64_t n);
typedef void (*kl_dequant_fn)(const void *src, float *y, int64_t n);
/* The packers take the type, so that one function serves the types that share a layout. */
typedef size_t (*kl_pack_bytes_fn)(kl_dtype t, int64_t rows, int64_t cols);
typedef void (*kl_pack_fn)(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                           int64_t p1, void *dst);

/* Per weight dtype: how to quantize activations and multiply. One table per ISA. */
typedef struct kl_type_ops {
    kl_dtype act;        /* activation layout: KL_F32, KL_Q8_0, KL_Q8_1, KL_Q8_K or KL_ACT_* */
    kl_row_fn quant_act; /* F32 row -> act layout row (NULL for KL_F32) */
    kl_gemm_fn gemm;     /* NULL: dtype not supported by the matmul */
    /* Packed weights (panels of 16 rows, see kernels/pack.c); NULL: no packed form.
     * gemm_packed takes the same act layout as gemm; its w_stride is bytes per panel. */
    kl_pack_bytes_fn pack_bytes;
    kl_pack_fn pack; /* panels [p0, p1) */
    kl_gemm_fn gemm_packed;
    /* Row conversions (n a multiple of the block): NULL when the type cannot be read (the
     * token embedding's row lookup needs to_f32) or written (kiln model quantize / make). */
    kl_dequant_fn to_f32;
    kl_row_fn from_f32;
} kl_type_ops;

/* Float kernels with SIMD variants. */
typedef struct kl_vec_ops {
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);
    void (*rmsnorm)(float *out, const float *x, const float *w, int n, float eps);
    void (*softmax)(float *x, int n);
    void (*swiglu)(float *out, const float *g, const float *u, int n);
    float (*dot_f16)(const uint16_t *a, const float *b, int n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);
    void (*attn_scores)(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                        float *s);
    void (*attn_pv)(float *o, const float *p, const float *v, int ldv, int nk, int hd);
    void (*attn_scores_f16)(const float *q, const uint16_t *k, int ldk, int nk, int hd, float scale,
                            float *s);
    void (*attn_pv_f16)(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);
    void (*attn_pv_rows)(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                         int ldv, int nk, int hd);
    void (*attn_pv_rows_f16)(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                             int ldv, int nk, int hd);
    /* attn_scores of nr query rows (q + r * ldq into s + r * lds) over the same keys: the bits
     * of nr one-row calls, each key row loaded (converted) once for the rows */
    void (*attn_scores_rows)(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                             int hd, float scale, float *s, int lds);
    void (*attn_scores_rows_f16)(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                 int nk, int hd, float scale, float *s, int lds);
    double (*softmax_part)(float *x, int n, float *max);
} kl_vec_ops;

/* Rows of a packed panel, every packer's and packed kernel's (kernels/pack.c). */
#define KL_PR 16

/* Bump when any ISA's packed layout (pack / gemm_packed) changes: packed weights saved to disk
 * by an older Kiln are then refused (kl_pack_id). */
#define KL_PACK_VERSION 11

/* LoRA's two halves (kernels/lora.c has the reference and the contract). */
typedef struct kl_lora_ops {
    void (*shrink)(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                   const int32_t *idx, int n, float *t);
    void (*expand)(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                   const float *t, int n, float scale, float *y, int64_t ldy, const int32_t *idx);
} kl_lora_ops;

typedef struct kl_isa {
    const char *name; /* "scalar", "avx2", "avx512", "avx512vbmi" */
    kl_type_ops types[KL_DTYPE_COUNT];
    kl_vec_ops vec;
    kl_lora_ops lora;
} kl_isa;

/* Each SIMD file set fills the entries it implements over a copy of the table below it
 * (scalar < avx2 < avx512 < avx512vbmi); dispatch.c builds the four tables once. A family of
 * types (ref_quant_<family>.c, x86/<isa>_<family>.c) fills its own rows in its own function,
 * called from dispatch.c (scalar) or the ISA's init. */
void kl_isa_avx2_init(kl_isa *isa);
/* The AVX2 table's own packed forms (IQ1, IQ2, IQ3, Q3_K's layout), set after the AVX-512
 * tables copied the rest (x86/avx2_init.c). */
void kl_isa_avx2_own(kl_isa *isa);
void kl_isa_avx512_init(kl_isa *isa);
/* Scalar rows: ref_quant.c (F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K row conversions). */
void kl_ref_types_base(kl_isa *isa);
void kl_ref_types_legacy(kl_isa *isa);         /* ref_quant_legacy.c: Q4_1 Q5_0 Q5_1 */
void kl_ref_types_q2k_q3k(kl_isa *isa);        /* ref_quant_q2k_q3k.c: Q2_K Q3_K */
void kl_avx2_types_kquant(kl_isa *isa);        /* x86/avx2_kquant.c: Q2_K..Q6_K */
void kl_avx2_types_legacy(kl_isa *isa);        /* x86/avx2_legacy.c: Q4_1 Q5_0 Q5_1 */
void kl_avx2_types_packed(kl_isa *isa);        /* x86/avx2_packed.c: the packed gemms */
void kl_avx2_types_packed_kquant(kl_isa *isa); /* x86/avx2_packed_kquant.c: Q2_K..Q6_K, IQ4_XS */
void kl_avx2_types_packed_own(kl_isa *isa);    /* there: Q3_K's own layout, IQ3_XXS, IQ3_S */
/* x86/avx512_packed_kquant.c, avx512_packed_legacy.c: packed Q2_K..Q6_K, IQ4_XS; Q4_1 Q5_0 Q5_1 */
void kl_avx512_types_packed_kquant(kl_isa *isa);
void kl_avx512_types_packed_legacy(kl_isa *isa);
/* kernels/pack.c: the panel packers (pack_bytes, pack) of F32 F16 Q8_0 Q4_0 IQ4_NL Q4_1 Q5_0
 * Q5_1, ISA-neutral code that the AVX2 and AVX-512 gemm_packed both read. */
void kl_panel_types(kl_isa *isa);
/* kernels/pack_kquant.c: those of Q2_K..Q6_K (the layout: kernels/pack_kquant.h), and of
 * IQ4_XS, IQ3_XXS and IQ3_S in Q4_K's shape; Q3_K in the AVX2 table's own layout (pack_kquant.h's
 * Q3S). */
void kl_panel_types_kquant(kl_isa *isa);
void kl_panel_types_q3_k_avx2(kl_isa *isa);
void kl_panel_types_iq4_xs(kl_isa *isa);
void kl_panel_types_iq3(kl_isa *isa); /* IQ3_XXS IQ3_S (the AVX2 table's only) */

/* Scalar reference pieces (ref_*.c). */
void kl_ref_quant_act_q8_0(const float *x, void *dst, int64_t n);
void kl_ref_quant_act_q8_k(const float *x, void *dst, int64_t n);
/* Q8_K rows in the plane layouts (kl_ref_quant_act_q8_k, each block's qs then permuted). */
void kl_ref_quant_act_q8_k_t4(const float *x, void *dst, int64_t n);
void kl_ref_quant_act_q8_k_t8(const float *x, void *dst, int64_t n);
void kl_ref_quant_act_q8_k_t8p(const float *x, void *dst, int64_t n);
void kl_ref_quant_act_q8_1(const float *x, void *dst, int64_t n);
/* Writes a Q8_1 row's s[] over a Q8_0 row quantized from x (by any ISA). */
void kl_act_q8_1_finish(const float *x, void *dst, int64_t n);
void kl_ref_gemm_f32(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_f16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_bf16(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q8_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q4_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q4_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q5_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q6_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q4_1(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q5_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q5_1(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q2_k(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_ref_gemm_q3_k(const kl_gemm *g, int64_t r0, int64_t r1);
float kl_ref_dot(const float *a, const float *b, int n);
void kl_ref_axpy(float *y, float a, const float *x, int n);
void kl_ref_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void kl_ref_softmax(float *x, int n);
double kl_ref_softmax_part(float *x, int n, float *max);
void kl_ref_swiglu(float *out, const float *g, const float *u, int n);
float kl_ref_dot_f16(const uint16_t *a, const float *b, int n);
void kl_ref_axpy_f16(float *y, float a, const uint16_t *x, int n);
void kl_ref_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale,
                        float *s);
void kl_ref_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);
void kl_ref_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd, float scale,
                            float *s);
void kl_ref_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);
void kl_ref_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v,
                         int ldv, int nk, int hd);
void kl_ref_lora_shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                        const int32_t *idx, int n, float *t);
void kl_ref_lora_expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                        const float *t, int n, float scale, float *y, int64_t ldy,
                        const int32_t *idx);
void kl_avx512_lora_init(kl_isa *isa); /* x86/avx512_lora.c */
void kl_ref_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                             int ldv, int nk, int hd);
void kl_ref_attn_scores_rows(const float *q, int ldq, int nr, const float *k, int ldk, int nk,
                             int hd, float scale, float *s, int lds);
void kl_ref_attn_scores_rows_f16(const float *q, int ldq, int nr, const uint16_t *k, int ldk,
                                 int nk, int hd, float scale, float *s, int lds);

/* The ISA in use (picked once; KILN_SIMD=scalar|avx2|avx512|avx512vbmi forces one). */
const kl_isa *kl_isa_get(void);
/* The named ISA if this CPU runs it, else NULL. For tests and benchmarks. */
const kl_isa *kl_isa_find(const char *name);
/* Makes later kernel calls use isa (tests and benchmarks); NULL restores the default. */
void kl_isa_set(const kl_isa *isa);

/* Round-to-nearest-even of a float to int (|v| < 2^22), as llama.cpp's nearest_int. */
static inline int kl_nearest_int(float v)
{
    float f = v + 12582912.f;
    int32_t i;
    __builtin_memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}
#endif
