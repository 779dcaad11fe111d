/* The scalar references against straightforward formulas: quantize -> dequantize error
 * bounds per dtype, the reference matmul against a double-precision dot of the dequantized
 * weights, F16/BF16 rounding (nearest even, infinities, NaN), and the float kernels
 * (rmsnorm, rope normal and NeoX, softmax, swiglu) of every ISA this CPU runs.
 *
 * Tolerances (x uniform in [-s, s] per row):
 *   round trip, max error per block, as a fraction of the block's max |x| (amax):
 *     F32 0; F16 2^-11 relative to |x|; BF16 2^-8 relative to |x|;
 *     Q8_0 0.5/127 + 2^-10 (half a step, plus the fp16 scale's rounding over 127 steps);
 *     Q4_0 1/8 + 2^-7 (the side opposite the extremum clamps at 7 of 8 steps);
 *     plus, for tiny blocks, 127 (Q8_0) or 8 (Q4_0) times 2^-25: the fp16 scale is subnormal.
 *   round trip, rms error over a row as a fraction of the row's rms:
 *     Q4_K 0.075, Q5_K 0.037, Q6_K 0.019 (measured 0.061, 0.030, 0.0155: a step is
 *     range/15, /31, /63 of a 32 or 16 group); 2.5x that for a row with a 50x outlier;
 *     Q4_1 0.075, Q5_0 and Q5_1 0.037 (range/15, /31 of a 32 block), Q2_K 0.34, Q3_K 0.16
 *     (range/3, /7 of a 16 group, scales in 4 and 6 bits); IQ4_NL, IQ4_XS 0.08 (measured
 *     0.064-0.072: 16 levels per 32, denser near 0 than uniform data wants); TQ1_0, TQ2_0
 *     0.36 (three levels: the best ternary fit of uniform data leaves 1/3 of its rms).
 *   reference matmul vs double dot of dequantized weights and the dequantized activation
 *   row it was given: 1e-5 of sum |w x| (float accumulation only); vs the original F32
 *   activations: the activation quantization bound sum_blocks sum|w| * amax_a * (0.5/127 +
 *   2^-10) on top; for the Q8_1 types (Q4_1, Q5_1) also the min term's fp16-rounded
 *   activation sum, sum_blocks max|w| sum|a| 2^-10. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/impl.h"
#include "t.h"
#include "t_blocks.h"

/* The checks here compute in double on purpose: float operands widen. */
#pragma GCC diagnostic ignored "-Wdouble-promotion"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float urand(void) /* uniform in [-1, 1) */
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((double)(rs >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static const kl_dtype quant_types[] = {KL_F32,  KL_F16,    KL_BF16,   KL_Q8_0,  KL_Q4_0, KL_Q4_1,
                                       KL_Q5_0, KL_Q5_1,   KL_Q2_K,   KL_Q3_K,  KL_Q4_K, KL_Q5_K,
                                       KL_Q6_K, KL_IQ4_NL, KL_IQ4_XS, KL_TQ1_0, KL_TQ2_0};

static double rms_tol(kl_dtype t)
{
    switch (t) {
    case KL_Q4_1:
        return 0.075;
    case KL_Q5_0:
    case KL_Q5_1:
        return 0.037;
    case KL_Q2_K:
        return 0.34;
    case KL_Q3_K:
        return 0.16;
    case KL_Q4_K:
        return 0.075;
    case KL_Q5_K:
        return 0.037;
    case KL_Q6_K:
        return 0.019;
    case KL_IQ4_NL:
    case KL_IQ4_XS:
        return 0.08;
    case KL_TQ1_0:
    case KL_TQ2_0:
        return 0.36;
    default:
        return 0.0;
    }
}

/* Max error bound for element x of a block with max |x| amax, or -1 when rms is checked. */
static double elem_tol(kl_dtype t, double x, double amax)
{
    switch (t) {
    case KL_F32:
        return 0;
    case KL_F16:
        return fabs(x) * 0x1p-11 + 0x1p-25;
    case KL_BF16:
        return fabs(x) * 0x1p-8;
    case KL_Q8_0:
        return amax * (0.5 / 127 + 0x1p-10) + 127 * 0x1p-25; /* subnormal d */
    case KL_Q4_0:
        return amax * (1.0 / 8 + 0x1p-7) + 8 * 0x1p-25;
    default:
        return -1;
    }
}

TEST(kernels_ref_quantize_roundtrip_error_bounds)
{
    enum { N = 256 * 7 };
    float x[N], y[N];
    static uint8_t buf[N * 4];
    for (size_t ti = 0; ti < sizeof quant_types / sizeof *quant_types; ti++) {
        kl_dtype t = quant_types[ti];
        for (int trial = 0; trial < 20; trial++) {
            float s = trial % 4 == 0 ? 1e-3f : trial % 4 == 1 ? 1.f : trial % 4 == 2 ? 30.f : 0.2f;
            for (int i = 0; i < N; i++)
                x[i] = urand() * s;
            if (trial == 5) memset(x, 0, sizeof x); /* all zero: d = 0 */
            if (trial == 6)                         /* a block with one outlier */
                x[40] = 50.f * s;
            T_ASSERT(kl_quantize_row(t, x, buf, N));
            kl_dequantize_row(t, buf, y, N);
            if (rms_tol(t) > 0) {
                double e2 = 0, x2 = 0;
                for (int i = 0; i < N; i++) {
                    e2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                    x2 += (double)x[i] * x[i];
                }
                if (x2 == 0) {
                    T_ASSERT(e2 == 0);
                } else if (sqrt(e2 / x2) > rms_tol(t) * (trial == 6 ? 2.5 : 1)) {
                    fprintf(stderr, "# %s trial %d rms rel err %g\n", kl_dtype_get(t)->name, trial,
                            sqrt(e2 / x2));
                    T_ASSERT(0);
                }
                continue;
            }
            for (int blk = 0; blk < N / 32; blk++) {
                double amax = 0;
                for (int i = 0; i < 32; i++)
                    amax = fmax(amax, fabs((double)x[blk * 32 + i]));
                for (int i = blk * 32; i < blk * 32 + 32; i++)
                    if (fabs((double)y[i] - x[i]) > elem_tol(t, x[i], amax)) {
                        fprintf(stderr, "# %s trial %d x[%d] = %g -> %g\n", kl_dtype_get(t)->name,
                                trial, i, (double)x[i], (double)y[i]);
                        T_ASSERT(0);
                    }
            }
        }
    }
}

TEST(kernels_ref_quantize_exact_grids)
{
    /* values on the quantization grid come back exactly */
    float x[64], y[64];
    uint8_t buf[256];
    for (int i = 0; i < 64; i++)
        x[i] = (float)((i * 37) % 255 - 127); /* hits -127 and 127 */
    x[0] = 127.f, x[32] = -127.f;
    T_ASSERT(kl_quantize_row(KL_Q8_0, x, buf, 64));
    kl_dequantize_row(KL_Q8_0, buf, y, 64);
    T_MEMEQ(x, y, sizeof x);
    for (int i = 0; i < 64; i++)
        x[i] = (float)((i * 5) % 16 - 8);
    x[0] = -8.f, x[32] = -8.f;
    T_ASSERT(kl_quantize_row(KL_Q4_0, x, buf, 64));
    kl_dequantize_row(KL_Q4_0, buf, y, 64);
    T_MEMEQ(x, y, sizeof x);
    T_ASSERT(!kl_quantize_row(KL_Q8_K, x, buf, 256)); /* not a weight type we write */
}

/* Dequantized value i of an activation row in the scalar ISA's layout for weight type t. */
static double act_value(kl_dtype act, const uint8_t *a, const float *x, int64_t n, int64_t i)
{
    if (act == KL_Q8_0 || act == KL_Q8_1)
        return (double)((const int8_t *)a)[i] * kl_act_q8_0_d(a, n)[i / KL_QK];
    if (act == KL_Q8_K) return (double)((const int8_t *)a)[i] * kl_act_q8_k_d(a, n)[i / KL_QKK];
    return x[i];
}

static void check_ref_gemm(kl_dtype t, int rows, int cols, int B)
{
    const kl_isa *sc = kl_isa_find("scalar");
    const kl_type_ops *ops = &sc->types[t];
    size_t rb = kl_dtype_row_bytes(t, cols);
    T_ASSERT(rb > 0);
    bool writable = kl_quantize_supports(t);
    uint8_t *W = writable
                     ? malloc(rb * (size_t)rows)
                     : t_random_blocks(t, rb * (size_t)rows / kl_dtype_get(t)->block_bytes, rs);
    float *wd = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)B);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)B);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols && writable; c++)
            wd[(size_t)r * cols + c] = urand() * (1.f + (float)(r % 5));
        if (writable) T_ASSERT(kl_quantize_row(t, wd + (size_t)r * cols, W + rb * (size_t)r, cols));
        T_ASSERT(kl_dequantize_row(t, W + rb * (size_t)r, wd + (size_t)r * cols, cols));
    }
    for (int i = 0; i < cols * B; i++)
        x[i] = urand() * (i % 11 == 0 ? 4.f : 1.f);
    size_t ab = kl_act_row_bytes(ops->act, cols);
    uint8_t *act = ab ? malloc(ab * (size_t)B) : NULL;
    for (int b = 0; b < B && ab; b++)
        ops->quant_act(x + (size_t)b * cols, act + ab * (size_t)b, cols);
    kl_gemm g = {.W = W,
                 .w_stride = rb,
                 .cols = cols,
                 .act = ab ? act : (const uint8_t *)x,
                 .a_stride = ab ? ab : sizeof(float) * (size_t)cols,
                 .B = B,
                 .y = y,
                 .ldy = rows};
    ops->gemm(&g, 0, rows);
    int ablk = ops->act == KL_Q8_K ? KL_QKK : KL_QK;
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * cols;
        const uint8_t *ar = ab ? act + ab * (size_t)b : NULL;
        for (int r = 0; r < rows; r++) {
            const float *w = wd + (size_t)r * cols;
            double dq = 0, dx = 0, mag = 0, qbound = 0, mbound = 0;
            for (int c = 0; c < cols; c++) {
                dq += (double)w[c] * act_value(ops->act, ar, xb, cols, c);
                dx += (double)w[c] * xb[c];
                mag += fabs((double)w[c] * xb[c]);
            }
            if (ab)
                for (int c0 = 0; c0 < cols; c0 += ablk) {
                    double sw = 0, amax = 0;
                    for (int c = c0; c < c0 + ablk; c++) {
                        sw += fabs((double)w[c]);
                        amax = fmax(amax, fabs((double)xb[c]));
                    }
                    qbound += sw * amax * (0.5 / 127 + 0x1p-10);
                    if (ops->act == KL_Q8_1) { /* m_w * s_a, s_a = d_a sum(q_a) in fp16 */
                        double wmax = 0, sa = 0;
                        for (int c = c0; c < c0 + ablk; c++) {
                            wmax = fmax(wmax, fabs((double)w[c]));
                            sa += fabs(act_value(ops->act, ar, xb, cols, c));
                        }
                        mbound += wmax * sa * 0x1p-10;
                    }
                }
            double got = y[(size_t)b * rows + r];
            if (fabs(got - dq) > 1e-5 * mag + mbound + 1e-30 ||
                fabs(got - dx) > 1e-5 * mag + qbound) {
                fprintf(stderr, "# %s rows %d cols %d B %d: y[%d][%d] = %.9g, want %.9g (%.9g)\n",
                        kl_dtype_get(t)->name, rows, cols, B, b, r, got, dq, dx);
                T_ASSERT(0);
            }
        }
    }
    free(W), free(wd), free(x), free(y), free(act);
}

