/* kernels/pack_iq2.c: IQ2_XXS, IQ2_XS and IQ2_S repacked at load into one plane form (the
 * packed form the AVX2 table runs, x86/avx2_iq2_packed.c). Plain C built without ISA flags, as
 * the other packers.
 *
 * Why: every weight of the three types is (2 s + 1) g with g = +-8, +-25 or +-43 (their grids
 * hold no other byte: ref_iq2.c), yet the file spends 8 weights' magnitudes on one grid index,
 * and a grid lookup on AVX2 (no vpermb, no cheap gather) is a scalar load and an insert per 8
 * weights: ~10 ns a block at one thread, 6.5-7.7 GB/s of the file. Here a weight is a 2-bit
 * magnitude index and a sign bit, so a 32-weight chunk is one byte lookup (vpshufb) of its
 * magnitudes and a shift of its signs, for 106 bytes a block instead of 66 (IQ2_XXS), 74
 * (IQ2_XS) or 82 (IQ2_S).
 *
 * Record, 106 bytes (KL_IQ2P_*), the same for the three types:
 *   m   [64] at 0: half h (bytes 32 h..): byte j, bits 2 k, 2 k + 1 the magnitude index (0, 1,
 *            2 for 8, 25, 43) of element 32 (4 h + k) + j
 *   sg  [32] at 64: byte j, bit c: element 32 c + j is negative
 *   s   [8] at 96: byte c, the scales s of elements 32 c.. (low nibble) and 32 c + 16..
 *            (high; IQ2_XXS's one scale per 32 twice)
 *   d   fp16 at 104, the file's
 * in 16-row panels of the rows one after another (rows past the matrix end zero), each row its
 * blocks' records in order; kl_iq_decode_iq2_packed (ref_iq2.c) reads a record back. */
#include <string.h>

#include "kernels/iq.h"

size_t kl_pack_iq2_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return kl_pack_records_bytes(rows, cols, KL_IQ2P_REC);
}

static void pack_block(kl_iq_decode_fn decode, const void *b, uint8_t *o)
{
    kl_iq_dec dec;
    decode(b, &dec);
    memset(o, 0, KL_IQ2P_REC);
    for (int e = 0; e < KL_QKK; e++) {
        int v = dec.q[e] < 0 ? -dec.q[e] : dec.q[e], m = v == 8 ? 0 : v == 25 ? 1 : 2;
        o[32 * (e / 128) + e % 32] |= (uint8_t)(m << (2 * (e / 32 % 4)));
        o[KL_IQ2P_SG + e % 32] |= (uint8_t)((dec.q[e] < 0) << (e / 32));
    }
    for (int c = 0; c < 8; c++)
        o[KL_IQ2P_S + c] = (uint8_t)((dec.sc[2 * c] - 1) / 2 | (dec.sc[2 * c + 1] - 1) / 2 << 4);
    memcpy(o + KL_IQ2P_D, b, 2); /* d leads each of the three blocks */
}
static void pack_xxs(const void *b, uint8_t *o)
{
    pack_block(kl_iq_decode_iq2_xxs, b, o);
}
static void pack_xs(const void *b, uint8_t *o)
{
    pack_block(kl_iq_decode_iq2_xs, b, o);
}
static void pack_s(const void *b, uint8_t *o)
{
    pack_block(kl_iq_decode_iq2_s, b, o);
}

void kl_pack_iq2(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst)
{
    kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ2P_REC,
                    t == KL_IQ2_XXS  ? pack_xxs
                    : t == KL_IQ2_XS ? pack_xs
                                     : pack_s);
}
