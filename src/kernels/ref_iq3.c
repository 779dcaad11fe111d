/* kernels/ref_iq3.c: IQ3_XXS and IQ3_S blocks decoded to kl_iq_dec (kernels/iq.h has the
 * layouts). Both store, per 32 elements, grid indices that stand for 4 magnitudes each, one
 * sign per element and a 4-bit scale s used as the odd integer 2 s + 1 (llama.cpp's dots
 * multiply by 2 s + 1: IQ3_XXS's d (0.5 + s) / 2 is d (2 s + 1) / 4, a float factor of 1/4). */
#include <string.h>

#include "kernels/iq.h"

/* 8 magnitudes (two grid entries) times the signs of one sign byte. */
static void put8(int8_t *q, uint32_t g0, uint32_t g1, uint8_t signs)
{
    uint64_t g = g0 | (uint64_t)g1 << 32;
    for (int j = 0; j < 8; j++) {
        int v = (int)((g >> (8 * j)) & 0xFF);
        q[j] = (int8_t)(signs >> j & 1 ? -v : v);
    }
}

void kl_iq_decode_iq3_xxs(const void *block, kl_iq_dec *o)
{
    const kl_block_iq3_xxs *b = block;
    float d = kl_fp16_to_fp32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *qs = b->qs + 8 * ib;
        uint32_t aux;
        memcpy(&aux, b->qs + KL_QKK / 4 + 4 * ib, 4);
        for (int l = 0; l < 4; l++)
            put8(o->q + 32 * ib + 8 * l, kl_iq3xxs_grid[qs[2 * l]], kl_iq3xxs_grid[qs[2 * l + 1]],
                 kl_iq_ksigns[(aux >> (7 * l)) & 127]);
        int s = (int)(aux >> 28);
        o->sc[2 * ib] = o->sc[2 * ib + 1] = (int16_t)(2 * s + 1);
        o->dl[2 * ib] = o->dl[2 * ib + 1] = d * (0.5f + (float)s) * 0.5f;
    }
    o->d = 0.25f * d;
}

void kl_iq_decode_iq3_s(const void *block, kl_iq_dec *o)
{
    const kl_block_iq3_s *b = block;
    float d = kl_fp16_to_fp32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *qs = b->qs + 8 * ib;
        int idx[8];
        for (int k = 0; k < 8; k++)
            idx[k] = qs[k] | ((b->qh[ib] >> k & 1) << 8);
        for (int l = 0; l < 4; l++)
            put8(o->q + 32 * ib + 8 * l, kl_iq3s_grid[idx[2 * l]], kl_iq3s_grid[idx[2 * l + 1]],
                 b->signs[4 * ib + l]);
        int s = (b->scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
        o->sc[2 * ib] = o->sc[2 * ib + 1] = (int16_t)(2 * s + 1);
        o->dl[2 * ib] = o->dl[2 * ib + 1] = d * (float)(1 + 2 * s);
    }
    o->d = d;
}