/* Types Kiln reads but does not write (random valid blocks, tests/t_blocks.h). */
static const kl_dtype read_types[] = {KL_IQ3_XXS, KL_IQ3_S, KL_IQ2_XXS, KL_IQ2_XS,
                                      KL_IQ2_S,   KL_IQ1_S, KL_IQ1_M};

TEST(kernels_ref_gemm_matches_double_dot)
{
    enum {
        NQ = sizeof quant_types / sizeof *quant_types,
        NR = sizeof read_types / sizeof *read_types
    };
    static const int rows[] = {1, 17, 33}, bs[] = {1, 3, 7};
    for (size_t ti = 0; ti < NQ + NR; ti++) {
        kl_dtype t = ti < NQ ? quant_types[ti] : read_types[ti - NQ];
        int blk = (int)kl_dtype_get(t)->block_elems;
        int blk_cols = blk == 256 ? 256 * 3 : blk == 32 ? 32 * 5 : 40; /* odd block counts */
        int cols[] = {blk_cols, blk == 1 ? 13 : blk};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < 3; k++)
                    check_ref_gemm(t, rows[i], cols[j], bs[k]);
    }
}

TEST(kernels_ref_fp16_rounding)
{
    T_EQ(kl_fp32_to_fp16(1.f), 0x3c00);
    T_EQ(kl_fp32_to_fp16(-2.f), 0xc000);
    T_EQ(kl_fp32_to_fp16(65504.f), 0x7bff);
    T_EQ(kl_fp32_to_fp16(65519.f), 0x7bff);
    T_EQ(kl_fp32_to_fp16(65520.f), 0x7c00);  /* tie between max and 2^16: even is inf */
    T_EQ(kl_fp32_to_fp16(0x1p-24f), 0x0001); /* smallest subnormal */
    T_EQ(kl_fp32_to_fp16(0x1p-25f), 0x0000); /* tie: to even (zero) */
    T_EQ(kl_fp32_to_fp16(0x1.8p-25f), 0x0001);
    T_EQ(kl_fp32_to_fp16(0x3p-25f), 0x0002); /* 1.5 ulp: tie, to even 2 */
    T_EQ(kl_fp32_to_fp16(1.f + 0x1p-11f), 0x3c00);
    T_EQ(kl_fp32_to_fp16(1.f + 0x3p-11f), 0x3c02);
    T_EQ(kl_fp32_to_fp16(0x1.ffcp-15f), 0x0400); /* subnormal rounding up into the normals */
    T_EQ(kl_fp32_to_fp16(INFINITY), 0x7c00);
    T_EQ(kl_fp32_to_fp16(-INFINITY), 0xfc00);
    T_EQ(kl_fp32_to_fp16(-0.f), 0x8000);
    T_ASSERT(isnan(kl_fp16_to_fp32(kl_fp32_to_fp16(NAN))));
    T_ASSERT(isinf(kl_fp16_to_fp32(0x7c00)) && kl_fp16_to_fp32(0xfc00) < 0);
    T_NEAR(kl_fp16_to_fp32(0x0001), 0x1p-24, 0);
    for (uint32_t h = 0; h < 65536; h++) { /* every half survives a round trip */
        float f = kl_fp16_to_fp32((uint16_t)h);
        if (!isnan(f)) T_EQ(kl_fp32_to_fp16(f), h);
    }
    /* random floats: the result is a nearest half, ties to even */
    for (int i = 0; i < 200000; i++) {
        float f = urand() * (i % 3 == 0 ? 70000.f : i % 3 == 1 ? 1.f : 1e-4f);
        uint16_t h = kl_fp32_to_fp16(f);
        double e = fabs((double)kl_fp16_to_fp32(h) - f);
        if (isinf(kl_fp16_to_fp32(h))) {
            T_ASSERT(fabs((double)f) >= 65520.0);
            continue;
        }
        for (int d = -1; d <= 1; d += 2) {
            uint16_t n = (uint16_t)(h + d);
            if ((n & 0x7fff) >= 0x7c00 || (n & 0x7fff) == 0x7fff) continue;
            if ((h & 0x7fff) == 0 && d < 0) continue;
            double en = fabs((double)kl_fp16_to_fp32(n) - f);
            T_ASSERT(e < en || (e == en && !(h & 1)));
        }
    }
}

