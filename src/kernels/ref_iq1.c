/* kernels/ref_iq1.c: IQ1_S and IQ1_M blocks decoded to kl_iq_dec (kernels/iq.h has the
 * layouts). Each 8 elements are one entry of kl_iq1s_grid (values -1, 0, 1) plus a shift of
 * +-1/8 shared by 8 (IQ1_M) or 32 (IQ1_S) elements, times an odd scale 2 s + 1 (3 bits) per
 * 32 (IQ1_S) or 16 (IQ1_M). Decoded as integers 8 g +- 1 with a float factor of 1/8, which is
 * exact: llama.cpp's dl (g +- 0.125) and its dot's sum + 0.125 * shift sum are the same
 * numbers. */
#include "kernels/iq.h"

/* One grid entry (8 values) plus the shift sign (+1 or -1), times 8. */
static void put8(int8_t *q, uint64_t g, int shift)
{
    for (int j = 0; j < 8; j++)
        q[j] = (int8_t)(8 * (int8_t)((g >> (8 * j)) & 0xFF) + shift);
}

/* The float step of each 16 elements, d (2 s + 1) / 8, and the dot's factor d / 8. */
static void steps(kl_iq_dec *o, float d)
{
    for (int t = 0; t < 16; t++)
        o->dl[t] = d * (float)o->sc[t] * 0.125f;
    o->d = 0.125f * d;
}

void kl_iq_decode_iq1_s(const void *block, kl_iq_dec *o)
{
    const kl_block_iq1_s *b = block;
    float d = kl_fp16_to_fp32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        uint16_t qh = b->qh[ib];
        int shift = qh & 0x8000 ? -1 : 1;
        for (int l = 0; l < 4; l++)
            put8(o->q + 32 * ib + 8 * l,
                 kl_iq1s_grid[b->qs[4 * ib + l] | ((qh >> (3 * l) & 7) << 8)], shift);
    }
    kl_iq_scales_iq1_s(b, o->sc);
    steps(o, d);
}

void kl_iq_decode_iq1_m(const void *block, kl_iq_dec *o)
{
    const kl_block_iq1_m *b = block;
    float d = kl_fp16_to_fp32(kl_iq1_m_d(b));
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *qh = b->qh + 2 * ib;
        for (int l = 0; l < 4; l++) {
            uint8_t hb = qh[l / 2] >> (4 * (l % 2)); /* low nibble: index bits 8-10, shift sign */
            put8(o->q + 32 * ib + 8 * l, kl_iq1s_grid[b->qs[4 * ib + l] | ((hb & 7) << 8)],
                 hb & 8 ? -1 : 1);
        }
    }
    kl_iq_scales_iq1_m(b, o->sc);
    steps(o, d);
}
