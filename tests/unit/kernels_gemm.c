/* Every SIMD matmul, on plain and on packed weights, against the scalar reference on random
 * inputs of awkward sizes (rows, columns and batch not multiples of the tile, odd block
 * counts), and batch invariance: a row's result is bit-identical whether it is computed alone
 * or among others. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "t.h"
#include "t_blocks.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* Relative error allowed against the reference: integer dots are exact per block, so only
 * float accumulation order differs; F16/F32 products are the same, sums reordered. */
static double tol_of(kl_dtype t)
{
    (void)t;
    return 1e-5;
}

static bool any_bytes; /* random blocks even for a type Kiln writes: every byte value */

static void check(kl_dtype t, const kl_isa *isa, int rows, int cols, int B)
{
    size_t rb = kl_dtype_row_bytes(t, cols);
    uint8_t *W;
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (kl_quantize_supports(t) && !any_bytes) {
        W = malloc(rb * (size_t)rows);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++)
                row[c] = frand() * (1.f + (float)(r % 3));
            T_ASSERT(kl_quantize_row(t, row, W + rb * (size_t)r, cols));
        }
    } else { /* a type Kiln cannot write: random valid blocks */
        W = t_random_blocks(t, rb * (size_t)rows / kl_dtype_get(t)->block_bytes, rng);
    }
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)B);
    for (int i = 0; i < cols * B; i++)
        x[i] = frand();
    float *y_ref = malloc(sizeof(float) * (size_t)rows * (size_t)B);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)B);
    float *y1 = malloc(sizeof(float) * (size_t)rows);
    void *scratch = malloc(kl_matmul_scratch(t, B, cols) + 64);
    kl_isa_set(kl_isa_find("scalar"));
    kl_matmul(NULL, t, W, rows, cols, x, cols, B, y_ref, rows, scratch);
    kl_isa_set(isa);
    kl_workers *w = kl_workers_create(2);
    kl_matmul(w, t, W, rows, cols, x, cols, B, y, rows, scratch);
    double scale = 0;
    for (int i = 0; i < rows * B; i++)
        scale = fmax(scale, fabs((double)y_ref[i]));
    for (int i = 0; i < rows * B; i++)
        if (fabs((double)(y[i] - y_ref[i])) > tol_of(t) * (scale + 1)) {
            fprintf(stderr, "# %s %s rows %d cols %d B %d: y[%d] = %g, reference %g\n", isa->name,
                    kl_dtype_get(t)->name, rows, cols, B, i, (double)y[i], (double)y_ref[i]);
            T_ASSERT(0);
        }
    /* batch invariance: each activation row alone gives the same bits */
    for (int b = 0; b < B; b++) {
        kl_matmul(NULL, t, W, rows, cols, x + (size_t)b * cols, cols, 1, y1, rows, scratch);
        T_MEMEQ(y1, y + (size_t)b * rows, sizeof(float) * (size_t)rows);
    }
    /* the packed form (panels of 16 rows), where the ISA has one: same checks */
    size_t pb = kl_pack_bytes(t, rows, cols);
    if (pb) {
        uint8_t *P = malloc(pb);
        kl_pack(w, t, W, rows, cols, P);
        memset(y, 0xFF, sizeof(float) * (size_t)rows * (size_t)B);
        kl_matmul_packed(w, t, P, rows, cols, x, cols, B, y, rows, scratch);
        for (int i = 0; i < rows * B; i++)
            if (!(fabs((double)(y[i] - y_ref[i])) <= tol_of(t) * (scale + 1))) {
                fprintf(stderr, "# packed %s %s rows %d cols %d B %d: y[%d] = %g, reference %g\n",
                        isa->name, kl_dtype_get(t)->name, rows, cols, B, i, (double)y[i],
                        (double)y_ref[i]);
                T_ASSERT(0);
            }
        for (int b = 0; b < B; b++) {
            kl_matmul_packed(NULL, t, P, rows, cols, x + (size_t)b * cols, cols, 1, y1, rows,
                             scratch);
            T_MEMEQ(y1, y + (size_t)b * rows, sizeof(float) * (size_t)rows);
        }
        free(P);
    }
    kl_workers_destroy(w);
    kl_isa_set(NULL);
    free(W), free(row), free(x), free(y_ref), free(y), free(y1), free(scratch);
}

