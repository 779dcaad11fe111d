/* kernels/matmul.c: y = W x over a batch. Quantizes the activations into the caller's scratch
 * (one pass over the workers, split by batch row), then splits W's rows across the workers
 * (a second pass) and runs the ISA's gemm for the weight dtype on each share; the same over
 * weights packed in panels of 16 rows (ROW_ALIGN: a share is whole panels). */
#include "kernels/impl.h"

#define ROW_ALIGN 16 /* shares start on multiples of 16 rows: whole SIMD tiles, whole y lines */

bool kl_matmul_supports(kl_dtype t)
{
    return (unsigned)t < KL_DTYPE_COUNT && kl_isa_get()->types[t].gemm != NULL;
}

/* Returns the scratch bytes kl_matmul needs (0 when activations are used as they are). */
size_t kl_matmul_scratch(kl_dtype wt, int B, int64_t cols)
{
    if (!kl_matmul_supports(wt) || B <= 0) return 0;
    size_t row = kl_act_row_bytes(kl_isa_get()->types[wt].act, cols);
    return row ? (size_t)B * row + 64 : 0;
}

typedef struct {
    const kl_type_ops *ops;
    kl_gemm g;
    const float *x;
    int64_t ldx;
    int64_t rows;
} mm_job;

static void quant_part(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    for (int b = (int)((int64_t)ith * j->g.B / nth); b < (int64_t)(ith + 1) * j->g.B / nth; b++)
        j->ops->quant_act(j->x + b * j->ldx, (uint8_t *)j->g.act + (size_t)b * j->g.a_stride,
                          j->g.cols);
}

static void gemm_part(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    int64_t tiles = (j->rows + ROW_ALIGN - 1) / ROW_ALIGN;
    int64_t r0 = tiles * ith / nth * ROW_ALIGN, r1 = tiles * (ith + 1) / nth * ROW_ALIGN;
    if (r1 > j->rows) r1 = j->rows;
    if (r0 < r1) j->ops->gemm(&j->g, r0, r1);
}

static void gemm_packed_part(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    int64_t tiles = (j->rows + ROW_ALIGN - 1) / ROW_ALIGN;
    int64_t r0 = tiles * ith / nth * ROW_ALIGN, r1 = tiles * (ith + 1) / nth * ROW_ALIGN;
    if (r1 > j->rows) r1 = j->rows;
    if (r0 < r1) j->ops->gemm_packed(&j->g, r0, r1);
}

static void run(kl_workers *w, kl_dtype wt, const void *W, size_t w_stride, int64_t rows,
                int64_t cols, const float *x, int64_t ldx, int B, float *y, int64_t ldy,
                void *scratch, kl_work_fn part)
{
    const kl_type_ops *ops = &kl_isa_get()->types[wt];
    mm_job j = {.ops = ops, .x = x, .ldx = ldx, .rows = rows};
    j.g = (kl_gemm){.W = W, .w_stride = w_stride, .cols = cols, .B = B, .y = y, .ldy = ldy,
                    .rows = rows};
    if (ops->act == KL_F32) {
        j.g.act = (const uint8_t *)x;
        j.g.a_stride = (size_t)ldx * sizeof(float);
    } else {
        j.g.act = (const uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        j.g.a_stride = kl_act_row_bytes(ops->act, cols);
        if (B == 1 || !w)
            quant_part(&j, 0, 1);
        else
            kl_workers_run(w, quant_part, &j);
    }
    kl_workers_run(w, part, &j);
}

/* Computes y (see kernels.h). Does nothing for an unsupported dtype, B < 1 or cols that are
 * not a multiple of the dtype's block size. Leaves scratch holding the quantized activations. */
void kl_matmul(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols,
               const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch)
{
    if (!kl_matmul_supports(wt) || B < 1 || rows < 1 || !kl_dtype_row_bytes(wt, cols)) return;
    run(w, wt, W, kl_dtype_row_bytes(wt, cols), rows, cols, x, ldx, B, y, ldy, scratch, gemm_part);
}

size_t kl_pack_bytes(kl_dtype wt, int64_t rows, int64_t cols)
{
    if (!kl_matmul_supports(wt) || rows < 1 || !kl_dtype_row_bytes(wt, cols)) return 0;
    const kl_type_ops *ops = &kl_isa_get()->types[wt];
    return ops->pack_bytes && ops->gemm_packed ? ops->pack_bytes(rows, cols) : 0;
}

typedef struct {
    const kl_type_ops *ops;
    const void *W;
    int64_t rows, cols;
    void *dst;
} pack_job;

static void pack_part(void *ctx, int ith, int nth)
{
    pack_job *j = ctx;
    int64_t panels = (j->rows + ROW_ALIGN - 1) / ROW_ALIGN;
    j->ops->pack(j->W, j->rows, j->cols, panels * ith / nth, panels * (ith + 1) / nth, j->dst);
}

void kl_pack(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols, void *dst)
{
    if (!kl_pack_bytes(wt, rows, cols)) return;
    pack_job j = {&kl_isa_get()->types[wt], W, rows, cols, dst};
    kl_workers_run(w, pack_part, &j);
}

void kl_matmul_packed(kl_workers *w, kl_dtype wt, const void *P, int64_t rows, int64_t cols,
                      const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch)
{
    if (B < 1 || !kl_pack_bytes(wt, rows, cols)) return;
    size_t panel = kl_pack_bytes(wt, ROW_ALIGN, cols); /* one panel of 16 rows */
    run(w, wt, P, panel, rows, cols, x, ldx, B, y, ldy, scratch, gemm_packed_part);
}
