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

/* A block's record, written byte by byte (each byte once, so no clearing first): the
 * magnitude index as two compares, not a branch, for a branch on random magnitudes mispredicted
 * about every other weight (the 1B IQ2_XS had taken 7.5-9 s to load, 1.2 s unpacked). */
static void pack_block(kl_iq_decode_fn decode, const void *b, uint8_t *o)
{
    kl_iq_dec dec;
    decode(b, &dec);
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 32; j++) {
            unsigned m = 0;
            for (int k = 0; k < 4; k++) {
                int q = dec.q[32 * (4 * h + k) + j], a = q < 0 ? -q : q; /* 8, 25 or 43 */
                m |= (unsigned)((a > 8) + (a > 25)) << (2 * k);
            }
            o[32 * h + j] = (uint8_t)m;
        }
    for (int j = 0; j < 32; j++) {
        unsigned sg = 0;
        for (int c = 0; c < 8; c++)
            sg |= (unsigned)(dec.q[32 * c + j] < 0) << c;
        o[KL_IQ2P_SG + j] = (uint8_t)sg;
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

/* The VBMI table's form of the same bits (x86/avx512vbmi_iq2_packed.c): the record's parts in
 * the lanes of the activations' T8P vectors (kernels/impl.h), so that one vpermb gives a plane's
 * magnitudes and one mask load its signs, with nothing spread or shuffled. A pair of blocks
 * 2i, 2i + 1 is one 212-byte record, 8 vectors (v: T8P vector v of the pair, lane l: its byte l);
 * an odd last block a 106-byte one of 4 (T8 vector v):
 *   m   [nv / 4][64] at 0: byte 64 (v / 4) + l, bits 2 (v % 4).. the magnitude index of lane l
 *   sg  [nv][8] at 16 nv: bit l of qword v: lane l is negative
 *   s   [n][8] at 24 nv: each block's scale nibbles, as the record above
 *   d   [n] fp16 at 24 nv + 8 n
 * (n the blocks, nv = 4 n); a row is nblk * 106 bytes as above, and the panels are the same. */
static void pack_t8p(const kl_iq_dec *dec, const uint8_t *const *b, int n, uint8_t *o)
{
    int nv = 4 * n;
    uint8_t *s = o + 24 * nv;
    uint64_t neg[8] = {0};
    for (int l = 0; l < 64; l++) {
        /* lane l of vector v: kl_act_t8p_src(64 v + l), element v of entry l % 32 of block
         * l / 32; T8's kl_act_t8_src(64 v + l), element 2 v + l / 32 of entry l % 32 */
        const int8_t *e = n == 2 ? dec[l / 32].q + 8 * (l % 32) : dec[0].q + 8 * (l % 32) + l / 32;
        unsigned m[2] = {0, 0};
        for (int v = 0; v < nv; v++) {
            int q = e[n == 2 ? v : 2 * v], a = q < 0 ? -q : q; /* 8, 25, 43: no branches */
            m[v / 4] |= (unsigned)((a > 8) + (a > 25)) << (2 * (v % 4));
            neg[v] |= (uint64_t)(q < 0) << l;
        }
        for (int g = 0; g < n; g++)
            o[64 * g + l] = (uint8_t)m[g];
    }
    memcpy(o + 16 * nv, neg, 8 * (size_t)nv);
    for (int h = 0; h < n; h++) {
        for (int c = 0; c < 8; c++)
            s[8 * h + c] =
                (uint8_t)((dec[h].sc[2 * c] - 1) / 2 | (dec[h].sc[2 * c + 1] - 1) / 2 << 4);
        memcpy(s + 8 * n + 2 * h, b[h], 2); /* d leads each of the three blocks */
    }
}

void kl_pack_iq2_t8p(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                     void *dst)
{
    kl_iq_decode_fn decode = t == KL_IQ2_XXS  ? kl_iq_decode_iq2_xxs
                             : t == KL_IQ2_XS ? kl_iq_decode_iq2_xs
                                              : kl_iq_decode_iq2_s;
    int64_t nblk = cols / KL_QKK;
    size_t stride = kl_dtype_row_bytes(t, cols), bb = kl_dtype_get(t)->block_bytes,
           row = (size_t)nblk * KL_IQ2P_REC;
    for (int64_t r = p0 * KL_PR; r < p1 * KL_PR; r++) {
        uint8_t *o = (uint8_t *)dst + (size_t)r * row;
        if (r >= rows) {
            memset(o, 0, row);
            continue;
        }
        for (int64_t j = 0; j < nblk; j += 2) {
            int n = nblk - j < 2 ? 1 : 2;
            kl_iq_dec dec[2];
            const uint8_t *b[2];
            for (int h = 0; h < n; h++) {
                b[h] = (const uint8_t *)W + (size_t)r * stride + (size_t)(j + h) * bb;
                decode(b[h], &dec[h]);
            }
            pack_t8p(dec, b, n, o + (size_t)j * KL_IQ2P_REC);
        }
    }
}
