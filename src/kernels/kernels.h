/* kernels/kernels.h: math on raw pointers. Kernels never allocate and never see a model.
 * Every kernel has a scalar reference (kernels/ref_*.c) that defines what is correct; SIMD
 * paths (kernels/x86/avx2_*.c, avx512_*.c) are chosen once at run time (kernels/dispatch.c)
 * and tested against the reference on awkward sizes.
 *
 * Weights are row-major matrices W of shape (rows, cols) in any supported dtype, each row
 * cols elements stored as kl_dtype_row_bytes(dtype, cols) bytes. Activations are F32. */
#ifndef KILN_KERNELS_KERNELS_H
#define KILN_KERNELS_KERNELS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/workers.h"

/* Dtypes whose weights the matmul supports: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K. */
bool kl_matmul_supports(kl_dtype t);

/* y[b][r] = sum_c W[r][c] * x[b][c] for b < B, r < rows.
 * W: (rows, cols) of dtype wt. x: (B, cols) F32, row stride ldx floats. y: (B, rows) F32,
 * row stride ldy floats. scratch: at least kl_matmul_scratch(wt, B, cols) bytes (activations
 * quantized to the weight's dot type). Splits rows across the workers (NULL: this thread). */
void kl_matmul(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols,
               const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch);
size_t kl_matmul_scratch(kl_dtype wt, int B, int64_t cols);

/* Packed weights: W rearranged once (at model load) for this CPU's fastest matmul. Returns
 * the bytes the packed form of W takes, 0 when wt has none on this CPU (use kl_matmul). */
size_t kl_pack_bytes(kl_dtype wt, int64_t rows, int64_t cols);
/* Names this CPU's packed layouts (ISA and layout version): packed weights written by one
 * process are valid for another whose id is the same string. */
const char *kl_pack_id(void);
/* Writes the packed form of W into dst (kl_pack_bytes long), split across the workers. Rows
 * pack in independent panels of 16: rows [r, r + k) (r a multiple of 16) packed as a matrix
 * of their own are bytes [r / 16 * kl_pack_bytes(wt, 16, cols), ...) of the whole. */
void kl_pack(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols, void *dst);
/* kl_matmul over packed weights P; the same results within rounding, the same scratch. */
void kl_matmul_packed(kl_workers *w, kl_dtype wt, const void *P, int64_t rows, int64_t cols,
                      const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch);

/* Several products of the same activations in one pass of the workers (Q, K and V; gate and
 * up): the activations are quantized once and there is one barrier instead of n. Each output:
 * W (packed or not) of type, rows x cols, into y (B, rows) with row stride ldy. scratch: at
 * least kl_matmul_scratch(type, B, cols) for every output's type. */
typedef struct kl_mm_out {
    kl_dtype type;
    const void *W;
    bool packed;
    int64_t rows;
    float *y;
    int64_t ldy;
} kl_mm_out;
void kl_matmul_multi(kl_workers *w, const kl_mm_out *outs, int n, int64_t cols, const float *x,
                     int64_t ldx, int B, void *scratch);
/* Products of different weights over runs of the same activation rows, in one pass of the
 * workers (a mixture's experts, each over the rows routed to it: the rows are quantized once
 * and each expert's weights read once however many rows chose it). Run i multiplies rows
 * [row0, row0 + B) of x (B rows in all) into out.y, B rows of out.ldy. The work is split by
 * rows x activation rows, so a busy expert is shared by the workers. A row's result is the
 * same bits as kl_matmul of that row alone. Runs with B < 1 are skipped. */
typedef struct kl_mm_run {
    kl_mm_out out;
    int row0, B;
} kl_mm_run;
void kl_matmul_runs(kl_workers *w, const kl_mm_run *runs, int n, int64_t cols, const float *x,
                    int64_t ldx, int B, void *scratch);

/* Conversions of one row of n elements (n a multiple of the dtype's block size). Whether t
 * can be read row by row (the token embedding lookup): */
bool kl_dequantize_supports(kl_dtype t);
/* Writes n floats; returns false (dst untouched) when t cannot be read or n does not fit. */
bool kl_dequantize_row(kl_dtype t, const void *src, float *dst, int64_t n);
/* Whether rows can be quantized to t (kl_quantize_row). */
bool kl_quantize_supports(kl_dtype t);
/* Quantizes n floats into dst (kl_dtype_row_bytes(t, n) bytes). Returns false when t cannot
 * be quantized to. */
