/* kernels/ref_tq.c: TQ1_0 and TQ2_0, the ternary types (weights -1, 0, 1 times an fp16 d per
 * 256): block decoders to kl_iq_dec (ref_iq.c runs them) and quantizers.
 *
 * TQ2_0 keeps 2 bits per element (q - 1, q in 0..3; 3 is never written): element
 * 128 h + 32 l + m is bits 2l..2l+1 of qs[32 h + m]. TQ1_0 keeps 5 trits per byte as the
 * fraction V / 243 of the byte range, V the trits' base-3 number with the first trit most
 * significant: the byte is ceil(256 V / 243), and trit n comes back as the top base-3 digit of
 * byte * 3^n (mod 256), that is ((byte * 3^n mod 256) * 3) >> 8. Elements 0-159 are trits of
 * qs[0..31] (trit n of byte m: element 32 n + m), 160-239 of qs[32..47] (160 + 16 n + m),
 * 240-255 the first 4 trits of qh[0..3] (240 + 4 n + m).
 *
 * The quantizers fit the ternary scale per block by least squares: with the k largest |x| at
 * +-d and the rest at 0, the best d is their mean and the error falls by (sum of them)^2 / k;
 * k is chosen to maximise that (llama.cpp's reference takes d = max |x|, which rounds most of
 * a Gaussian block to 0). The elements are then rounded at the stored fp16 d. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/iq.h"

static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};

static int trit(uint8_t byte, int n)
{
    uint8_t q = (uint8_t)(byte * pow3[n]);
    return ((uint16_t)q * 3) >> 8;
}

static void ternary_scales(kl_iq_dec *o, float d)
{
    for (int t = 0; t < 16; t++)
        o->sc[t] = 1, o->dl[t] = d;
    o->d = d;
}

void kl_iq_decode_tq1_0(const void *block, kl_iq_dec *o)
{
    const kl_block_tq1_0 *b = block;
    for (int e = 0; e < 160; e++)
        o->q[e] = (int8_t)(trit(b->qs[e % 32], e / 32) - 1);
    for (int e = 0; e < 80; e++)
        o->q[160 + e] = (int8_t)(trit(b->qs[32 + e % 16], e / 16) - 1);
    for (int e = 0; e < 16; e++)
        o->q[240 + e] = (int8_t)(trit(b->qh[e % 4], e / 4) - 1);
    ternary_scales(o, kl_fp16_to_fp32(b->d));
}

void kl_iq_decode_tq2_0(const void *block, kl_iq_dec *o)
{
    const kl_block_tq2_0 *b = block;
    for (int e = 0; e < KL_QKK; e++)
        o->q[e] = (int8_t)(((b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1);
    ternary_scales(o, kl_fp16_to_fp32(b->d));
}

static int by_magnitude_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The block's ternary values t[e] in -1..1 (each 0..2 after + 1) and its fp16 scale. */
static uint16_t ternary_fit(const float *x, uint8_t t[KL_QKK])
{
    float a[KL_QKK];
    for (int e = 0; e < KL_QKK; e++)
        a[e] = fabsf(x[e]);
    qsort(a, KL_QKK, sizeof *a, by_magnitude_desc);
    double sum = 0.0, best = 0.0;
    float d = 0.0f;
    for (int k = 1; k <= KL_QKK; k++) {
        sum += (double)a[k - 1];
        if (sum * sum / k > best) best = sum * sum / k, d = (float)(sum / k);
    }
    uint16_t h = kl_fp32_to_fp16(d);
    float df = kl_fp16_to_fp32(h), id = df > 0.0f ? 1.0f / df : 0.0f;
    for (int e = 0; e < KL_QKK; e++) {
        int v = kl_nearest_int(x[e] * id);
        t[e] = (uint8_t)((v < -1 ? -1 : v > 1 ? 1 : v) + 1);
    }
    return h;
}

/* n trits (first most significant) as a TQ1_0 byte: ceil(256 V / 243), V scaled to 5 trits. */
static uint8_t pack_trits(const uint8_t *t, int n, int stride)
{
    unsigned v = 0;
    for (int i = 0; i < 5; i++)
        v = v * 3 + (i < n ? t[i * stride] : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

void kl_ref_quant_tq1_0(const float *x, void *dst, int64_t n)
{
    kl_block_tq1_0 *b = dst;
    uint8_t t[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        b[i].d = ternary_fit(x, t);
        for (int m = 0; m < 32; m++)
            b[i].qs[m] = pack_trits(t + m, 5, 32);
        for (int m = 0; m < 16; m++)
            b[i].qs[32 + m] = pack_trits(t + 160 + m, 5, 16);
        for (int m = 0; m < 4; m++)
            b[i].qh[m] = pack_trits(t + 240 + m, 4, 4);
    }
}

void kl_ref_quant_tq2_0(const float *x, void *dst, int64_t n)
{
    kl_block_tq2_0 *b = dst;
    uint8_t t[KL_QKK];
    for (int64_t i = 0; i < n / KL_QKK; i++, x += KL_QKK) {
        b[i].d = ternary_fit(x, t);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < KL_QKK; e++)
            b[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(t[e] << (2 * ((e % 128) / 32)));
    }
}
