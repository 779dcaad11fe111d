/* kernels/matmul.c: y = W x over a batch. Quantizes the activations into the caller's scratch
 * (one pass over the workers, split by batch row), then splits W's rows across the workers
 * (a second pass) and runs the ISA's gemm for the weight dtype on each share; the same over
 * weights packed in panels of 16 rows (ROW_ALIGN: a share is whole panels). Several matrices
 * over the same activations (Q, K, V; gate, up) go in one pass: one quantization, one barrier. */
#include <string.h>

#include "kernels/impl.h"

#define KL_STR_(x) #x
#define KL_STR(x)  KL_STR_(x)

#define ROW_ALIGN 16 /* shares start on multiples of 16 rows: whole SIMD tiles, whole y lines */

bool kl_matmul_supports(kl_dtype t)
{
    return (unsigned)t < KL_DTYPE_COUNT && kl_isa_get()->types[t].gemm != NULL;
}

/* Returns the scratch bytes kl_matmul needs (0 when activations are used as they are): room
 * for any table's layout of wt's activations, since tests and bench-kernels run several tables
 * over one scratch (a Q8_K row under AVX2 is a T4 row, c included, under VBMI). */
size_t kl_matmul_scratch(kl_dtype wt, int B, int64_t cols)
{
    if (!kl_matmul_supports(wt) || B <= 0) return 0;
    kl_dtype act = kl_isa_get()->types[wt].act;
    size_t row = kl_act_row_bytes(act, cols);
    if (act == KL_Q8_K || act == KL_ACT_Q8_K_T4 || act == KL_ACT_Q8_K_T8 || act == KL_ACT_Q8_K_T8P)
        row = kl_act_row_bytes(KL_ACT_Q8_K_T4, cols);
    return row ? (size_t)B * row + 64 : 0;
}

#define MAX_RUNS   64 /* products per pass of the workers (more: several passes) */
#define CHUNK_ROWS 64 /* rows per unit of work: whole tiles of four 16-row panels */
/* Activations of at most this many values are quantized by the calling thread: a few
 * microseconds, less than handing them to the workers and waiting for them (decoding's
 * per-head and per-expert products; one row of any width, as before) */
#define QUANT_INLINE 8192

/* One pass of the workers over up to MAX_RUNS products that read runs of the same quantized
 * activation rows (Q, K and V over all of them; a mixture's experts over the rows routed to
 * each). Their weight rows, in chunks, are split in shares of equal work: a chunk costs the
 * activation rows it is multiplied by, so an expert chosen by many tokens is spread over the
 * workers as a dense matrix would be (handing chunks out from a shared counter measured no
 * faster). Each row's result does not depend on the worker. */
typedef struct {
    kl_gemm g[MAX_RUNS];
    kl_gemm_fn fn[MAX_RUNS];
    int64_t cost0[MAX_RUNS + 1]; /* work before each product: sum of its chunks x rows */
    int n;
    /* activation quantization, before the pass */
    const kl_type_ops *ops;
    const float *x;
    int64_t ldx;
    int B;
    uint8_t *act;
    size_t a_stride;
} mm_job;

static void quant_part(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    for (int b = (int)((int64_t)ith * j->B / nth); b < (int64_t)(ith + 1) * j->B / nth; b++)
        j->ops->quant_act(j->x + b * j->ldx, j->act + (size_t)b * j->a_stride, j->g[0].cols);
}

/* The first chunk of product o whose work starts at or after c (ceiling division). */
static int64_t chunk_at(const mm_job *j, int o, int64_t c)
{
    int64_t B = j->g[o].B, rel = c - j->cost0[o];
    return rel <= 0 ? 0 : (rel + B - 1) / B;
}

