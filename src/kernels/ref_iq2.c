/* kernels/ref_iq2.c: IQ2_XXS, IQ2_XS and IQ2_S blocks decoded to kl_iq_dec (kernels/iq.h has
 * the layouts). Each 8 elements are one grid entry of 8 magnitudes (8, 25 or 43) and a sign
 * byte; scales are 4-bit s used as 2 s + 1 with a float factor of 1/8 (x = d (0.5 + s) / 4 g),
 * per 32 elements (IQ2_XXS) or per 16 (IQ2_XS, IQ2_S). */
#include <string.h>

#include "kernels/iq.h"

/* The float step of each 16 elements from their scale 2 s + 1: d (0.5 + s) / 4. */
static void steps(kl_iq_dec *o, float d)
{
    for (int t = 0; t < 16; t++)
        o->dl[t] = d * (0.5f + (float)(o->sc[t] / 2)) * 0.25f;
    o->d = 0.125f * d;
}

void kl_iq_decode_iq2_xxs(const void *block, kl_iq_dec *o)
{
    const kl_block_iq2_xxs *b = block;
    float d = kl_fp16_to_fp32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        uint8_t idx[4];
        uint32_t aux;
        memcpy(idx, b->qs + 4 * ib, 4);
        memcpy(&aux, b->qs + 4 * ib + 2, 4);
        for (int l = 0; l < 4; l++)
            kl_iq_put8(o->q + 32 * ib + 8 * l, kl_iq2xxs_grid[idx[l]],
                       kl_iq_ksigns[(aux >> (7 * l)) & 127]);
    }
    kl_iq_scales_iq2_xxs(b, o->sc);
    steps(o, d);
}

void kl_iq_decode_iq2_xs(const void *block, kl_iq_dec *o)
{
    const kl_block_iq2_xs *b = block;
    float d = kl_fp16_to_fp32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        for (int l = 0; l < 4; l++) {
            uint16_t q = b->qs[4 * ib + l];
            kl_iq_put8(o->q + 32 * ib + 8 * l, kl_iq2xs_grid[q & 511], kl_iq_ksigns[q >> 9]);
        }
    }
    kl_iq_scales_nibbles(b->scales, o->sc);
    steps(o, d);
}

void kl_iq_decode_iq2_s(const void *block, kl_iq_dec *o)
{
    const kl_block_iq2_s *b = block;
    float d = kl_fp16_to_fp32(b->d);
    const uint8_t *signs = b->qs + KL_QKK / 8;
    for (int ib = 0; ib < 8; ib++) {
        for (int l = 0; l < 4; l++) {
            int idx = b->qs[4 * ib + l] | ((b->qh[ib] >> (2 * l) & 3) << 8);
            kl_iq_put8(o->q + 32 * ib + 8 * l, kl_iq2s_grid[idx], signs[4 * ib + l]);
        }
    }
    kl_iq_scales_nibbles(b->scales, o->sc);
    steps(o, d);
}

/* A record of the packed form (kernels/pack_iq2.c): the file block's decode, from its planes. */
void kl_iq_decode_iq2_packed(const void *rec, kl_iq_dec *o)
{
    static const int8_t mag[4] = {8, 25, 43, 0};
    const uint8_t *b = rec;
    uint16_t dh;
    memcpy(&dh, b + KL_IQ2P_D, 2);
    for (int e = 0; e < KL_QKK; e++) {
        int v = mag[b[32 * (e / 128) + e % 32] >> (2 * (e / 32 % 4)) & 3];
        o->q[e] = (int8_t)(b[KL_IQ2P_SG + e % 32] >> (e / 32) & 1 ? -v : v);
    }
    for (int t = 0; t < 16; t++)
        kl_iq_odd16(o->sc, t, b[KL_IQ2P_S + t / 2] >> (4 * (t % 2)) & 0xF);
    steps(o, kl_fp16_to_fp32(dh));
}