static void check_all(kl_dtype t)
{
    /* rows: 150 gives each of two workers five panels (packed float tiles of 4, 2 and 1 panels) */
    /* batches: 6 is a tile of 4 and one of 2 (the AVX2 K-quants' generation tile at 1 and 2) */
    static const int rows[] = {1, 17, 33, 70, 150}, bs[] = {1, 3, 6, 9, 19};
    /* columns: odd block counts, and an even one (IQ2_XXS's VBMI tile takes blocks in pairs) */
    static const int qcols[] = {32, 96, 160, 2080, 64}, fcols[] = {13, 101, 160, 2083, 64};
    static const int kcols[] = {256, 768, 1280, 2304, 1536};
    int blk = (int)kl_dtype_get(t)->block_elems;
    const int *cols = blk == 1 ? fcols : blk == 32 ? qcols : kcols; /* float: any width */
    int isas = 0;
    const kl_type_ops *seen[4] = {&kl_isa_find("scalar")->types[t]};
    for (const char *const *n = (const char *const[]){"avx2", "avx512", "avx512vbmi", NULL}; *n;
         n++) {
        const kl_isa *isa = kl_isa_find(*n);
        /* avx512vbmi has avx512's kernels but for a few types; avx512 has AVX2's plain kernels
         * for some types with packed ones of its own */
        bool again = false;
        for (int i = 0; i <= isas; i++)
            again = again || (isa && isa->types[t].gemm == seen[i]->gemm &&
                              isa->types[t].gemm_packed == seen[i]->gemm_packed);
        if (!isa || again) continue;
        seen[++isas] = &isa->types[t];
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
                for (int k = 0; k < 5; k++)
                    check(t, isa, rows[i], cols[j], bs[k]);
    }
    if (!isas) t_skip("no SIMD matmul for this type on this CPU");
}

TEST(kernels_gemm_q8_0_simd_matches_reference)
{
    check_all(KL_Q8_0);
}
TEST(kernels_gemm_q4_0_simd_matches_reference)
{
    check_all(KL_Q4_0);
}
TEST(kernels_gemm_f16_simd_matches_reference)
{
    check_all(KL_F16);
}
TEST(kernels_gemm_f32_simd_matches_reference)
{
    check_all(KL_F32);
}
TEST(kernels_gemm_bf16_simd_matches_reference)
{
    check_all(KL_BF16);
}
TEST(kernels_gemm_q4_k_simd_matches_reference)
{
    check_all(KL_Q4_K);
}
TEST(kernels_gemm_q5_k_simd_matches_reference)
{
    check_all(KL_Q5_K);
}
TEST(kernels_gemm_q6_k_simd_matches_reference)
{
    check_all(KL_Q6_K);
}
TEST(kernels_gemm_q2_k_simd_matches_reference)
{
    check_all(KL_Q2_K);
}
TEST(kernels_gemm_q3_k_simd_matches_reference)
{
    check_all(KL_Q3_K);
}
TEST(kernels_gemm_q4_1_simd_matches_reference)
{
    check_all(KL_Q4_1);
}
TEST(kernels_gemm_q5_0_simd_matches_reference)
{
    check_all(KL_Q5_0);
}
TEST(kernels_gemm_q5_1_simd_matches_reference)
{
    check_all(KL_Q5_1);
}
TEST(kernels_gemm_iq4_nl_simd_matches_reference)
{
    check_all(KL_IQ4_NL);
}
TEST(kernels_gemm_iq4_xs_simd_matches_reference)
{
    check_all(KL_IQ4_XS);
}
/* Packed IQ4_XS (the AVX2 and AVX-512 tables) and IQ3_XXS, IQ3_S (AVX2's) take the reference's
 * integer sums and its float steps in its order, (float)isum * (d * d_a) added per super-block:
 * the reference's bits, at every tile (AVX2: one and two activation rows, four, three; AVX-512:
 * 1, 2, 3, 6, 8 + 1). The VBMI table's packed IQ3 (kernels/pack_iq3.c) takes its plain plane
 * dot's sums and float steps instead (16 lanes a block, not the reference's order): that
 * table's plain bits. The weights are quantized rows (IQ4_XS; the IQ3 types Kiln cannot write),
 * then random blocks: every scale's bits, IQ4_XS's sh's high ones included (the rows' scales
 * cluster), every grid index; rows that end mid-panel, batches 1 to 9 and 19. Returns the
 * tables that had a packed form of t. */