TEST(kernels_ref_bf16_rounding)
{
    T_EQ(kl_fp32_to_bf16(1.f), 0x3f80);
    T_EQ(kl_fp32_to_bf16(1.f + 0x1p-8f), 0x3f80); /* tie to even */
    T_EQ(kl_fp32_to_bf16(1.f + 0x3p-8f), 0x3f82); /* tie to even, up */
    T_EQ(kl_fp32_to_bf16(1.f + 0x1.2p-8f), 0x3f81);
    T_EQ(kl_fp32_to_bf16(INFINITY), 0x7f80);
    T_EQ(kl_fp32_to_bf16(-INFINITY), 0xff80);
    T_EQ(kl_fp32_to_bf16(0x1.fffffep127f), 0x7f80); /* max float rounds to infinity */
    T_ASSERT(isnan(kl_bf16_to_fp32(kl_fp32_to_bf16(NAN))));
    T_ASSERT(isnan(kl_bf16_to_fp32(kl_fp32_to_bf16(-NAN))));
    float qnan_low; /* a NaN whose payload is only in the low bits stays a NaN */
    uint32_t bits = 0x7f800001u;
    memcpy(&qnan_low, &bits, 4);
    T_ASSERT(isnan(kl_bf16_to_fp32(kl_fp32_to_bf16(qnan_low))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kl_bf16_to_fp32((uint16_t)h);
        if (!isnan(f)) T_EQ(kl_fp32_to_bf16(f), h);
    }
}

/* The ISAs this CPU runs (scalar first). */
static int isas(const kl_isa *out[3])
{
    int n = 0;
    for (const char *const *nm = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *nm; nm++)
        if (kl_isa_find(*nm)) out[n++] = kl_isa_find(*nm);
    return n;
}

static const int vec_sizes[] = {1, 3, 7, 15, 16, 17, 31, 33, 64, 100, 257, 1000, 4099};

TEST(kernels_ref_rmsnorm_softmax_swiglu_formulas)
{
    enum { MAXN = 4099 };
    float *x = malloc(sizeof(float) * MAXN), *w = malloc(sizeof(float) * MAXN);
    float *u = malloc(sizeof(float) * MAXN), *o = malloc(sizeof(float) * (MAXN + 1));
    const kl_isa *is[3];
    int ni = isas(is);
    for (int k = 0; k < ni; k++)
        for (size_t si = 0; si < sizeof vec_sizes / sizeof *vec_sizes; si++) {
            int n = vec_sizes[si];
            for (int i = 0; i < n; i++)
                x[i] = urand() * 3.f, w[i] = urand(), u[i] = urand() * 2.f;
            /* rmsnorm */
            double ss = 0;
            for (int i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
            double sc = 1.0 / sqrt(ss / n + 1e-5);
            o[n] = 12345.f;
            is[k]->vec.rmsnorm(o, x, w, n, 1e-5f);
            for (int i = 0; i < n; i++)
                T_NEAR(o[i], x[i] * sc * w[i], 1e-5 * (1 + fabs(x[i] * sc)));
            T_NEAR(o[n], 12345.f, 0); /* nothing past n written */
            /* swiglu */
            is[k]->vec.swiglu(o, x, u, n);
            for (int i = 0; i < n; i++) {
                double g = x[i], want = g / (1 + exp(-g)) * u[i];
                T_NEAR(o[i], want, 1e-5 * (1 + fabs(want)));
            }
            T_NEAR(o[n], 12345.f, 0);
            /* softmax, with large values (no overflow) and a -inf (masked) entry */
            for (int i = 0; i < n; i++)
                o[i] = x[i] * 30.f + 500.f;
            if (n > 2) o[1] = -INFINITY;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < n; i++)
                mx = fmax(mx, o[i]);
            for (int i = 0; i < n; i++)
                sum += exp((double)o[i] - mx);
            double want[MAXN];
            for (int i = 0; i < n; i++)
                want[i] = exp((double)o[i] - mx) / sum;
            is[k]->vec.softmax(o, n);
            double tot = 0;
            for (int i = 0; i < n; i++) {
                T_NEAR(o[i], want[i], 1e-6 + 1e-5 * want[i]);
                tot += o[i];
            }
            if (n > 2) T_NEAR(o[1], 0, 0);
            T_NEAR(tot, 1.0, 1e-5);
            T_NEAR(o[n], 12345.f, 0);
        }
    free(x), free(w), free(u), free(o);
}

/* softmax_part in two steps over the halves of a row, the running max carried (as attention's
 * online softmax uses it): the terms of the second half and the rescaled total are the
 * formula's, the max is the row's. */
TEST(kernels_ref_softmax_part_online_steps)
{
    enum { MAXN = 4099 };
    float *x = malloc(sizeof(float) * MAXN), *o = malloc(sizeof(float) * (MAXN + 1));
    const kl_isa *is[3];
    int ni = isas(is);
    for (int k = 0; k < ni; k++)
        for (size_t si = 0; si < sizeof vec_sizes / sizeof *vec_sizes; si++) {
            int n = vec_sizes[si], h = n / 2;
            for (int i = 0; i < n; i++)
                x[i] = urand() * 90.f + 300.f, o[i] = x[i];
            o[n] = 12345.f;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < n; i++)
                mx = fmax(mx, x[i]);
            for (int i = 0; i < n; i++)
                sum += exp((double)x[i] - mx);
            float m = -INFINITY;
            double s1 = is[k]->vec.softmax_part(o, h, &m);
            float m1 = m;
            double s2 = is[k]->vec.softmax_part(o + h, n - h, &m);
            T_NEAR(m, mx, 0);
            double tot = (h ? s1 * exp((double)m1 - m) : 0) + s2;
            T_NEAR(tot, sum, 1e-5 * sum);
            for (int i = 0; i < h; i++)
                T_NEAR(o[i], exp((double)x[i] - m1), 1e-6);
            for (int i = h; i < n; i++)
                T_NEAR(o[i], exp((double)x[i] - mx), 1e-6);
            T_NEAR(o[n], 12345.f, 0);
        }
    free(x), free(o);
}