bool kl_quantize_row(kl_dtype t, const float *src, void *dst, int64_t n);
/* Whether t can be quantized to (kiln model make / quantize). */
bool kl_quantize_supports(kl_dtype t);

float kl_fp16_to_fp32(uint16_t h);
uint16_t kl_fp32_to_fp16(float f);
float kl_bf16_to_fp32(uint16_t h);
uint16_t kl_fp32_to_bf16(float f); /* round to nearest even */
/* Rows of n values (kernels/convert.c; F16C when the CPU has it, same results). */
void kl_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);
void kl_ref_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_ref_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);

/* out = x / rms(x) * weight, over n elements. */
void kl_rmsnorm(float *out, const float *x, const float *weight, int n, float eps);

/* RoPE (kernels/rope.c). The angles of one position are computed once (kl_rope_angles) and
 * applied to every head of the token (kl_rope), as llama.cpp computes them: pair i (i <
 * n_rot/2) has the angle t_i = pos * scale^i / factors[i], the power built by repeated
 * products in float; then freq_scale * t_i (linear interpolation), or with YaRN a ramp from
 * t_i (dims below corr[0], fast-rotating: extrapolated) to freq_scale * t_i (dims past corr[1]:
 * interpolated), and cos and sin scaled by attn_factor (times 1 + 0.1 ln(1 / freq_scale)
 * with YaRN). cs[2i], cs[2i+1] = the scaled cos, sin. */
typedef struct kl_rope_cfg {
    int n_rot;            /* rotated dims of a head (even); dims past it are left alone */
    float scale;          /* base^(-2/n_rot) */
    const float *factors; /* (n_rot/2) divisors of the angles (Llama 3, Phi-3), or NULL */
    float freq_scale;     /* 1 / the context scaling factor; 1: none */
    float ext_factor;     /* YaRN: 1 (the ramp on), 0: plain interpolation */
    float attn_factor;    /* magnitude of cos and sin */
    float corr[2];        /* YaRN: the ramp's first and last pair (kl_rope_yarn_corr) */
} kl_rope_cfg;
void kl_rope_angles(const kl_rope_cfg *c, int pos, float *cs);
/* Rotates the pairs of one head by the angles cs: (i, i + n_rot/2) when neox, else
 * (2i, 2i+1). */
void kl_rope(float *head, int n_rot, const float *cs, bool neox);
/* YaRN's ramp: pairs from the one that turns beta_fast times over n_ctx_orig positions to the
 * one that turns beta_slow times (floored and ceiled, clamped to [0, n_rot - 1]). */
void kl_rope_yarn_corr(int n_rot, int n_ctx_orig, float base, float beta_fast, float beta_slow,
                       float corr[2]);

/* In place softmax over n. */
void kl_softmax(float *x, int n);
/* One step of an online softmax: *max becomes the larger of *max and x's maximum, m; x[i]
 * becomes e^(x[i] - m); returns their sum (in double). kl_softmax is this from *max = -inf,
 * then a division by the sum. */
double kl_softmax_part(float *x, int n, float *max);
/* out[i] = silu(gate[i]) * up[i] */
void kl_swiglu(float *out, const float *gate, const float *up, int n);
/* GELU, tanh form (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))), in float (kernels/act.c):
 * out[i] = gelu(gate[i]) * up[i], and x[i] = gelu(x[i] + bias[i]) in place (bias may be NULL). */
void kl_geglu(float *out, const float *gate, const float *up, int n);
void kl_gelu_bias(float *x, const float *bias, int n);
/* out = (x - mean) / sqrt(var + eps) * weight + bias over n (LayerNorm; bias may be NULL), the
 * sums in double as llama.cpp's. */
void kl_layernorm(float *out, const float *x, const float *weight, const float *bias, int n,
                  float eps);
/* x[i] = cap * tanh(x[i] / cap): Gemma 2's soft-capping of attention scores and logits. */
void kl_softcap(float *x, int n, float cap);
/* y += a * x over n floats. */
void kl_axpy_f32(float *y, float a, const float *x, int n);

