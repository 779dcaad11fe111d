/* kl_matmul_runs (a mixture's experts, each over the activation rows routed to it): every
 * run's output is the same bits as kl_matmul of its rows alone by its own weights, for every
 * weight type the matmul supports (plain and packed, one thread and two, in every ISA), with
 * awkward sizes: runs of 0, 1 and many rows, an expert with rows not a multiple of 16, more
 * runs than one pass of the workers holds. */
#include <stdlib.h>
#include <string.h>

#include "kernels/impl.h"
#include "t.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

enum { N_RUNS = 84, MAX_B = 4 }; /* 67 used: more than one pass holds (64) */

static void check(kl_dtype t, const kl_isa *isa, int rows, int cols, bool packed)
{
    kl_isa_set(isa);
    size_t rb = kl_dtype_row_bytes(t, cols), wb = rb * (size_t)rows;
    size_t pb = packed ? kl_pack_bytes(t, rows, cols) : 0;
    if (packed && !pb) {
        kl_isa_set(NULL);
        return;
    }
    uint8_t *W = malloc(wb * N_RUNS), *P = pb ? malloc(pb * N_RUNS) : NULL;
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int r = 0; r < rows * N_RUNS; r++) {
        for (int c = 0; c < cols; c++)
            row[c] = frand();
        T_ASSERT(kl_quantize_row(t, row, W + rb * (size_t)r, cols));
    }
    kl_workers *w = kl_workers_create(2);
    for (int e = 0; e < N_RUNS && P; e++)
        kl_pack(w, t, W + wb * (size_t)e, rows, cols, P + pb * (size_t)e);
    kl_mm_run runs[N_RUNS];
    int total = 0;
    for (int e = 0; e < N_RUNS; e++) {
        int B = (e * 7 + 3) % (MAX_B + 1); /* 0 to 4 rows, some experts unused */
        runs[e].row0 = total, runs[e].B = B;
        total += B;
    }
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)total);
    for (int i = 0; i < cols * total; i++)
        x[i] = frand();
    float *y = calloc((size_t)total * (size_t)rows, sizeof(float));
    float *y1 = malloc(sizeof(float) * (size_t)rows * MAX_B);
    size_t scratch_bytes = kl_matmul_scratch(t, total, cols) + 64;
    void *scratch = malloc(scratch_bytes), *scratch1 = malloc(scratch_bytes);
    for (int e = 0; e < N_RUNS; e++) {
        const void *We =
            P ? (const void *)(P + pb * (size_t)e) : (const void *)(W + wb * (size_t)e);
        runs[e].out = (kl_mm_out){t, We, P != NULL, rows, y + (size_t)runs[e].row0 * rows, rows};
    }
    for (int threads = 0; threads < 2; threads++) {
        memset(y, 0xFF, sizeof(float) * (size_t)total * (size_t)rows);
        kl_matmul_runs(threads ? w : NULL, runs, N_RUNS, cols, x, cols, total, scratch);
        for (int e = 0; e < N_RUNS; e++) {
            if (!runs[e].B) continue;
            const float *xe = x + (size_t)runs[e].row0 * cols;
            if (P)
                kl_matmul_packed(NULL, t, runs[e].out.W, rows, cols, xe, cols, runs[e].B, y1, rows,
                                 scratch1);
            else
                kl_matmul(NULL, t, runs[e].out.W, rows, cols, xe, cols, runs[e].B, y1, rows,
                          scratch1);
            if (memcmp(y1, runs[e].out.y, sizeof(float) * (size_t)rows * runs[e].B)) {
                fprintf(stderr, "# %s %s%s rows %d cols %d run %d (B %d, %d threads)\n", isa->name,
                        kl_dtype_get(t)->name, P ? " packed" : "", rows, cols, e, runs[e].B,
                        threads + 1);
                T_ASSERT(0);
            }
        }
    }
    kl_workers_destroy(w);
    kl_isa_set(NULL);
    free(W), free(P), free(row), free(x), free(y), free(y1), free(scratch), free(scratch1);
}

TEST(kernels_matmul_runs_match_matmul_of_each_run)
{
    int checked = 0;
    for (const char *const *n = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *n; n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa) continue;
        for (int t = 0; t < KL_DTYPE_COUNT; t++) {
            if (!isa->types[t].gemm || !kl_quantize_supports((kl_dtype)t)) continue;
            int blk = (int)kl_dtype_get(t)->block_elems;
            int cols = blk == 1 ? 67 : blk == 32 ? 96 : 256;
            for (int packed = 0; packed < 2; packed++) {
                check((kl_dtype)t, isa, 40, cols, packed);
                check((kl_dtype)t, isa, 3, cols, packed);
            }
            checked++;
        }
    }
    T_ASSERT(checked >= 8);
}