TEST(kernels_ref_dot_axpy_f32_f16_formulas)
{
    enum { MAXN = 4099 };
    float *a = malloc(sizeof(float) * MAXN), *b = malloc(sizeof(float) * MAXN);
    float *y = malloc(sizeof(float) * (MAXN + 1)), *y0 = malloc(sizeof(float) * (MAXN + 1));
    uint16_t *h = malloc(sizeof(uint16_t) * MAXN);
    const kl_isa *is[3];
    int ni = isas(is);
    for (int k = 0; k < ni; k++)
        for (size_t si = 0; si < sizeof vec_sizes / sizeof *vec_sizes; si++) {
            int n = vec_sizes[si];
            double want = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                a[i] = urand(), b[i] = urand();
                want += (double)a[i] * b[i], mag += fabs((double)a[i] * b[i]);
            }
            T_NEAR(is[k]->vec.dot(a, b, n), want, 1e-6 * (mag + 1));
            for (int i = 0; i <= n; i++)
                y[i] = y0[i] = urand();
            is[k]->vec.axpy(y, -0.75f, a, n);
            for (int i = 0; i < n; i++)
                T_NEAR(y[i], y0[i] - 0.75 * a[i], 1e-6);
            T_NEAR(y[n], y0[n], 0);
            /* F16 operands (the KV cache): exact halves, so the same formulas */
            double wh = 0, mh = 0;
            for (int i = 0; i < n; i++) {
                h[i] = kl_fp32_to_fp16(a[i]);
                wh += (double)kl_fp16_to_fp32(h[i]) * b[i];
                mh += fabs((double)kl_fp16_to_fp32(h[i]) * b[i]);
            }
            T_NEAR(is[k]->vec.dot_f16(h, b, n), wh, 1e-6 * (mh + 1));
            for (int i = 0; i <= n; i++)
                y[i] = y0[i];
            is[k]->vec.axpy_f16(y, 1.25f, h, n);
            for (int i = 0; i < n; i++)
                T_NEAR(y[i], y0[i] + 1.25 * kl_fp16_to_fp32(h[i]), 1e-6);
            T_NEAR(y[n], y0[n], 0);
        }
    free(a), free(b), free(y), free(y0), free(h);
}

