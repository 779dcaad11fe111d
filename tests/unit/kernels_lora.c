/* LoRA's kernels (kernels/lora.c) against the scalar reference on awkward sizes: shrink
 * within float rounding, expand bit for bit; every row the same bits alone or among others
 * (batch invariance); the threaded SGMV the same bits as one thread. */
#include <math.h>
#include <stdlib.h>

#include "base/workers.h"
#include "kernels/impl.h"
#include "t.h"

static void fill_h(uint16_t *h, size_t n, float k)
{
    for (size_t i = 0; i < n; i++)
        h[i] = kl_fp32_to_fp16(sinf((float)i * k) * 0.5f);
}

TEST(kernels_lora_shrink_expand_match_reference)
{
    const kl_isa *isa = kl_isa_find("avx512");
    if (!isa) t_skip("no AVX-512 on this CPU");
    static const int ranks[] = {1, 3, 8, 16, 17, 33};
    static const int widths[] = {1, 15, 16, 17, 64, 100, 257};
    enum { ROWS = 9, LD = 300 };
    static uint16_t A[33 * LD], Bt[33 * LD];
    static float x[ROWS * LD], y1[ROWS * LD], y2[ROWS * LD], t1[ROWS * 33], t2[ROWS * 33], one[33];
    fill_h(A, sizeof A / 2, 0.37f);
    fill_h(Bt, sizeof Bt / 2, 0.11f);
    for (int i = 0; i < ROWS * LD; i++)
        x[i] = cosf((float)i * 0.23f);
    const int32_t idx[ROWS] = {8, 0, 3, 5, 1, 7, 2, 6, 4}; /* gathered, out of order */
    for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++)
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
            int rank = ranks[ri], w = widths[wi];
            for (int n = 1; n <= ROWS; n++) {
                isa->lora.shrink(A, rank, w, x, LD, idx, n, t1);
                kl_ref_lora_shrink(A, rank, w, x, LD, idx, n, t2);
                for (int i = 0; i < n * rank; i++)
                    T_NEAR(t1[i], t2[i], 1e-4 * (1 + fabs((double)t2[i])) * sqrt((double)w));
                for (int i = 0; i < n; i++) { /* each row alone: the same bits */
                    isa->lora.shrink(A, rank, w, x, LD, idx + i, 1, one);
                    T_MEMEQ(one, t1 + (size_t)i * rank, sizeof(float) * (size_t)rank);
                }
                for (int i = 0; i < ROWS * LD; i++)
                    y1[i] = y2[i] = (float)(i % 7) * 0.25f;
                /* a column range that starts and ends off the 16-lane grid */
                int o0 = w > 3 ? 3 : 0, o1 = w;
                isa->lora.expand(Bt, rank, w, o0, o1, t2, n, 0.75f, y1, LD, idx);
                kl_ref_lora_expand(Bt, rank, w, o0, o1, t2, n, 0.75f, y2, LD, idx);
                T_MEMEQ(y1, y2, sizeof y1); /* and nothing outside the rows and columns */
            }
        }
}

/* The update through the workers: segments of three adapters on two projections of shared
 * input; the same bits with 1 and 2 workers and as the reference kernels computed by hand. */
TEST(kernels_lora_sgmv_threads_and_segments)
{
    enum { N = 12, COLS = 80, R0 = 48, R1 = 33, RANK = 8 };
    static uint16_t A[3][RANK * COLS], B0[3][RANK * R0], B1[3][RANK * R1];
    static float x[N * COLS], ya[N * R0], yb[N * R1], yc[N * R0], yd[N * R1], t[6 * N * RANK],
        tr[N * RANK];
    for (int a = 0; a < 3; a++) {
        fill_h(A[a], RANK * COLS, 0.1f + 0.05f * (float)a);
        fill_h(B0[a], RANK * R0, 0.2f + 0.03f * (float)a);
        fill_h(B1[a], RANK * R1, 0.3f + 0.07f * (float)a);
    }
    for (int i = 0; i < N * COLS; i++)
        x[i] = sinf((float)i * 0.41f);
    /* rows by adapter: 0 -> {1, 4, 9}, 1 -> {0, 2, 3, 7, 8, 11}, 2 -> {5}; 6 and 10 base */
    static const int32_t rows0[] = {1, 4, 9}, rows1[] = {0, 2, 3, 7, 8, 11}, rows2[] = {5};
    const int32_t *rows[3] = {rows0, rows1, rows2};
    const int nr[3] = {3, 6, 1};
    kl_lora_seg segs[6];
    for (int a = 0; a < 3; a++) {
        segs[2 * a] = (kl_lora_seg){A[a],
                                    B0[a],
                                    RANK,
                                    COLS,
                                    R0,
                                    0.5f,
                                    x,
                                    COLS,
                                    ya,
                                    R0,
                                    rows[a],
                                    nr[a],
                                    t + (size_t)(2 * a) * N * RANK};
        segs[2 * a + 1] = (kl_lora_seg){A[a],
                                        B1[a],
                                        RANK,
                                        COLS,
                                        R1,
                                        2.0f,
                                        x,
                                        COLS,
                                        yb,
                                        R1,
                                        rows[a],
                                        nr[a],
                                        t + (size_t)(2 * a + 1) * N * RANK};
    }
    for (int nw = 1; nw <= 2; nw++) {
        for (int i = 0; i < N * R0; i++)
            ya[i] = yc[i] = (float)i * 0.01f;
        for (int i = 0; i < N * R1; i++)
            yb[i] = yd[i] = (float)i * -0.02f;
        kl_workers *w = kl_workers_create(nw);
        kl_lora_apply(w, &(kl_lora_batch){segs, 6});
        kl_workers_destroy(w);
        for (int a = 0; a < 3; a++) {
            kl_lora_shrink(A[a], RANK, COLS, x, COLS, rows[a], nr[a], tr);
            kl_lora_expand(B0[a], RANK, R0, 0, R0, tr, nr[a], 0.5f, yc, R0, rows[a]);
            kl_lora_expand(B1[a], RANK, R1, 0, R1, tr, nr[a], 2.0f, yd, R1, rows[a]);
        }
        T_MEMEQ(ya, yc, sizeof ya);
        T_MEMEQ(yb, yd, sizeof yb);
        for (int c = 0; c < R0; c++) /* base rows untouched */
            T_ASSERT(ya[6 * R0 + c] == (float)(6 * R0 + c) * 0.01f);
    }
}
