/* kernels/pack.c: the panel packers of F32, F16, Q8_0, Q4_0 (and IQ4_NL), Q4_1, Q5_0 and
 * Q5_1: weights rearranged at load into panels of 16 rows, so that the same columns of 16 rows
 * sit together and a result vector is 16 consecutive outputs of one activation row (no
 * horizontal sums; a weight register serves every activation row of a tile). Plain C compiled
 * with the baseline flags: the AVX2 and AVX-512 tables both use these (an AVX2 CPU must not
 * run code built with -mavx512*), and their gemm_packed read the same bytes: AVX-512 a group
 * of 16 rows x 4 bytes as one 64-byte register, AVX2 as two 32-byte halves (rows 0-7, 8-15).
 *
 * Panel layouts (rows past the matrix end are zero, their scales zero):
 *   Q8_0, per block of 32 columns (544 bytes): 8 groups of 4 columns, each 16 rows x 4 bytes
 *     (w + 128, unsigned, for VNNI's unsigned x signed dot), then the 16 rows' fp16 scales.
 *   Q4_0, per block (288 bytes): 4 groups, each 16 rows x 4 bytes of the block's own qs bytes
 *     for columns 4g..4g+3 (low nibbles: those columns, high: columns 16 + 4g..), then scales.
 *     IQ4_NL (the same block layout) packs the same way.
 *   Q4_1 / Q5_0 / Q5_1, per block: Q4_0's 4 groups of nibbles; (Q5) 1 group [16 rows][4
 *     bytes] where bit g of byte i is bit 4 of column 4g + i (the fifth bit); d [16] fp16;
 *     (Q4_1 Q5_1) m [16] fp16.
 *   F32 / F16: per column, the 16 rows' values (64 / 32 bytes). */
#include <string.h>

#include "kernels/impl.h"

#define REG     (KL_PR * 4) /* one group: 16 rows x 4 bytes */
#define Q8_PBLK (8 * REG + KL_PR * 2)
#define Q4_PBLK (4 * REG + KL_PR * 2)

static int64_t panels(int64_t rows)
{
    return (rows + KL_PR - 1) / KL_PR;
}

/* Each packer writes panels [p0, p1). */
static void pack_q8_0(const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1, void *dst)
{
    int64_t nblk = cols / KL_QK;
    size_t stride = kl_dtype_row_bytes(KL_Q8_0, cols);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t j = 0; j < nblk; j++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)p * (size_t)nblk + (size_t)j) * Q8_PBLK;
            memset(o, 0x80, 8 * REG); /* padding rows: w = 0 */
            memset(o + 8 * REG, 0, KL_PR * 2);
            for (int r = 0; r < KL_PR && p * KL_PR + r < rows; r++) {
                const kl_block_q8_0 *b =
                    (const kl_block_q8_0 *)((const uint8_t *)W + (size_t)(p * KL_PR + r) * stride) +
                    j;
                for (int c = 0; c < KL_QK; c++)
                    o[(c / 4) * REG + r * 4 + c % 4] = (uint8_t)b->qs[c] ^ 0x80;
                memcpy(o + 8 * REG + r * 2, &b->d, 2);
            }
        }
}

static void pack_q4_0(const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1, void *dst)
{
    int64_t nblk = cols / KL_QK;
    size_t stride = kl_dtype_row_bytes(KL_Q4_0, cols);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t j = 0; j < nblk; j++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)p * (size_t)nblk + (size_t)j) * Q4_PBLK;
            memset(o, 0x88, 4 * REG); /* padding rows: q = 8, w = 0 */
            memset(o + 4 * REG, 0, KL_PR * 2);
            for (int r = 0; r < KL_PR && p * KL_PR + r < rows; r++) {
                const kl_block_q4_0 *b =
                    (const kl_block_q4_0 *)((const uint8_t *)W + (size_t)(p * KL_PR + r) * stride) +
                    j;
                for (int c = 0; c < KL_QK / 2; c++)
                    o[(c / 4) * REG + r * 4 + c % 4] = b->qs[c];
                memcpy(o + 4 * REG + r * 2, &b->d, 2);
            }
        }
}