/* The rotation of one head at pos by angles pos * freqs[i] (divisors 1 / freqs[i]). */
static void rope_at(float *h, int n_rot, int pos, const float *freqs, bool neox)
{
    float div[128], cs[256];
    for (int i = 0; i < n_rot / 2; i++)
        div[i] = 1.0f / freqs[i];
    kl_rope_cfg c = {n_rot, 1.0f, div, 1.0f, 0.0f, 1.0f, {0, 0}};
    kl_rope_angles(&c, pos, cs);
    kl_rope(h, n_rot, cs, neox);
}

static void rope_check(int head_dim, int n_rot, int pos, bool neox)
{
    float h[256], h0[256], cs[256];
    for (int i = 0; i < head_dim; i++)
        h[i] = h0[i] = urand();
    kl_rope_cfg c = {n_rot, powf(10000.f, -2.f / (float)n_rot), NULL, 1.0f, 0.0f, 1.0f, {0, 0}};
    kl_rope_angles(&c, pos, cs);
    kl_rope(h, n_rot, cs, neox);
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        double th = (double)pos * pow(10000.0, -2.0 * i / n_rot);
        double want0 = h0[i0] * cos(th) - h0[i1] * sin(th);
        double want1 = h0[i0] * sin(th) + h0[i1] * cos(th);
        /* theta is formed in float (pos * scale^i, the power multiplied up), as llama.cpp
         * does: its rounding is ~(i + 1) * pos ulp */
        double tol = 1e-5 + fabs(th) * (i + 2) * 1.2e-7;
        T_NEAR(h[i0], want0, tol);
        T_NEAR(h[i1], want1, tol);
    }
    for (int i = n_rot; i < head_dim; i++)
        T_NEAR(h[i], h0[i], 0); /* untouched */
}