static void gemm_part(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    int64_t total = j->cost0[j->n], lo = total * ith / nth, hi = total * (ith + 1) / nth;
    for (int o = 0; o < j->n; o++) {
        if (j->cost0[o + 1] <= lo || j->cost0[o] >= hi) continue;
        int64_t c1 = chunk_at(j, o, hi), nch = (j->g[o].rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
        for (int64_t c = chunk_at(j, o, lo); c < c1 && c < nch; c++) {
            int64_t r0 = c * CHUNK_ROWS, r1 = r0 + CHUNK_ROWS;
            j->fn[o](&j->g[o], r0, r1 < j->g[o].rows ? r1 : j->g[o].rows);
        }
    }
}

static bool valid(const kl_mm_out *o, int64_t cols)
{
    if (!kl_matmul_supports(o->type) || o->rows < 1 || !kl_dtype_row_bytes(o->type, cols))
        return false;
    return !o->packed || kl_pack_bytes(o->type, o->rows, cols);
}

/* Adds run r (its activation rows already quantized at a) to the pass. */
static void add_run(mm_job *j, const kl_mm_run *r, int64_t cols, const uint8_t *a, size_t a_stride)
{
    const kl_mm_out *o = &r->out;
    const kl_type_ops *ops = &kl_isa_get()->types[o->type];
    size_t w_stride = o->packed ? kl_pack_bytes(o->type, ROW_ALIGN, cols) /* one panel */
                                : kl_dtype_row_bytes(o->type, cols);
    j->fn[j->n] = o->packed ? ops->gemm_packed : ops->gemm;
    j->g[j->n] = (kl_gemm){.W = o->W,
                           .w_stride = w_stride,
                           .cols = cols,
                           .act = a + (size_t)r->row0 * a_stride,
                           .a_stride = a_stride,
                           .B = r->B,
                           .y = o->y,
                           .ldy = o->ldy,
                           .rows = o->rows};
    int64_t chunks = (o->rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    j->cost0[j->n + 1] = j->cost0[j->n] + chunks * r->B;
    j->n++;
}

void kl_matmul_runs(kl_workers *w, const kl_mm_run *runs, int n, int64_t cols, const float *x,
                    int64_t ldx, int B, void *scratch)
{
    if (B < 1 || n < 1) return;
    const kl_isa *isa = kl_isa_get();
    kl_dtype act = isa->types[runs[0].out.type].act;
    bool same = true;
    for (int i = 0; i < n; i++)
        same = same && isa->types[runs[i].out.type].act == act;
    if (!same) { /* one pass per product: they cannot share the quantized activations */
        for (int i = 0; i < n; i++)
            kl_matmul_runs(w, runs + i, 1, cols, x, ldx, B, scratch);
        return;
    }
    mm_job j = {.ops = &isa->types[runs[0].out.type], .x = x, .ldx = ldx, .B = B};
    const uint8_t *a = (const uint8_t *)x;
    size_t a_stride = (size_t)ldx * sizeof(float);
    if (act != KL_F32) {
        j.act = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        j.a_stride = a_stride = kl_act_row_bytes(act, cols);
        j.g[0].cols = cols;
        if (!w || B == 1 || (int64_t)B * cols <= QUANT_INLINE)
            quant_part(&j, 0, 1);
        else
            kl_workers_run(w, quant_part, &j);
        a = j.act;
    }
    for (int i = 0; i < n; i++) {
        const kl_mm_run *r = &runs[i];
        if (r->B < 1 || r->row0 < 0 || r->row0 + r->B > B || !valid(&r->out, cols)) continue;
        add_run(&j, r, cols, a, a_stride);
        if (j.n == MAX_RUNS) kl_workers_run(w, gemm_part, &j), j.n = 0;
    }
    if (j.n) kl_workers_run(w, gemm_part, &j);
}

void kl_matmul_multi(kl_workers *w, const kl_mm_out *outs, int n, int64_t cols, const float *x,
                     int64_t ldx, int B, void *scratch)
{
    kl_mm_run runs[MAX_RUNS];
    for (int at = 0; at < n; at += MAX_RUNS) {
        int k = n - at < MAX_RUNS ? n - at : MAX_RUNS;
        for (int i = 0; i < k; i++)
            runs[i] = (kl_mm_run){outs[at + i], 0, B};
        kl_matmul_runs(w, runs, k, cols, x, ldx, B, scratch);
    }
}

/* Computes y (see kernels.h). Does nothing for an unsupported dtype, B < 1 or cols that are
 * not a multiple of the dtype's block size. Leaves scratch holding the quantized activations. */
void kl_matmul(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols,
               const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch)
{
    kl_mm_out o = {wt, W, false, rows, y, ldy};
    kl_matmul_multi(w, &o, 1, cols, x, ldx, B, scratch);
}

size_t kl_pack_bytes(kl_dtype wt, int64_t rows, int64_t cols)
{
    if (!kl_matmul_supports(wt) || rows < 1 || !kl_dtype_row_bytes(wt, cols)) return 0;
    const kl_type_ops *ops = &kl_isa_get()->types[wt];
    return ops->pack_bytes && ops->gemm_packed ? ops->pack_bytes(wt, rows, cols) : 0;
}

const char *kl_pack_id(void)
{
    static const char *ids[] = {"scalar/" KL_STR(KL_PACK_VERSION), "avx2/" KL_STR(KL_PACK_VERSION),
                                "avx512/" KL_STR(KL_PACK_VERSION)};
    const char *isa = kl_isa_get()->name;
    /* VBMI shares plain AVX-512's id: their packed forms are the same but for the IQ1 types,
     * IQ2_XS, IQ2_S and the IQ3 types, which only VBMI packs, and a pack cache's layout hash
     * holds every weight's packed size (model/pack.c), so neither maps the other's. AVX2's own
     * forms (kl_isa_avx2_own) need their id: its Q3_K layout has the shared one's size. */
    if (!strcmp(isa, "avx512vbmi")) isa = "avx512";
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (!strncmp(ids[i], isa, strlen(isa)) && ids[i][strlen(isa)] == '/') return ids[i];
    return "unknown";
}

typedef struct {
    const kl_type_ops *ops;
    kl_dtype type;
    const void *W;
    int64_t rows, cols;
    void *dst;
} pack_job;

static void pack_part(void *ctx, int ith, int nth)
{
    pack_job *j = ctx;
    int64_t panels = (j->rows + ROW_ALIGN - 1) / ROW_ALIGN;
    j->ops->pack(j->type, j->W, j->rows, j->cols, panels * ith / nth, panels * (ith + 1) / nth,
                 j->dst);
}

void kl_pack(kl_workers *w, kl_dtype wt, const void *W, int64_t rows, int64_t cols, void *dst)
{
    if (!kl_pack_bytes(wt, rows, cols)) return;
    pack_job j = {&kl_isa_get()->types[wt], wt, W, rows, cols, dst};
    kl_workers_run(w, pack_part, &j);
}

void kl_matmul_packed(kl_workers *w, kl_dtype wt, const void *P, int64_t rows, int64_t cols,
                      const float *x, int64_t ldx, int B, float *y, int64_t ldy, void *scratch)
{
    kl_mm_out o = {wt, P, true, rows, y, ldy};
    kl_matmul_multi(w, &o, 1, cols, x, ldx, B, scratch);
}