static int packed_matches_reference_bits(kl_dtype t)
{
    static const int rows[] = {1, 17, 33, 150}, cols[] = {256, 2304},
                     bs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 19};
    int tried = 0;
    for (const char *const *n = (const char *const[]){"avx2", "avx512", "avx512vbmi", NULL}; *n;
         n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa) continue;
        kl_isa_set(isa);
        bool packed = kl_pack_bytes(t, 16, 256) > 0;
        kl_isa_set(NULL);
        if (!packed) continue;
        tried++;
        bool planes = !strcmp(*n, "avx512vbmi") && (t == KL_IQ3_XXS || t == KL_IQ3_S);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 10; k++) {
                    int R = rows[i], C = cols[j % 2], B = bs[k];
                    size_t rb = kl_dtype_row_bytes(t, C);
                    uint8_t *W = t_random_blocks(t, rb * (size_t)R / kl_dtype_get(t)->block_bytes,
                                                 (uint64_t)(i + k + 16 * j));
                    float *x = malloc(sizeof(float) * (size_t)C * (size_t)B);
                    if (j < 2 && kl_quantize_supports(t))
                        for (int r = 0; r < R; r++) {
                            for (int c = 0; c < C; c++)
                                x[c] = frand() * (1.f + (float)(r % 3));
                            T_ASSERT(kl_quantize_row(t, x, W + rb * (size_t)r, C));
                        }
                    for (int e = 0; e < C * B; e++)
                        x[e] = frand();
                    float *y_ref = malloc(sizeof(float) * (size_t)R * (size_t)B),
                          *y = malloc(sizeof(float) * (size_t)R * (size_t)B);
                    void *scratch = malloc(kl_matmul_scratch(t, B, C) + 64);
                    kl_isa_set(planes ? isa : kl_isa_find("scalar"));
                    kl_matmul(NULL, t, W, R, C, x, C, B, y_ref, R, scratch);
                    kl_isa_set(isa);
                    uint8_t *P = malloc(kl_pack_bytes(t, R, C));
                    kl_workers *w = kl_workers_create(2);
                    kl_pack(w, t, W, R, C, P);
                    kl_matmul_packed(w, t, P, R, C, x, C, B, y, R, scratch);
                    kl_workers_destroy(w);
                    kl_isa_set(NULL);
                    T_MEMEQ(y, y_ref, sizeof(float) * (size_t)R * (size_t)B);
                    free(W), free(x), free(y_ref), free(y), free(scratch), free(P);
                }
    }
    return tried;
}
TEST(kernels_gemm_iq4_xs_packed_matches_reference_bits)
{
    if (!packed_matches_reference_bits(KL_IQ4_XS)) t_skip("no packed IQ4_XS on this CPU");
}
TEST(kernels_gemm_iq3_packed_matches_reference_bits)
{
    int tried = packed_matches_reference_bits(KL_IQ3_XXS);
    if (!(tried + packed_matches_reference_bits(KL_IQ3_S))) t_skip("no packed IQ3 on this CPU");
}
/* The VBMI packed IQ3 records (kernels/pack_iq3.c) hold the file's blocks exactly: random
 * blocks (every index, sign field, scale) packed as one row and read back. */
