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
 * (n the blocks, nv = 4 n); a row is nblk * 106 bytes as above, and the panels are the same.
 *
 * Lane l of a pair's vector v is weight v of grid entry l % 32 (8 weights) of block l / 32, so a
 * lane is an entry: its magnitudes are one grid entry's, two bytes, and its signs one sign byte,
 * turned into planes by a bit transpose. An odd block's lane l is weight 2 v + l / 32 of entry
 * l % 32 (T8): an entry's even weights, then its odd ones. So the packer works an entry at a
 * time, from the grid's own bits; a loop over weights through the file decoder's integers had
 * been 32-40% of a cold load of the 1B IQ2_XS (2.0-2.6 s, 0.65 s once by entries). */

/* A pair of blocks' grid entries (the second block's at 32..): the magnitude indices of an
 * entry's 8 weights, weight k's at bits 2 k of m, its sign byte (bit k: weight k negative), and
 * the blocks' scale bytes in the record's form. */
typedef struct {
    uint16_t m[64];
    uint8_t sg[64];
    uint8_t s[16];
} iq2_entries;
typedef void (*iq2_entries_fn)(const void *block, uint16_t *m, uint8_t *sg, uint8_t *s);

/* A grid entry's 8 magnitude indices, 2 bits each: its bytes are 8, 25 or 43 (0x08, 0x19,
 * 0x2B; ref_iq2.c), whose bits 4-5 are the index 0, 1 or 2, gathered from byte k to bits 2 k. */
static uint16_t grid_mags(uint64_t g)
{
    g = g >> 4 & 0x0303030303030303ull;
    g = (g | g >> 6) & 0x000F000F000F000Full;
    g = (g | g >> 12) & 0x000000FF000000FFull;
    return (uint16_t)(g | g >> 24);
}

static void entries_xxs(const void *block, uint16_t *m, uint8_t *sg, uint8_t *s)
{
    const kl_block_iq2_xxs *b = block;
    for (int ib = 0; ib < 8; ib++) {
        uint8_t idx[4];
        uint32_t aux;
        memcpy(idx, b->qs + 4 * ib, 4);
        memcpy(&aux, b->qs + 4 * ib + 2, 4);
        for (int l = 0; l < 4; l++) {
            m[4 * ib + l] = grid_mags(kl_iq2xxs_grid[idx[l]]);
            sg[4 * ib + l] = kl_iq_ksigns[aux >> (7 * l) & 127];
        }
        s[ib] = (uint8_t)(aux >> 28 | aux >> 28 << 4); /* one scale per 32, twice */
    }
}
static void entries_xs(const void *block, uint16_t *m, uint8_t *sg, uint8_t *s)
{
    const kl_block_iq2_xs *b = block;
    for (int j = 0; j < 32; j++) {
        m[j] = grid_mags(kl_iq2xs_grid[b->qs[j] & 511]);
        sg[j] = kl_iq_ksigns[b->qs[j] >> 9];
    }
    memcpy(s, b->scales, 8);
}
static void entries_s(const void *block, uint16_t *m, uint8_t *sg, uint8_t *s)
{
    const kl_block_iq2_s *b = block;
    for (int j = 0; j < 32; j++)
        m[j] = grid_mags(kl_iq2s_grid[b->qs[j] | (b->qh[j / 4] >> (2 * (j % 4)) & 3) << 8]);
    memcpy(sg, b->qs + 32, 32);
    memcpy(s, b->scales, 8);
}

/* Swaps the w-bit blocks of a selected by m (shifted up by w) with those of b that m selects:
 * one step of a transpose of 2 w by 2 w blocks. */
static void swap_blocks(uint64_t *a, uint64_t *b, int w, uint64_t m)
{
    uint64_t t = (*a >> w ^ *b) & m;
    *b ^= t, *a ^= t << w;
}

