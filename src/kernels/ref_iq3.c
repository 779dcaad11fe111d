/* kernels/ref_iq3.c: IQ3_XXS and IQ3_S blocks decoded to kl_iq_dec (kernels/iq.h has the
 * layouts). Both store, per 32 elements, grid indices that stand for 4 magnitudes each, one
 * sign per element and a 4-bit scale s used as the odd integer 2 s + 1 (llama.cpp's dots
 * multiply by 2 s + 1: IQ3_XXS's d (0.5 + s) / 2 is d (2 s + 1) / 4, a float factor of 1/4). */
#include <string.h>

#include "kernels/iq.h"

/* 8 magnitudes of two grid entries times a sign byte. */
static void put8(int8_t *q, uint32_t g0, uint32_t g1, uint8_t signs)
{
    kl_iq_put8(q, g0 | (uint64_t)g1 << 32, signs);
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
    }
    kl_iq_scales_iq3_xxs(b, o->sc);
    for (int t = 0; t < 16; t++)
        o->dl[t] = d * (0.5f + (float)(o->sc[t] / 2)) * 0.5f; /* s = (2 s + 1) / 2 */
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
    }
    kl_iq_scales_iq3_s(b, o->sc);
    for (int t = 0; t < 16; t++)
        o->dl[t] = d * (float)o->sc[t];
    o->d = d;
}