TEST(kernels_ref_rope_normal_and_neox)
{
    static const int pos[] = {0, 1, 7, 100, 4095};
    for (int p = 0; p < 5; p++)
        for (int neox = 0; neox < 2; neox++) {
            rope_check(64, 64, pos[p], neox);
            rope_check(128, 64, pos[p], neox); /* partial rotation */
            rope_check(6, 6, pos[p], neox);
        }
    /* pos 0 is the identity; a rotation keeps each pair's norm; factors scale the angles */
    float h[8] = {1, 2, 3, 4, 5, 6, 7, 8}, f[4] = {1, 0.5f, 0.25f, 0.125f};
    rope_at(h, 8, 0, f, false);
    for (int i = 0; i < 8; i++)
        T_NEAR(h[i], i + 1, 0);
    rope_at(h, 8, 3, f, false);
    T_NEAR(hypot(h[0], h[1]), hypot(1, 2), 1e-5);
    T_NEAR(h[0], cos(3.0) - 2 * sin(3.0), 1e-5);
    T_NEAR(h[2], 3 * cos(1.5) - 4 * sin(1.5), 1e-5);
}

/* YaRN against the paper's formulas in double: pair i of angle t_i = pos * base^(-2i/n) turns
 * r_i = L / (2 pi / t_i) times over the original context L; pairs that turn more than
 * beta_fast = 32 times keep t_i, those under beta_slow = 1 get t_i / s, a linear ramp between
 * (over the pair indices where the turns cross 32 and 1), and cos and sin grow by
 * 1 + 0.1 ln s. llama.cpp forms the angles in float, hence the tolerance. */