TEST(kernels_pack_iq3_records_hold_the_blocks)
{
    static const kl_dtype types[] = {KL_IQ3_XXS, KL_IQ3_S};
    for (int i = 0; i < 2; i++) {
        kl_dtype t = types[i];
        int nblk = 37;
        size_t bb = kl_dtype_get(t)->block_bytes,
               rec = t == KL_IQ3_S ? KL_IQ3P_S_REC : KL_IQ3P_XXS_REC;
        uint8_t *W = t_random_blocks(t, (size_t)nblk, 7u + (uint64_t)i);
        uint8_t *P = malloc(kl_pack_iq3_bytes(t, 1, (int64_t)nblk * KL_QKK)), *b = malloc(bb);
        kl_pack_iq3(t, W, 1, (int64_t)nblk * KL_QKK, 0, 1, P);
        for (int j = 0; j < nblk; j++) {
            kl_unpack_iq3_block(t, P + (size_t)j * rec, b);
            T_MEMEQ(b, W + (size_t)j * bb, bb);
        }
        free(W), free(P), free(b);
    }
}
TEST(kernels_gemm_iq3_xxs_simd_matches_reference)
{
    check_all(KL_IQ3_XXS);
}
TEST(kernels_gemm_iq3_s_simd_matches_reference)
{
    check_all(KL_IQ3_S);
}
TEST(kernels_gemm_tq1_0_simd_matches_reference)
{
    check_all(KL_TQ1_0);
}
TEST(kernels_gemm_tq2_0_simd_matches_reference)
{
    check_all(KL_TQ2_0);
}
/* The ternary kernels on blocks no quantizer writes (TQ1_0 bytes of any value, where the trits
 * come out of byte arithmetic; TQ2_0 fields of 3): still the reference's integers. */
TEST(kernels_gemm_tq_any_bytes_match_reference)
{
    any_bytes = true;
    check_all(KL_TQ1_0);
    check_all(KL_TQ2_0);
    any_bytes = false;
}
TEST(kernels_gemm_iq2_xxs_simd_matches_reference)
{
    check_all(KL_IQ2_XXS);
}
TEST(kernels_gemm_iq2_xs_simd_matches_reference)
{
    check_all(KL_IQ2_XS);
}
TEST(kernels_gemm_iq2_s_simd_matches_reference)
{
    check_all(KL_IQ2_S);
}
TEST(kernels_gemm_iq1_s_simd_matches_reference)
{
    check_all(KL_IQ1_S);
}
TEST(kernels_gemm_iq1_m_simd_matches_reference)
{
    check_all(KL_IQ1_M);
}

/* kl_matmul_multi: several weights over the same activations in one pass give the same bits
 * as one kl_matmul per weight, for packed and plain weights, sharing one quantization (Q8_0
 * and Q4_0 both take Q8_0 activations) or not (F32 and Q6_K mixed in). */
