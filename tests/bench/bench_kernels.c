/* tests/bench/bench_kernels.c: the matmul kernels alone, per weight dtype and ISA.
 *   B=1:       GB/s of weights streamed (generation is bound by weight bytes per token);
 *   B=64, 512: GFLOP/s (2 * rows * cols * B per call; prompt processing is compute-bound),
 * for 2048x2048 and 8192x2048 weights, 1 and 2 threads, every ISA this CPU runs, with the
 * fraction of the machine's limits measured in the same run (bench_limits.c: the read
 * bandwidth right before each dtype's rows, at 1 and 2 threads; the FP32, BF16 and INT8 dot
 * peaks at the start) and the ratios against scalar and avx2 measured in the same run, and
 * "packed": the same weights in the packed form the model runs (kl_pack, panels of 16 rows), run by
 * the default table (KILN_SIMD's, e.g. avx2), with its ratio to the plain avx512 kernel. At B=1
 * successive calls use different copies of the weights (256 MB in all), so the bytes come from
 * memory, not from the 32 MB L3. Each figure is the best of >= 2 timed repetitions (>= 0.1 s in
 * all).
 *
 *   bench-kernels [--quick] [--batch B[,B...]] [dtype...]
 *       (default: f32 f16 bf16 q8_0 q4_0 q4_k q6_k; batches 1,64,512; --batch picks others, e.g.
 *       the 2-3 rows of speculative verification or one prompt tile size) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "bench_limits.h"
#include "kernels/impl.h"
#include "t_blocks.h"

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float urand(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((double)(rs >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static double min_time = 0.1;
#define COLD_BYTES ((size_t)256 << 20) /* B=1 cycles through this many bytes of weights */

static void matmul(kl_workers *w, kl_dtype t, bool packed, const uint8_t *W, int rows, int cols,
                   const float *x, int B, float *y, void *scratch)
{
    if (packed)
        kl_matmul_packed(w, t, W, rows, cols, x, cols, B, y, rows, scratch);
    else
        kl_matmul(w, t, W, rows, cols, x, cols, B, y, rows, scratch);
}

/* Returns seconds per call of the matmul (best of the repetitions). Call k uses copy
 * k % copies of the weights (copies of `stride` bytes), so that B=1 streams from DRAM.
 * packed: W holds weights in the ISA's packed form (kl_pack), as the model runs them. */
static double time_matmul(kl_workers *w, kl_dtype t, bool packed, const uint8_t *W, size_t stride,
                          int copies, int rows, int cols, const float *x, int B, float *y,
                          void *scratch)
{
    matmul(w, t, packed, W, rows, cols, x, B, y, scratch); /* warm up */
    double best = 1e30, total = 0;
    int reps = 0;
    while (total < min_time || reps < 2) {
        const uint8_t *Wk = W + stride * (size_t)((reps + 1) % copies);
        double t0 = kl_now_s();
        matmul(w, t, packed, Wk, rows, cols, x, B, y, scratch);
        double dt = kl_now_s() - t0;
        if (dt < best) best = dt;
        total += dt;
        if (++reps >= 2 && total > 4 * min_time) break;
    }
    return best;
}

static bool int8_dot(kl_dtype t)
{
    return t != KL_F32 && t != KL_F16 && t != KL_BF16;
}

