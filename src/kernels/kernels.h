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
/* Writes the packed form of W into dst (kl_pack_bytes long), split across the workers. */
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

/* Conversions of one row of n elements (n a multiple of the dtype's block size). Whether t
 * can be read row by row (the token embedding lookup): */
bool kl_dequantize_supports(kl_dtype t);
/* Writes n floats; returns false (dst untouched) when t cannot be read or n does not fit. */
bool kl_dequantize_row(kl_dtype t, const void *src, float *dst, int64_t n);
/* Quantizes n floats into dst (kl_dtype_row_bytes(t, n) bytes). Returns false when t cannot
 * be quantized to. */
bool kl_quantize_row(kl_dtype t, const float *src, void *dst, int64_t n);

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
/* Rotates pairs of a head of head_dim at position pos. neox: pairs are (i, i + n_rot/2);
 * otherwise (2i, 2i+1). freqs: n_rot/2 inverse frequencies (theta^(-2i/n_rot), with any
 * rope scaling already applied). Dims past n_rot are left alone. */
void kl_rope(float *head, int head_dim, int n_rot, int pos, const float *freqs, bool neox);
/* In place softmax over n. */
void kl_softmax(float *x, int n);
/* out[i] = silu(gate[i]) * up[i] */
void kl_swiglu(float *out, const float *gate, const float *up, int n);
/* Dot product of n floats. */
float kl_dot_f32(const float *a, const float *b, int n);
/* y += a * x over n floats. */
void kl_axpy_f32(float *y, float a, const float *x, int n);
/* Dot product of n halves (the F16 KV cache) with n floats, accumulated in float. */
float kl_dot_f16(const uint16_t *a, const float *b, int n);
/* y += a * x over n halves (attention's weighted sum of F16 values). */
void kl_axpy_f16(float *y, float a, const uint16_t *x, int n);
/* Attention over a run of nk cached positions, one query row (head_dim hd) at a time:
 * s[j] = scale * dot(q, k_j), k_j = k + j * ldk; and o += sum_j p[j] * v_j, v_j = v + j * ldv,
 * summed in j order. Each result depends only on its own row and keys, never on nk or on what
 * else is computed (batch invariance). */
void kl_attn_scores(const float *q, const float *k, int ldk, int nk, int hd, float scale, float *s);
void kl_attn_pv(float *o, const float *p, const float *v, int ldv, int nk, int hd);
/* The same over F16 keys / values read in place (the F16 KV cache; ldk, ldv in halves): the
 * same bits as converting them to float first and calling the F32 kernels. */
void kl_attn_scores_f16(const float *q, const uint16_t *k, int ldk, int nk, int hd, float scale,
                        float *s);
void kl_attn_pv_f16(float *o, const float *p, const uint16_t *v, int ldv, int nk, int hd);
/* kl_attn_pv (_f16) for nr rows that share the same nk values: row r is o + r * ldo with
 * weights p + r * ldp. The bits of nr one-row calls; faster, as each value row is loaded once
 * for all of them and their independent sums hide the FMA latency. */
void kl_attn_pv_rows(float *o, int ldo, const float *p, int ldp, int nr, const float *v, int ldv,
                     int nk, int hd);
void kl_attn_pv_rows_f16(float *o, int ldo, const float *p, int ldp, int nr, const uint16_t *v,
                         int ldv, int nk, int hd);
#endif