/* pl[v], bit l: bit v of sg[l] (l 0..63, v 0..7). Each 8 lanes' qword is an 8x8 bit matrix
 * (byte: lane, bit: v) transposed in place by swapping its off-diagonal 1-, 2- and 4-bit
 * blocks; the 8x8 byte matrix of the eight results (byte v of qword k) is then transposed the
 * same way, across qwords. */
static void sign_planes(const uint8_t sg[64], uint64_t pl[8])
{
    for (int k = 0; k < 8; k++) {
        uint64_t x, t;
        memcpy(&x, sg + 8 * k, 8);
        t = (x ^ x >> 7) & 0x00AA00AA00AA00AAull, x ^= t ^ t << 7;
        t = (x ^ x >> 14) & 0x0000CCCC0000CCCCull, x ^= t ^ t << 14;
        t = (x ^ x >> 28) & 0x00000000F0F0F0F0ull, x ^= t ^ t << 28;
        pl[k] = x;
    }
    for (int k = 0; k < 8; k += 2)
        swap_blocks(&pl[k], &pl[k + 1], 8, 0x00FF00FF00FF00FFull);
    for (int k = 0; k < 8; k += k % 2 ? 3 : 1) /* 0, 1, 4, 5 */
        swap_blocks(&pl[k], &pl[k + 2], 16, 0x0000FFFF0000FFFFull);
    for (int k = 0; k < 4; k++)
        swap_blocks(&pl[k], &pl[k + 4], 32, 0x00000000FFFFFFFFull);
}

/* An odd block's lanes: the even 2-bit fields of an entry's magnitudes (weights 0, 2, 4, 6)
 * packed into a byte, and the even bits of its sign byte into 4 bits; the odd weights' after a
 * shift by one field. */
static uint8_t even_fields2(unsigned x)
{
    x &= 0x3333;
    x = (x | x >> 2) & 0x0F0F;
    return (uint8_t)(x | x >> 4);
}
static uint8_t even_bits(unsigned x)
{
    x &= 0x55;
    x = (x | x >> 1) & 0x33;
    return (uint8_t)((x | x >> 2) & 0x0F);
}

/* The record of blocks b[0..n) (n 1 or 2) from their entries. */
static void pack_t8p(const iq2_entries *e, const uint8_t *const *b, int n, uint8_t *o)
{
    int nv = 4 * n;
    uint8_t sg[64];
    uint64_t pl[8];
    if (n == 2) {
        for (int l = 0; l < 64; l++) {
            o[l] = (uint8_t)e->m[l], o[64 + l] = (uint8_t)(e->m[l] >> 8);
            sg[l] = e->sg[l];
        }
    } else { /* lane j the entry's even weights, lane 32 + j its odd ones */
        for (int j = 0; j < 32; j++) {
            o[j] = even_fields2(e->m[j]), o[32 + j] = even_fields2(e->m[j] >> 2u);
            sg[j] = even_bits(e->sg[j]), sg[32 + j] = even_bits(e->sg[j] >> 1u);
        }
    }
    sign_planes(sg, pl);
    memcpy(o + 16 * nv, pl, 8 * (size_t)nv);
    memcpy(o + 24 * nv, e->s, 8 * (size_t)n);
    for (int h = 0; h < n; h++)
        memcpy(o + 24 * nv + 8 * n + 2 * h, b[h], 2); /* d leads each of the three blocks */
}

void kl_pack_iq2_t8p(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                     void *dst)
{
    iq2_entries_fn entries = t == KL_IQ2_XXS  ? entries_xxs
                             : t == KL_IQ2_XS ? entries_xs
                                              : entries_s;
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
            iq2_entries e;
            const uint8_t *b[2];
            for (int h = 0; h < n; h++) {
                b[h] = (const uint8_t *)W + (size_t)r * stride + (size_t)(j + h) * bb;
                entries(b[h], e.m + 32 * h, e.sg + 32 * h, e.s + 8 * h);
            }
            pack_t8p(&e, b, n, o + (size_t)j * KL_IQ2P_REC);
        }
    }
}