TEST(kernels_matmul_multi_matches_separate_calls)
{
    enum { COLS = 256, B = 5, N = 4 };
    static const kl_dtype types[N] = {KL_Q8_0, KL_Q4_0, KL_F32, KL_Q6_K};
    static const int rows[N] = {70, 150, 33, 17};
    kl_workers *w = kl_workers_create(2);
    float *x = malloc(sizeof(float) * COLS * B);
    for (int i = 0; i < COLS * B; i++)
        x[i] = frand();
    size_t scratch_bytes = 0;
    for (int i = 0; i < N; i++) {
        size_t sb = kl_matmul_scratch(types[i], B, COLS);
        if (sb > scratch_bytes) scratch_bytes = sb;
    }
    void *scratch = malloc(scratch_bytes + 64);
    uint8_t *W[N], *P[N];
    float *y[N], *y1[N];
    kl_mm_out outs[N];
    float *row = malloc(sizeof(float) * COLS);
    for (int i = 0; i < N; i++) {
        size_t rb = kl_dtype_row_bytes(types[i], COLS);
        W[i] = malloc(rb * (size_t)rows[i]);
        for (int r = 0; r < rows[i]; r++) {
            for (int c = 0; c < COLS; c++)
                row[c] = frand();
            T_ASSERT(kl_quantize_row(types[i], row, W[i] + rb * (size_t)r, COLS));
        }
        size_t pb = kl_pack_bytes(types[i], rows[i], COLS);
        P[i] = pb ? malloc(pb) : NULL;
        if (P[i]) kl_pack(w, types[i], W[i], rows[i], COLS, P[i]);
        y[i] = malloc(sizeof(float) * (size_t)rows[i] * B);
        y1[i] = malloc(sizeof(float) * (size_t)rows[i] * B);
        outs[i] = (kl_mm_out){types[i], P[i] ? P[i] : W[i], P[i] != NULL, rows[i], y[i], rows[i]};
    }
    for (int n = 2; n <= N; n++) { /* the first two share Q8_0 activations; then mixed */
        for (int i = 0; i < n; i++)
            memset(y[i], 0xFF, sizeof(float) * (size_t)rows[i] * B);
        kl_matmul_multi(w, outs, n, COLS, x, COLS, B, scratch);
        for (int i = 0; i < n; i++) {
            if (P[i])
                kl_matmul_packed(w, types[i], P[i], rows[i], COLS, x, COLS, B, y1[i], rows[i],
                                 scratch);
            else
                kl_matmul(w, types[i], W[i], rows[i], COLS, x, COLS, B, y1[i], rows[i], scratch);
            T_MEMEQ(y[i], y1[i], sizeof(float) * (size_t)rows[i] * B);
        }
    }
    for (int i = 0; i < N; i++)
        free(W[i]), free(P[i]), free(y[i]), free(y1[i]);
    free(x), free(row), free(scratch);
    kl_workers_destroy(w);
}

/* Fills x[0, n) for the activation tests: random blocks of 32 at scales 2^-10..2^1 (so
 * some Q8_K blocks mix small and large), then, where they fit, a zero block (of 32 and of
 * 256), a block of one value, halves that round to even, subnormals, blocks whose Q8_0 scale
 * overflows fp16 or is an fp16 subnormal, and the Q8_K ties: the
 * largest magnitude first negative then positive (and the reverse, in another vector), and
 * at the last element. */
static void act_fill(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = frand() * (float)(1 << (i / 32 % 12)) * 1e-3f;
    if (n >= 4 * 256) {
        memset(x, 0, 256 * sizeof *x); /* a whole Q8_K block of zeros */
        for (int i = 256; i < 288; i++)
            x[i] = -3.25f;
        for (int i = 288; i < 320; i++)
            x[i] = (float)(i - 288) * 127.0f / 62.0f - 63.5f; /* k + 0.5 */
        for (int i = 320; i < 352; i++)
            x[i] = (float)(i - 319) * 1e-40f;
        x[512 + 37] = -9.0f, x[512 + 200] = 9.0f; /* first of the tie negative */
        for (int i = 352; i < 384; i++)
            x[i] = (float)(i - 368) * 1e6f; /* a scale past fp16's largest: infinity */
        for (int i = 384; i < 416; i++)
            x[i] = (float)(i - 399) * 2e-5f;       /* a scale among fp16's subnormals */
        x[768 + 13] = 7.5f, x[768 + 14] = -7.5f;   /* positive, same vector */
        x[768 + 100] = -7.5f, x[768 + 255] = 7.5f; /* later ones lose */
    }
    if (n >= 6 * 256) x[5 * 256 + 255] = -50.0f;    /* the largest last */
    if (n >= 96) memset(x + 64, 0, 32 * sizeof *x); /* a zero block of 32 */
}

/* The scalar quantizer of an activation layout: the reference table's for the dtypes' own
 * layouts, the plane layouts' (kernel-private, in no scalar row) by name. */
static kl_row_fn ref_quant_of(kl_dtype act, kl_row_fn table)
{
    if (act == KL_ACT_Q8_K_T4) return kl_ref_quant_act_q8_k_t4;
    if (act == KL_ACT_Q8_K_T8) return kl_ref_quant_act_q8_k_t8;
    if (act == KL_ACT_Q8_K_T8P) return kl_ref_quant_act_q8_k_t8p;
    return table;
}

