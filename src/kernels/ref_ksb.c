/* kernels/ref_ksb.c: a K-quant super-block of any of the five types read into one shape
 * (kl_ksb, impl.h): unsigned quants and per-16-column integer scales. The Q2_K/Q3_K
 * references and every packer read blocks through it. Layouts: ggml-common.h, and the
 * comments of ref_quant.c (Q4_K Q5_K Q6_K) and ref_quant_q2k_q3k.c (Q2_K Q3_K). */
#include <string.h>

#include "kernels/impl.h"

/* The 2-bit fields of a Q2_K/Q3_K qs: element e = 128h + 32c + l is bits 2c of qs[32h + l]. */
static void unpack2(const uint8_t qs[64], uint8_t u[KL_QKK])
{
    for (int e = 0; e < KL_QKK; e++)
        u[e] = (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
}

/* Scale j (0..15) of a Q3_K block, 6 bits stored offset by 32: low 4 bits from byte j (j < 8)
 * or the high nibble of byte j - 8; high 2 bits from bits 2 (j / 4) of byte 8 + j % 4. */
int kl_k3_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void q2_k(const kl_block_q2_k *b, kl_ksb *o)
{
    unpack2(b->qs, o->u);
    for (int t = 0; t < 16; t++)
        o->sc[t] = b->scales[t] & 0xF, o->m[t] = b->scales[t] >> 4;
    o->d = b->d, o->dmin = b->dmin;
}

static void q3_k(const kl_block_q3_k *b, kl_ksb *o)
{
    unpack2(b->qs, o->u); /* + 4 when the third bit is set: u = q + 4 */
    for (int e = 0; e < KL_QKK; e++)
        o->u[e] |= (uint8_t)(((b->hmask[e % 32] >> (4 * (e / 128) + e % 128 / 32)) & 1) << 2);
    for (int t = 0; t < 16; t++)
        o->sc[t] = (int16_t)kl_k3_scale(b->scales, t), o->m[t] = 0;
    o->d = b->d, o->dmin = 0;
}

/* Q4_K / Q5_K: element e = 64c + l is the low (l < 32) or high nibble of qs[32c + l % 32],
 * Q5_K's fifth bit bit 2c (low) or 2c + 1 (high) of qh[l % 32]; sub-block e / 32. */
static void q45_k(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, uint16_t d,
                  uint16_t dmin, kl_ksb *o)
{
    for (int c = 0; c < 4; c++) /* by halves, with no test per element: a load unpacks each */
        for (int l = 0; l < 32; l++) {
            o->u[64 * c + l] = (uint8_t)(qs[32 * c + l] & 0xF);
            o->u[64 * c + 32 + l] = (uint8_t)(qs[32 * c + l] >> 4);
        }
    for (int c = 0; qh && c < 4; c++)
        for (int l = 0; l < 32; l++) {
            o->u[64 * c + l] |= (uint8_t)((qh[l] >> (2 * c) & 1) << 4);
            o->u[64 * c + 32 + l] |= (uint8_t)((qh[l] >> (2 * c + 1) & 1) << 4);
        }
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        kl_k4_scale_min(s, scales, &sc, &m);
        o->sc[2 * s] = o->sc[2 * s + 1] = sc;
        o->m[2 * s] = o->m[2 * s + 1] = m;
    }
    o->d = d, o->dmin = dmin;
}

/* Q6_K: element e = 128h + 32k + l: low 4 bits from ql[64h + l + 32 (k & 1)] (high nibble
 * for k >= 2), top 2 bits bits 2k of qh[32h + l]; stored as q + 32. */
static void q6_k(const kl_block_q6_k *b, kl_ksb *o)
{
    for (int e = 0; e < KL_QKK; e++) {
        int h = e / 128, k = e % 128 / 32, l = e % 32;
        int lo = b->ql[64 * h + l + 32 * (k & 1)] >> (k >= 2 ? 4 : 0) & 0xF;
        o->u[e] = (uint8_t)(lo | ((b->qh[32 * h + l] >> (2 * k)) & 3) << 4);
    }
    for (int t = 0; t < 16; t++)
        o->sc[t] = b->scales[t], o->m[t] = 0;
    o->d = b->d, o->dmin = 0;
}

void kl_ksb_unpack(kl_dtype t, const void *block, kl_ksb *o)
{
    switch (t) {
    case KL_Q2_K:
        q2_k(block, o);
        break;
    case KL_Q3_K:
        q3_k(block, o);
        break;
    case KL_Q4_K: {
        const kl_block_q4_k *b = block;
        q45_k(b->qs, NULL, b->scales, b->d, b->dmin, o);
        break;
    }
    case KL_Q5_K: {
        const kl_block_q5_k *b = block;
        q45_k(b->qs, b->qh, b->scales, b->d, b->dmin, o);
        break;
    }
    default:
        q6_k(block, o);
        break;
    }
}