/* The sampler's exp (kernels/exp.c): relative error below 3e-7 for x <= 88, exactly 0 below
 * -87. kl_exp_row writes e[i] = kl_exp((l[i] - m) * k) for i < n, four at a time with SSE2,
 * bit-identical to the scalar function. */
float kl_exp(float x);
void kl_exp_row(float *e, const float *l, int n, float m, float k);

/* The paged KV cache's row formats (kernels/kv.c): one table per cache dtype (F32, F16,
 * Q8_0) with how attention writes a token's K or V row and reads runs of cached rows back,
 * so the attention code never branches on the dtype.
 *
 * A run is the head slice of n consecutive cached rows as the attention kernels take it:
 * read in place, or converted once into a float buffer that all the query rows of a tile
 * then share. */
typedef struct kl_kv_run {
    const void *rows; /* n rows of hd values, ld elements apart */
    int ld;
    bool half; /* F16 values read in place; floats otherwise */
} kl_kv_run;

typedef struct kl_kv_ops {
    int block; /* head offsets and sizes are multiples of this many values */
    /* Cache row of n values (a multiple of block) from floats. */
    void (*write)(const float *x, void *row, int n);
    /* The head slice [off, off + hd) of n cached rows, stride bytes apart, for nr query rows
     * (which decides between in place and converted); buf: (n, hd) floats. */
    kl_kv_run (*read)(const void *row, size_t stride, int off, int n, int hd, int nr, float *buf);
    /* dst = src as this cache's products see queries and attention weights (the F16 cache
     * rounds them to F16, as llama.cpp's F16 products do; the others copy). src == dst is
     * fine. */
    void (*round)(const float *src, float *dst, int n);
} kl_kv_ops;

/* The run from its j-th row on. */
kl_kv_run kl_kv_run_at(const kl_kv_run *r, int j);
/* The table of cache dtype t, NULL when t is not one. */
const kl_kv_ops *kl_kv_ops_get(kl_dtype t);
/* For nr query rows sharing nk: s_r[j] = scale * dot(q_r, k_j) for the run's first nk rows
 * (head size hd), q_r = q + r * ldq, s_r = s + r * lds; each row's bits as if it were alone. */
void kl_kv_scores(const kl_kv_run *k, const float *q, int ldq, int nr, int nk, int hd, float scale,
                  float *s, int lds);
/* For nr query rows sharing nk: o_r += sum_j p_r[j] * v_j, o_r = o + r * ldo, p_r = p + r * ldp,
 * summed in j order. Both give the same bits whether a run is read in place or converted,
 * and each row's result depends only on its own operands (batch invariance). */
void kl_kv_pv(const kl_kv_run *v, float *o, int ldo, const float *p, int ldp, int nr, int nk,
              int hd);
/* LoRA (kernels/lora.c): the low-rank update y += scale (x A^T) B^T of adapters over a batch,
 * each segment one adapter's pair on one projection with the batch rows that use it (Punica's
 * SGMV, gathered). A and B^T are F16; x, t and y F32. */
typedef struct kl_lora_seg {
    const uint16_t *A;  /* (rank, cols) */
    const uint16_t *Bt; /* (rank, rows): B transposed */
    int rank;
    int64_t cols, rows; /* of the base weight: input and output widths */
    float scale;        /* alpha / rank, times the user's scale */
    const float *x;     /* input rows, ldx floats apart */
    int64_t ldx;
    float *y; /* output rows (the base matmul's result), ldy floats apart */
    int64_t ldy;
    const int32_t *idx; /* (n) the batch rows of x and y this segment updates */
    int n;
    float *t; /* (n, rank) scratch */
} kl_lora_seg;
typedef struct kl_lora_batch {
    const kl_lora_seg *segs;
    int n_segs;
} kl_lora_batch;
/* Runs every segment: two passes of the workers (NULL: this thread), or inline when the work
 * is small. Segments may share x; their (y, idx) rows must not overlap. */
void kl_lora_apply(kl_workers *w, const kl_lora_batch *b);
/* The two halves for one segment's rows: t (n, rank) = x[idx[i]] A^T; and, for output columns
 * [o0, o1), y[idx[i]][o] += scale sum_r t[i][r] Bt[r][o] (Bt rows ldb apart). */
void kl_lora_shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                    const int32_t *idx, int n, float *t);
void kl_lora_expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                    const float *t, int n, float scale, float *y, int64_t ldy, const int32_t *idx);
#endif