TEST(kernels_ref_rope_yarn_matches_formula)
{
    enum { N = 64, L = 512 };
    const double base = 10000, s = 4;
    float corr[2], cs[N];
    kl_rope_yarn_corr(N, L, (float)base, 32, 1, corr);
    /* the pair that turns b times over L: n ln(L / (2 pi b)) / (2 ln base) */
    double lo = floor(N * log(L / (2 * M_PI * 32)) / (2 * log(base)));
    double hi = ceil(N * log(L / (2 * M_PI * 1)) / (2 * log(base)));
    T_NEAR(corr[0], lo < 0 ? 0 : lo, 0);
    T_NEAR(corr[1], hi > N - 1 ? N - 1 : hi, 0);
    T_ASSERT(corr[0] > 0 && corr[1] < N / 2); /* a ramp inside the head: every branch runs */
    kl_rope_cfg c = {N, powf((float)base, -2.f / N), NULL, (float)(1 / s), 1,
                     1, {corr[0], corr[1]}};
    static const int pos[] = {0, 1, 100, 2047};
    for (int p = 0; p < 4; p++) {
        kl_rope_angles(&c, pos[p], cs);
        for (int i = 0; i < N / 2; i++) {
            double t = pos[p] * pow(base, -2.0 * i / N);
            double ramp = (i - corr[0]) / fmax(0.001, corr[1] - corr[0]);
            double keep = 1 - fmin(1, fmax(0, ramp)); /* 1: extrapolate, 0: interpolate */
            double a = t / s * (1 - keep) + t * keep, m = 1 + 0.1 * log(s);
            double tol = 2e-6 + fabs(t) * (i + 2) * 1.2e-7;
            T_NEAR(cs[2 * i], cos(a) * m, tol);
            T_NEAR(cs[2 * i + 1], sin(a) * m, tol);
        }
    }
    /* linear scaling and divisors: t_i / factor_i * freq_scale, cos and sin times attn_factor */
    float fac[N / 2];
    for (int i = 0; i < N / 2; i++)
        fac[i] = 1.0f + (float)i / 8;
    kl_rope_cfg lin = {N, powf((float)base, -2.f / N), fac, 0.5f, 0, 1.25f, {0, 0}};
    kl_rope_angles(&lin, 300, cs);
    for (int i = 0; i < N / 2; i++) {
        double a = 300 * pow(base, -2.0 * i / N) / fac[i] * 0.5;
        T_NEAR(cs[2 * i], cos(a) * 1.25, 1e-5 + a * (i + 2) * 1.2e-7);
        T_NEAR(cs[2 * i + 1], sin(a) * 1.25, 1e-5 + a * (i + 2) * 1.2e-7);
    }
}