int main(int argc, char **argv)
{
    kl_dtype types[KL_DTYPE_COUNT];
    int nt = 0;
    bool quick = false;
    int batches[8] = {1, 64, 512}, nbatch = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            nbatch = 0;
            for (char *p = argv[++i]; *p && nbatch < 8;) {
                long v = strtol(p, &p, 10);
                if (v < 1 || v > 512) {
                    fprintf(stderr, "bench-kernels: --batch: 1..512 each\n");
                    return 1;
                }
                batches[nbatch++] = (int)v;
                if (*p == ',') p++;
            }
            continue;
        }
        if (!strcmp(argv[i], "--quick")) {
            quick = true;
            min_time = 0.03;
            continue;
        }
        int t = kl_dtype_from_name(argv[i]);
        if (t < 0 || !kl_matmul_supports((kl_dtype)t)) {
            fprintf(stderr, "bench-kernels: %s: not a matmul dtype\n", argv[i]);
            return 1;
        }
        if (nt == KL_DTYPE_COUNT) {
            fprintf(stderr, "bench-kernels: more than %d dtypes\n", KL_DTYPE_COUNT);
            return 1;
        }
        types[nt++] = (kl_dtype)t;
    }
    if (!nt) {
        static const kl_dtype def[] = {KL_F32, KL_F16, KL_BF16, KL_Q8_0, KL_Q4_0, KL_Q4_K, KL_Q6_K};
        memcpy(types, def, sizeof def);
        nt = (int)(sizeof def / sizeof *def);
    }
    static const int shapes[2][2] = {{2048, 2048}, {8192, 2048}};
    /* "packed": the best ISA over weights in its packed form (what the model runs) */
    const char *isa_names[4] = {"scalar", "avx2", "avx512", "packed"};
    int maxB = 512, maxrows = 8192, cols = 2048;
    float *x = malloc(sizeof(float) * (size_t)maxB * cols);
    float *y = malloc(sizeof(float) * (size_t)maxB * maxrows);
    for (int i = 0; i < maxB * cols; i++)
        x[i] = urand();
    kl_workers *pool[3] = {NULL, NULL, kl_workers_create(2)};
    printf("# kernel matmul: weights rows x cols, B activation rows; best of >= 2 calls\n");
    bench_limits lim[3] = {{0}, bench_limits_measure(pool[1]), bench_limits_measure(pool[2])};
    for (int nth = 1; nth <= 2; nth++)
        printf("# limits, %d thread%s: read %.1f GB/s, FP32 FMA %.0f GFLOP/s, BF16 dot %.0f "
               "GFLOP/s, INT8 dot %.0f GOP/s\n",
               nth, nth > 1 ? "s" : "", lim[nth].read_gbs, lim[nth].fp32_gflops,
               lim[nth].bf16_gflops, lim[nth].int8_gops);
    for (int ti = 0; ti < nt; ti++) {
        kl_dtype t = types[ti];
        size_t rb = kl_dtype_row_bytes(t, cols);
        size_t wbytes = rb * (size_t)maxrows;
        if (wbytes < COLD_BYTES) wbytes = COLD_BYTES;
        uint8_t *W = malloc(wbytes);
        float *row = malloc(sizeof(float) * (size_t)cols);
        bool quantized = true;
        for (int r = 0; r < 64 && quantized; r++) {
            for (int c = 0; c < cols; c++)
                row[c] = urand();
            quantized = kl_quantize_row(t, row, W + rb * (size_t)r, cols);
        }
        if (!quantized) { /* IQ3_S, IQ2, IQ1: no quantizer in Kiln; random blocks, sane scales */
            uint8_t *blocks = t_random_blocks(t, 64 * rb / kl_dtype_get(t)->block_bytes, 1);
            memcpy(W, blocks, 64 * rb);
            free(blocks);
        }
        for (size_t off = 64 * rb; off < wbytes; off += 64 * rb)
            memcpy(W + off, W, wbytes - off < 64 * rb ? wbytes - off : 64 * rb);
        /* the packed form of each shape's copies, as many as fit the same bytes */
        uint8_t *P[2] = {NULL, NULL};
        int pcopies[2] = {0, 0};
        for (int si = 0; si < 2; si++) {
            size_t pb = kl_pack_bytes(t, shapes[si][0], cols), mb = rb * (size_t)shapes[si][0];
            if (!pb) continue;
            pcopies[si] = (int)(wbytes / mb);
            P[si] = malloc(pb * (size_t)pcopies[si]);
            for (int k = 0; k < pcopies[si]; k++)
                kl_pack(pool[2], t, W + mb * (size_t)k, shapes[si][0], cols,
                        P[si] + pb * (size_t)k);
        }
        void *scratch = malloc(kl_matmul_scratch(t, maxB, cols) + 64);
        for (int nth = 1; nth <= 2; nth++) /* the bandwidth of this minute */
            lim[nth].read_gbs = bench_read_gbs(pool[nth]);
        printf("# %s: read %.1f GB/s at 1 thread, %.1f at 2\n", kl_dtype_get(t)->name,
               lim[1].read_gbs, lim[2].read_gbs);
        for (int si = 0; si < 2; si++) {
            int rows = shapes[si][0];
            for (int nth = 1; nth <= 2; nth++) {
                for (int bi = 0; bi < nbatch; bi++) {
                    int B = batches[bi];
                    if (quick && B >= 512 && si == 1) continue;
                    double fig[4] = {-1, -1, -1, -1};
                    for (int ii = 0; ii < 4; ii++) {
                        bool packed = ii == 3;
                        if (packed) {
                            if (!P[si]) continue;
                            kl_isa_set(NULL); /* the default table (KILN_SIMD's), not the last
                                                 column's */
                            size_t pb = kl_pack_bytes(t, rows, cols);
                            double s =
                                time_matmul(pool[nth], t, true, P[si], pb, B == 1 ? pcopies[si] : 1,
                                            rows, cols, x, B, y, scratch);
                            fig[3] = B == 1 ? (double)rb * rows / s / 1e9
                                            : 2.0 * rows * cols * B / s / 1e9;
                            continue;
                        }
                        /* avx512: the table Kiln runs, avx512vbmi's where the CPU has VBMI
                         * and GFNI (its own IQ3 and IQ2 kernels; plain AVX-512's gathers for
                         * those are not what runs here) */
                        const kl_isa *isa = ii == 2 && kl_isa_find("avx512vbmi")
                                                ? kl_isa_find("avx512vbmi")
                                                : kl_isa_find(isa_names[ii]);
                        if (!isa) continue;
                        const kl_isa *below = ii > 0 ? kl_isa_find(isa_names[ii - 1]) : NULL;
                        if (below && isa->types[t].gemm == below->types[t].gemm)
                            continue; /* this ISA has no kernel of its own for t */
                        /* scalar: only where a call takes well under a second */
                        if (ii == 0 && (B >= 512 || (B >= 64 && rows > 2048))) continue;
                        kl_isa_set(isa);
                        size_t mbytes = rb * (size_t)rows;
                        int copies = B == 1 ? (int)(wbytes / mbytes) : 1;
                        double s = time_matmul(pool[nth], t, false, W, mbytes, copies, rows, cols,
                                               x, B, y, scratch);
                        fig[ii] =
                            B == 1 ? (double)rb * rows / s / 1e9 : 2.0 * rows * cols * B / s / 1e9;
                    }
                    kl_isa_set(NULL);
                    double best = fig[3] > 0   ? fig[3]
                                  : fig[2] > 0 ? fig[2]
                                  : fig[1] > 0 ? fig[1]
                                               : fig[0];
                    double limit = B == 1        ? lim[nth].read_gbs
                                   : int8_dot(t) ? lim[nth].int8_gops
                                   : t == KL_BF16 && lim[nth].bf16_gflops > 0
                                       ? lim[nth].bf16_gflops
                                       : lim[nth].fp32_gflops;
                    printf("%-5s %5dx%d t%d B=%-3d %8.1f %s (%4.1f%% of %.0f)",
                           kl_dtype_get(t)->name, rows, cols, nth, B, best,
                           B == 1 ? "GB/s   " : "GFLOP/s", 100 * best / limit, limit);
                    for (int ii = 0; ii < 4; ii++)
                        if (fig[ii] > 0) printf("  %s %.1f", isa_names[ii], fig[ii]);
                    if (fig[3] > 0 && fig[2] > 0) printf("  packed/avx512 %.2fx", fig[3] / fig[2]);
                    if (fig[2] > 0 && fig[0] > 0) printf("  avx512/scalar %.1fx", fig[2] / fig[0]);
                    if (fig[2] > 0 && fig[1] > 0) printf("  avx512/avx2 %.2fx", fig[2] / fig[1]);
                    if (fig[1] > 0 && fig[0] > 0) printf("  avx2/scalar %.1fx", fig[1] / fig[0]);
                    printf("\n");
                    fflush(stdout);
                }
            }
        }
        free(W), free(row), free(scratch), free(P[0]), free(P[1]);
    }
    kl_workers_destroy(pool[2]);
    free(x), free(y);
    return 0;
}
