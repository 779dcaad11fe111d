/* kernels/ref_iq.c: the scalar references of the grid types (IQ3, IQ2, IQ1, TQ): the
 * definition of correct for their SIMD paths. Each type has a decoder (ref_iq3.c, ...) that
 * turns one block into kl_iq_dec: signed integer weights, an integer scale per 16 and the
 * float factors. Dequantization and the dot against Q8_K activations are written once here:
 *   dequantize   y[e] = dl[e / 16] * q[e]                      (llama.cpp's floats)
 *   dot          sum_blocks (d * d_a) * sum_e sc[e / 16] q[e] a[e]   (its integer sums)
 * A decode per block per row is slow, which a reference may be. */
#include "kernels/iq.h"

static void dequant(kl_iq_decode_fn decode, size_t bb, const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    kl_iq_dec dec;
    for (int64_t i = 0; i < n / KL_QKK; i++, b += bb, y += KL_QKK) {
        decode(b, &dec);
        for (int e = 0; e < KL_QKK; e++)
            y[e] = dec.dl[e / 16] * (float)dec.q[e];
    }
}

static void gemm(kl_iq_decode_fn decode, size_t bb, const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nb = n / KL_QKK;
    kl_iq_dec dec;
    for (int64_t r = r0; r < r1; r++)
        for (int b = 0; b < g->B; b++) {
            const uint8_t *w = g->W + (size_t)r * g->w_stride;
            const uint8_t *a = g->act + (size_t)b * g->a_stride;
            const float *ad = kl_act_q8_k_d(a, n);
            float s = 0.0f;
            for (int64_t i = 0; i < nb; i++) {
                decode(w + (size_t)i * bb, &dec);
                const int8_t *ai = (const int8_t *)a + i * KL_QKK;
                int32_t isum = 0;
                for (int t = 0; t < 16; t++) {
                    int32_t s16 = 0;
                    for (int e = 16 * t; e < 16 * t + 16; e++)
                        s16 += dec.q[e] * ai[e];
                    isum += dec.sc[t] * s16;
                }
                s += (float)isum * (dec.d * ad[i]);
            }
            g->y[b * g->ldy + r] = s;
        }
}

/* The table's functions of one type: dequantize and matmul through its decoder. */
#define IQ_REF(NAME, BLOCK)                                                                        \
    void kl_ref_dequant_##NAME(const void *src, float *y, int64_t n)                               \
    {                                                                                              \
        dequant(kl_iq_decode_##NAME, sizeof(BLOCK), src, y, n);                                    \
    }                                                                                              \
    void kl_ref_gemm_##NAME(const kl_gemm *g, int64_t r0, int64_t r1)                              \
    {                                                                                              \
        gemm(kl_iq_decode_##NAME, sizeof(BLOCK), g, r0, r1);                                       \
    }

IQ_REF(iq3_xxs, kl_block_iq3_xxs)
IQ_REF(iq3_s, kl_block_iq3_s)
IQ_REF(iq2_xxs, kl_block_iq2_xxs)
IQ_REF(iq2_xs, kl_block_iq2_xs)
IQ_REF(iq2_s, kl_block_iq2_s)
IQ_REF(iq1_s, kl_block_iq1_s)
IQ_REF(iq1_m, kl_block_iq1_m)
IQ_REF(tq1_0, kl_block_tq1_0)
IQ_REF(tq2_0, kl_block_tq2_0)

/* The IQ2 types' packed form (kernels/pack_iq2.c): a panel's rows are consecutive records, so
 * the reference on a row's stride (a panel's bytes / 16) through the record's decode. */
void kl_ref_gemm_iq2_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    gemm(kl_iq_decode_iq2_packed, KL_IQ2P_REC, &h, r0, r1);
}

static kl_type_ops ops(kl_gemm_fn gemm_fn, kl_dequant_fn to_f32, kl_row_fn from_f32)
{
    return (kl_type_ops){.act = KL_Q8_K,
                         .quant_act = kl_ref_quant_act_q8_k,
                         .gemm = gemm_fn,
                         .to_f32 = to_f32,
                         .from_f32 = from_f32};
}

void kl_ref_types_iq(kl_isa *isa)
{
    isa->types[KL_IQ3_XXS] = ops(kl_ref_gemm_iq3_xxs, kl_ref_dequant_iq3_xxs, NULL);
    isa->types[KL_IQ3_S] = ops(kl_ref_gemm_iq3_s, kl_ref_dequant_iq3_s, NULL);
    isa->types[KL_IQ2_XXS] = ops(kl_ref_gemm_iq2_xxs, kl_ref_dequant_iq2_xxs, NULL);
    isa->types[KL_IQ2_XS] = ops(kl_ref_gemm_iq2_xs, kl_ref_dequant_iq2_xs, NULL);
    isa->types[KL_IQ2_S] = ops(kl_ref_gemm_iq2_s, kl_ref_dequant_iq2_s, NULL);
    isa->types[KL_IQ1_S] = ops(kl_ref_gemm_iq1_s, kl_ref_dequant_iq1_s, NULL);
    isa->types[KL_IQ1_M] = ops(kl_ref_gemm_iq1_m, kl_ref_dequant_iq1_m, NULL);
    isa->types[KL_TQ1_0] = ops(kl_ref_gemm_tq1_0, kl_ref_dequant_tq1_0, kl_ref_quant_tq1_0);
    isa->types[KL_TQ2_0] = ops(kl_ref_gemm_tq2_0, kl_ref_dequant_tq2_0, kl_ref_quant_tq2_0);
}