/* The plane layouts are the Q8_K row with each block's qs permuted as impl.h writes it: T4 byte
 * 64 j + e is element 4 e + j, T8 byte 32 j + 4 s + e element 32 s + 8 e + j; T8P byte
 * 64 j + 32 h + 4 s + e of a pair of blocks element 32 s + 8 e + j of block h of the pair, an odd
 * last block as T8; d, bsums and the padding are Q8_K's bytes (T4: d and bsums, then c, -64
 * bsums). Rows of 1, 2, 3, 6 and 11 blocks of act_fill's values (zero blocks, ties, a last
 * largest). */
TEST(kernels_quant_act_planes_permute_q8_k)
{
    static const int ns[] = {256, 512, 768, 1536, 2816};
    float *x = malloc(sizeof(float) * 2816);
    for (int ni = 0; ni < 5; ni++) {
        int n = ns[ni], nb = n / 256;
        act_fill(x, n);
        size_t rb = kl_act_row_bytes(KL_Q8_K, n), rb4 = kl_act_row_bytes(KL_ACT_Q8_K_T4, n);
        T_EQ(rb4, (n + 4 * (n / 256) + 6 * (n / 16) + 63) / 64 * 64);
        T_EQ(kl_act_row_bytes(KL_ACT_Q8_K_T8, n), rb);
        T_EQ(kl_act_row_bytes(KL_ACT_Q8_K_T8P, n), rb);
        int8_t *q = malloc(rb), *t4 = malloc(rb4), *t8 = malloc(rb), *t8p = malloc(rb);
        memset(q, 0x5A, rb), memset(t4, 0x5A, rb4), memset(t8, 0x5A, rb), memset(t8p, 0x5A, rb);
        kl_ref_quant_act_q8_k(x, q, n);
        kl_ref_quant_act_q8_k_t4(x, t4, n);
        kl_ref_quant_act_q8_k_t8(x, t8, n);
        kl_ref_quant_act_q8_k_t8p(x, t8p, n);
        for (int b = 0; b < nb; b++) {
            const int8_t *a = q + 256 * b;
            for (int j = 0; j < 4; j++)
                for (int e = 0; e < 64; e++)
                    T_EQ(t4[256 * b + 64 * j + e], a[4 * e + j]);
            for (int j = 0; j < 8; j++)
                for (int s = 0; s < 8; s++)
                    for (int e = 0; e < 4; e++) {
                        T_EQ(t8[256 * b + 32 * j + 4 * s + e], a[32 * s + 8 * e + j]);
                        int at = b == nb - 1 && nb % 2
                                     ? 256 * b + 32 * j + 4 * s + e
                                     : 512 * (b / 2) + 64 * j + 32 * (b % 2) + 4 * s + e;
                        T_EQ(t8p[at], a[32 * s + 8 * e + j]);
                    }
        }
        size_t bsend = (size_t)n + 4 * (size_t)(n / 256) + 2 * (size_t)(n / 16);
        T_MEMEQ(t4 + n, q + n, bsend - (size_t)n);
        for (int i = 0; i < n / 16; i++) /* T4's c: -64 bsums */
            T_EQ(kl_act_q8_k_t4_c(t4, n)[i], -64 * kl_act_q8_k_bsums(q, n)[i]);
        T_MEMEQ(t8 + n, q + n, rb - (size_t)n);
        T_MEMEQ(t8p + n, q + n, rb - (size_t)n);
        free(q), free(t4), free(t8), free(t8p);
    }
    free(x);
}

/* The activation quantization of every ISA gives the reference's bytes exactly (batch
 * invariance and the int8 results rest on it), for every type with quantized activations
 * (Q8_0, Q8_1 and Q8_K layouts, and the Q8_K plane layouts of the kernels that take them),
 * row lengths of 1, 3, 9, 40 blocks of 32 and 1, 3, 6, 11 of 256: any byte that differs fails,
 * the row's padding included (left alone by both). */
