/* kernels/lora.c: the low-rank update of LoRA adapters over one batch, in the segmented,
 * gathered form of Punica's SGMV: each segment is one adapter on one projection, with the
 * batch rows that use it. One pass of the workers over units of up to four rows of a
 * segment, each shrunk (t = x A^T) then expanded (y += scale t B^T) whole, shared out by
 * cost: the base matmul runs once over the whole batch, each adapter costs only its own rows,
 * and there is one barrier per call (barriers are what a shared machine makes expensive).
 * Each row's result depends on nothing but its own operands. */
#include <math.h>

#include "kernels/impl.h"

#define ROWS_PER_UNIT 4         /* rows of one segment sharing each A row's loads */
#define COL_ALIGN     16        /* expand shares start on multiples of 16 columns */
#define INLINE_MACS   (1 << 18) /* below this much work one thread does it all */

/* The work of one unit: up to ROWS_PER_UNIT rows of one segment, shrunk then expanded over
 * every output column (a row's update needs nothing from other rows: no barrier between). */
static int64_t unit_cost(const kl_lora_seg *g, int m)
{
    return (int64_t)m * g->rank * (g->cols + g->rows);
}

typedef struct {
    const kl_lora_batch *b;
    int64_t total; /* cost of every unit */
} apply_job;

/* Worker ith runs the units whose cost-weighted start falls in its equal share. */
static void apply_part(void *ctx, int ith, int nth)
{
    const apply_job *j = ctx;
    const kl_lora_ops *ops = &kl_isa_get()->lora;
    int64_t lo = j->total * ith / nth, hi = j->total * (ith + 1) / nth, at = 0;
    for (int s = 0; s < j->b->n_segs && at < hi; s++) {
        const kl_lora_seg *g = &j->b->segs[s];
        for (int i0 = 0; i0 < g->n && at < hi; i0 += ROWS_PER_UNIT) {
            int m = g->n - i0 < ROWS_PER_UNIT ? g->n - i0 : ROWS_PER_UNIT;
            if (at >= lo) {
                float *t = g->t + (size_t)i0 * (size_t)g->rank;
                ops->shrink(g->A, g->rank, g->cols, g->x, g->ldx, g->idx + i0, m, t);
                ops->expand(g->Bt, g->rank, g->rows, 0, g->rows, t, m, g->scale, g->y, g->ldy,
                            g->idx + i0);
            }
            at += unit_cost(g, m);
        }
    }
}

void kl_lora_apply(kl_workers *w, const kl_lora_batch *b)
{
    apply_job j = {b, 0};
    for (int s = 0; s < b->n_segs; s++)
        for (int i0 = 0; i0 < b->segs[s].n; i0 += ROWS_PER_UNIT)
            j.total += unit_cost(&b->segs[s], b->segs[s].n - i0 < ROWS_PER_UNIT ? b->segs[s].n - i0
                                                                                : ROWS_PER_UNIT);
    if (!j.total) return;
    kl_workers_run(j.total < INLINE_MACS ? NULL : w, apply_part, &j);
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
