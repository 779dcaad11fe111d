/* kernels/lora.c: the low-rank update of LoRA adapters over one batch, in the segmented,
 * gathered form of Punica's SGMV: each segment is one adapter on one projection, with the
 * batch rows that use it. Two passes of the workers: shrink (t = x A^T for every segment's
 * rows, rows split across workers) and expand (y += scale t B^T, the output columns split
 * across workers), so the base matmul runs once over the whole batch and each adapter costs
 * only its own rows. Each row's result depends on nothing but its own operands. */
#include <math.h>

#include "kernels/impl.h"

#define ROWS_PER_UNIT 4         /* rows of one segment sharing each A row's loads */
#define COL_ALIGN     16        /* expand shares start on multiples of 16 columns */
#define INLINE_MACS   (1 << 18) /* below this much work one thread does it all */

/* Calls fn(seg, unit) for the shrink units [u0, u1) of the flattened list. */
static void shrink_part(void *ctx, int ith, int nth)
{
    const kl_lora_batch *b = ctx;
    const kl_lora_ops *ops = &kl_isa_get()->lora;
    int64_t total = 0;
    for (int s = 0; s < b->n_segs; s++)
        total += (b->segs[s].n + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
    int64_t u0 = total * ith / nth, u1 = total * (ith + 1) / nth, at = 0;
    for (int s = 0; s < b->n_segs && at < u1; s++) {
        const kl_lora_seg *g = &b->segs[s];
        int64_t units = (g->n + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
        int64_t lo = u0 > at ? u0 - at : 0, hi = u1 - at < units ? u1 - at : units;
        for (int64_t u = lo; u < hi; u++) {
            int i0 = (int)u * ROWS_PER_UNIT;
            int n = g->n - i0 < ROWS_PER_UNIT ? g->n - i0 : ROWS_PER_UNIT;
            ops->shrink(g->A, g->rank, g->cols, g->x, g->ldx, g->idx + i0, n,
                        g->t + (size_t)i0 * (size_t)g->rank);
        }
        at += units;
    }
}

static void expand_part(void *ctx, int ith, int nth)
{
    const kl_lora_batch *b = ctx;
    const kl_lora_ops *ops = &kl_isa_get()->lora;
    for (int s = 0; s < b->n_segs; s++) {
        const kl_lora_seg *g = &b->segs[s];
        int64_t chunks = (g->rows + COL_ALIGN - 1) / COL_ALIGN;
        int64_t o0 = chunks * ith / nth * COL_ALIGN, o1 = chunks * (ith + 1) / nth * COL_ALIGN;
        if (o1 > g->rows) o1 = g->rows;
        if (o0 < o1)
            ops->expand(g->Bt, g->rank, g->rows, o0, o1, g->t, g->n, g->scale, g->y, g->ldy,
                        g->idx);
    }
}

void kl_lora_apply(kl_workers *w, const kl_lora_batch *b)
{
    int64_t macs = 0;
    for (int s = 0; s < b->n_segs; s++)
        macs += (int64_t)b->segs[s].n * b->segs[s].rank * (b->segs[s].cols + b->segs[s].rows);
    if (!macs) return;
    if (macs < INLINE_MACS) w = NULL;
    kl_workers_run(w, shrink_part, (void *)b);
    kl_workers_run(w, expand_part, (void *)b);
}

void kl_lora_shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                    const int32_t *idx, int n, float *t)
{
    kl_isa_get()->lora.shrink(A, rank, cols, x, ldx, idx, n, t);
}

void kl_lora_expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                    const float *t, int n, float scale, float *y, int64_t ldy, const int32_t *idx)
{
    kl_isa_get()->lora.expand(Bt, rank, ldb, o0, o1, t, n, scale, y, ldy, idx);
}

/* ---- scalar reference ---- */

void kl_ref_lora_shrink(const uint16_t *A, int rank, int64_t cols, const float *x, int64_t ldx,
                        const int32_t *idx, int n, float *t)
{
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)idx[i] * (size_t)ldx;
        for (int r = 0; r < rank; r++) {
            const uint16_t *a = A + (size_t)r * (size_t)cols;
            float s = 0.f;
            for (int64_t c = 0; c < cols; c++)
                s += kl_fp16_to_fp32(a[c]) * xr[c];
            t[(size_t)i * (size_t)rank + (size_t)r] = s;
        }
    }
}

/* The sums over r are fused multiply-adds in r order, then one more for the scale: the SIMD
 * kernels do exactly these operations per lane, so they match this bit for bit. */
void kl_ref_lora_expand(const uint16_t *Bt, int rank, int64_t ldb, int64_t o0, int64_t o1,
                        const float *t, int n, float scale, float *y, int64_t ldy,
                        const int32_t *idx)
{
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)idx[i] * (size_t)ldy;
        const float *ti = t + (size_t)i * (size_t)rank;
        for (int64_t o = o0; o < o1; o++) {
            float acc = 0.f;
            for (int r = 0; r < rank; r++)
                acc = fmaf(ti[r], kl_fp16_to_fp32(Bt[(size_t)r * (size_t)ldb + (size_t)o]), acc);
            yr[o] = fmaf(scale, acc, yr[o]);
        }
    }
}