TEST(kernels_quant_act_simd_matches_reference_bits)
{
    static const int n32[] = {32, 96, 288, 1280}, nk[] = {256, 768, 1536, 2816};
    const kl_isa *sc = kl_isa_find("scalar");
    float *x = malloc(sizeof(float) * 2816);
    int compared = 0;
    for (int t = 0; t < KL_DTYPE_COUNT; t++) {
        const kl_type_ops *ref = &sc->types[t];
        if (!ref->quant_act) continue;
        const int *ns = ref->act == KL_Q8_K ? nk : n32;
        for (int ni = 0; ni < 4; ni++) {
            int n = ns[ni];
            act_fill(x, n);
            size_t rb0 = kl_act_row_bytes(ref->act, n);
            /* room for the largest layout (T4: Q8_K's bytes, then c) */
            uint8_t *a = malloc(2 * rb0), *b = malloc(2 * rb0);
            for (const char *const *nm =
                     (const char *const[]){"avx2", "avx512", "avx512vbmi", NULL};
                 *nm; nm++) {
                const kl_isa *isa = kl_isa_find(*nm);
                kl_row_fn want = isa ? ref_quant_of(isa->types[t].act, ref->quant_act) : NULL;
                if (!isa || isa->types[t].quant_act == want) continue;
                /* a plane layout holds Q8_K's bytes (T4 and c after them); any other must be
                 * the reference's */
                if (want == ref->quant_act)
                    T_EQ(isa->types[t].act, ref->act);
                else
                    T_EQ(ref->act, KL_Q8_K);
                size_t rb = kl_act_row_bytes(isa->types[t].act, n);
                T_ASSERT(rb == rb0 || (isa->types[t].act == KL_ACT_Q8_K_T4 && rb <= 2 * rb0));
                memset(a, 0x5A, rb);
                want(x, a, n);
                compared++;
                memset(b, 0x5A, rb);
                isa->types[t].quant_act(x, b, n);
                if (memcmp(a, b, rb))
                    fprintf(stderr, "# %s %s n=%d: bytes differ\n", *nm, kl_dtype_get(t)->name, n);
                T_MEMEQ(a, b, rb);
            }
            free(a), free(b);
        }
    }
    if (!compared) t_skip("no SIMD activation quantization on this CPU");
    free(x);
}

/* model/pack.c packs a large matrix in slices of rows and relies on this: rows [r, r + k)
 * (r a multiple of 16) packed as a matrix of their own are the whole's bytes from panel r / 16,
 * for every type with a packed form, the last slice ending mid-panel. */
TEST(kernels_pack_slices_match_whole)
{
    static const kl_dtype types[] = {KL_F32,  KL_F16,  KL_Q8_0, KL_Q4_0, KL_Q4_1, KL_Q5_0,  KL_Q5_1,
                                     KL_Q2_K, KL_Q3_K, KL_Q4_K, KL_Q5_K, KL_Q6_K, KL_IQ4_XS};
    int rows = 75, tried = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        kl_dtype t = types[i];
        int cols = kl_dtype_get(t)->block_elems == KL_QKK ? 512 : 96;
        size_t whole = kl_pack_bytes(t, rows, cols), panel = kl_pack_bytes(t, 16, cols);
        if (!whole) continue;
        tried++;
        size_t rb = kl_dtype_row_bytes(t, cols);
        uint8_t *W = malloc(rb * (size_t)rows), *P = malloc(whole), *S = malloc(whole);
        float *row = malloc(sizeof(float) * (size_t)cols);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++)
                row[c] = frand();
            T_ASSERT(kl_quantize_row(t, row, W + rb * (size_t)r, cols));
        }
        kl_pack(NULL, t, W, rows, cols, P);
        memset(S, 0xA5, whole);
        for (int r = 0; r < rows; r += 32) {
            int k = rows - r < 32 ? rows - r : 32;
            kl_pack(NULL, t, W + rb * (size_t)r, k, cols, S + (size_t)(r / 16) * panel);
        }
        T_MEMEQ(S, P, whole);
        free(W), free(P), free(S), free(row);
    }
    if (!tried) t_skip("no packed matmul on this CPU");
}