/* F32 and F16 (es bytes an element): column c of the panel's 16 rows is element c * 16 + r. */
static inline __attribute__((always_inline)) void
pack_plain(size_t es, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1, void *dst)
{
    for (int64_t p = p0; p < p1; p++) {
        uint8_t *o = (uint8_t *)dst + (size_t)p * (size_t)cols * KL_PR * es;
        memset(o, 0, es * (size_t)cols * KL_PR);
        for (int r = 0; r < KL_PR && p * KL_PR + r < rows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)(p * KL_PR + r) * (size_t)cols * es;
            for (int64_t c = 0; c < cols; c++)
                memcpy(o + ((size_t)c * KL_PR + (size_t)r) * es, w + (size_t)c * es, es);
        }
    }
}

/* Q4_1, Q5_0, Q5_1: whether the record has the fifth-bit group, the min, and its size. */
static bool has_hb(kl_dtype t)
{
    return t != KL_Q4_1;
}
static bool has_m(kl_dtype t)
{
    return t != KL_Q5_0;
}
static size_t legacy_rec(kl_dtype t)
{
    return (size_t)(has_hb(t) ? 5 : 4) * REG + KL_PR * 2 * (has_m(t) ? 2 : 1);
}

static void pack_legacy(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                        int64_t p1, void *dst)
{
    int64_t nblk = cols / KL_QK;
    size_t stride = kl_dtype_row_bytes(t, cols), bb = kl_dtype_get(t)->block_bytes,
           rb = legacy_rec(t), off_d = (size_t)(has_hb(t) ? 5 : 4) * REG;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t j = 0; j < nblk; j++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)p * (size_t)nblk + (size_t)j) * rb;
            memset(o, 0, rb);
            for (int r = 0; r < KL_PR && p * KL_PR + r < rows; r++) {
                const uint8_t *blk = (const uint8_t *)W + (size_t)(p * KL_PR + r) * stride + j * bb;
                /* d (and m) lead every block; qh follows them; qs ends it */
                const uint8_t *qs = blk + bb - KL_QK / 2;
                for (int c = 0; c < KL_QK / 2; c++) /* byte c: columns c and c + 16 */
                    o[(size_t)(c / 4) * REG + (size_t)r * 4 + c % 4] = qs[c];
                if (has_hb(t)) {
                    uint32_t qh;
                    memcpy(&qh, blk + (has_m(t) ? 4 : 2), 4);
                    for (int c = 0; c < KL_QK; c++)
                        o[4 * REG + (size_t)r * 4 + c % 4] |= (uint8_t)(((qh >> c) & 1) << (c / 4));
                }
                memcpy(o + off_d + (size_t)r * 2, blk, 2);
                if (has_m(t)) memcpy(o + off_d + KL_PR * 2 + (size_t)r * 2, blk + 2, 2);
            }
        }
}

/* A panel's record: the bytes of 16 rows of one block (F32 and F16: of one column). */
static size_t rec_bytes(kl_dtype t)
{
    switch (t) {
    case KL_F32:
        return KL_PR * 4;
    case KL_F16:
        return KL_PR * 2;
    case KL_Q8_0:
        return Q8_PBLK;
    case KL_Q4_0:
    case KL_IQ4_NL:
        return Q4_PBLK;
    default:
        return legacy_rec(t);
    }
}

static size_t pack_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    int64_t recs = t == KL_F32 || t == KL_F16 ? cols : cols / KL_QK;
    return (size_t)panels(rows) * (size_t)recs * rec_bytes(t);
}

static void pack(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst)
{
    switch (t) {
    case KL_F32:
        pack_plain(4, W, rows, cols, p0, p1, dst);
        break;
    case KL_F16:
        pack_plain(2, W, rows, cols, p0, p1, dst);
        break;
    case KL_Q8_0:
        pack_q8_0(W, rows, cols, p0, p1, dst);
        break;
    case KL_Q4_0:
    case KL_IQ4_NL: /* the same block layout */
        pack_q4_0(W, rows, cols, p0, p1, dst);
        break;
    default:
        pack_legacy(t, W, rows, cols, p0, p1, dst);
    }
}

void kl_panel_types(kl_isa *isa)
{
    static const kl_dtype types[] = {KL_F32,    KL_F16,  KL_Q8_0, KL_Q4_0,
                                     KL_IQ4_NL, KL_Q4_1, KL_Q5_0, KL_Q5_1};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        isa->types[types[i]].pack_bytes = pack_bytes;
        isa->types[types[i]].pack = pack;
    }
}
