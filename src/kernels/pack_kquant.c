/* kernels/pack_kquant.c: packs K-quant matrices (Q2_K..Q6_K, and IQ4_XS, IQ3_XXS, IQ3_S in
 * Q4_K's shape) into the panels of 16 rows that pack_kquant.h lays out, at load. Plain C built
 * without ISA flags: the AVX2 and AVX-512 tables share these packers and the bytes they write. */
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/pack_kquant.h"

/* An IQ4_XS block in kl_ksb's shape: u the 4-bit index into kl_iq4nl_values (sub-block ib's
 * 16 bytes: low nibbles elements 32ib + j, high 32ib + 16 + j), sc its ls - 32 for both
 * sixteens, no min. */
static void iq4_xs_ksb(const kl_block_iq4_xs *b, kl_ksb *o)
{
    for (int e = 0; e < KL_QKK; e++) {
        int ib = e / 32, c = e % 32;
        o->u[e] = (uint8_t)((b->qs[16 * ib + c % 16] >> (c < 16 ? 0 : 4)) & 0xF);
    }
    for (int t = 0; t < 16; t++)
        o->sc[t] = (int16_t)kl_iq4_xs_scale(b, t / 2), o->m[t] = 0;
    o->d = b->d, o->dmin = 0;
}

/* IQ3_XXS's u by nibble: 31 + g / 2, g = +-{4, 12, 20, 28, 36, 44, 52, 62} (bit 3: -) */
const uint8_t kl_iq3p_xxs_u[16] = {33, 37, 41, 45, 49, 53, 57, 62, 29, 25, 21, 17, 13, 9, 5, 0};

/* Writes row r of an IQ3 record (pack_kquant.h) from a block, decoded by the reference's
 * decoder (so the packed form holds its integers): the nibbles n of each g = 2 u - Z (IQ3_XXS:
 * u = kl_iq3p_xxs_u[n], n = g's rank | its sign << 3; IQ3_S: n = u), the file's s, the f32 d.
 * Its own loop, not pack_row's: a model's load packs every block of it. */
static void pack_iq3_row(int K, const void *blk, int r, uint8_t *o)
{
    kl_iq_dec dec;
    if (K == IQ3X)
        kl_iq_decode_iq3_xxs(blk, &dec);
    else
        kl_iq_decode_iq3_s(blk, &dec);
    uint8_t n[KL_QKK];
    for (int e = 0; e < KL_QKK; e++) {
        int q = dec.q[e], g = q < 0 ? -q : q;
        n[e] = K == IQ3S ? (uint8_t)((q + 15) / 2)
                         : (uint8_t)((g == 62 ? 7 : (g - 4) / 8) | (q < 0 ? 8 : 0));
    }
    for (int s = 0; s < 8; s++) /* reg h: columns 32s + 4h + i low, 16 more high */
        for (int h = 0; h < 4; h++)
            for (int i = 0; i < 4; i++)
                o[off_lo(K, s) + (size_t)(h * REG + r * 4 + i)] =
                    (uint8_t)(n[32 * s + 4 * h + i] | n[32 * s + 16 + 4 * h + i] << 4);
    uint32_t s3 = 0;
    for (int s = 0; s < 8; s++)
        s3 |= (uint32_t)((dec.sc[2 * s] - 1) / 2) << (4 * s);
    uint8_t b[4] = {(uint8_t)s3, (uint8_t)(s3 >> 8), (uint8_t)(s3 >> 16), (uint8_t)(s3 >> 24)};
    memcpy(o + OFF_S3 + (size_t)r * 4, b, 4);
    memcpy(o + OFF_D + (size_t)r * 4, &dec.d, 4);
}

/* Writes one row's super-block v into record o as row r of the panel. */
static inline __attribute__((always_inline)) void pack_row(int K, const kl_ksb *v, int r,
                                                           uint8_t *o)
{
    /* element 32 s + 4 g + i: column group g (0..7) of sub-block s, column i in it; g inner, so
     * that the bits a column's byte gathers are one run of constant offsets */
    for (int s = 0; s < 8; s++)
        for (int i = 0; i < 4; i++)
            for (int g = 0; g < 8; g++) {
                int u = v->u[32 * s + 4 * g + i];
                uint8_t *b = o + off_lo(K, s) + (size_t)r * 4 + (size_t)i,
                        *bh = o + off_hi(K, s) + (size_t)r * 4 + (size_t)i;
                if (K == Q4 || K == Q5 || K == Q6 || K == IQ4X) /* reg g % 4, high for g >= 4 */
                    b[(g % 4) * REG] |= (uint8_t)((u & 0xF) << (g >= 4 ? 4 : 0));
                if (K == Q2 || K == Q3) b[(g / 4) * REG] |= (uint8_t)((u & 3) << (2 * (g % 4)));
                if (K == Q5) *bh |= (uint8_t)((u >> 4) << g);
                if (K == Q3) *bh |= (uint8_t)((u >> 2) << g);
                if (K == Q6) bh[(g / 4) * REG] |= (uint8_t)((u >> 4) << (2 * (g % 4)));
                /* Q3S: u_g whole in b(g % 4) at bit 3 (g / 4); u3, u7 split (the header) */
                if (K == Q3S && g % 4 != 3) b[(g % 4) * REG] |= (uint8_t)(u << (3 * (g / 4)));
                if (K == Q3S && g % 4 == 3) {
                    b[(g / 4) * REG] |= (uint8_t)((u & 3) << 6);
                    b[2 * REG] |= (uint8_t)((u >> 2) << (6 + g / 4));
                }
            }
    memcpy(o + OFF_D + (size_t)r * 2, &v->d, 2);
    if (K == IQ4X) { /* ls = sc + 32, 6 bits: the low 4 in sl, the high 2 in sh */
        uint32_t sl = 0;
        uint16_t sh = 0;
        for (int s = 0; s < 8; s++) {
            unsigned ls = (unsigned)(v->sc[2 * s] + 32);
            sl |= (uint32_t)(ls & 15) << (4 * s);
            sh = (uint16_t)(sh | (ls >> 4) << (2 * s));
        }
        uint8_t b[6] = {(uint8_t)sl,         (uint8_t)(sl >> 8), (uint8_t)(sl >> 16),
                        (uint8_t)(sl >> 24), (uint8_t)sh,        (uint8_t)(sh >> 8)};
        memcpy(o + OFF_SL + (size_t)r * 4, b, 4);
        memcpy(o + OFF_SH + (size_t)r * 2, b + 4, 2);
        return;
    }
    uint8_t *sm = o + OFF_SM;
    for (int s = 0; s < 8; s++) {
        uint8_t *p = sm + (size_t)(s * KL_PR + r) * 2;
        if (K == Q4 || K == Q5) {
            p[0] = (uint8_t)v->sc[2 * s];
            p[1] = (uint8_t)v->m[2 * s];
        } else if (K == Q2) {
            p[0] = (uint8_t)(v->sc[2 * s] | v->m[2 * s] << 4);
            p[1] = (uint8_t)(v->sc[2 * s + 1] | v->m[2 * s + 1] << 4);
        } else {
            p[0] = (uint8_t)(int8_t)v->sc[2 * s];
            p[1] = (uint8_t)(int8_t)v->sc[2 * s + 1];
        }
    }
    if (K == Q2 || K == Q4 || K == Q5) memcpy(o + OFF_DMIN + (size_t)r * 2, &v->dmin, 2);
}

static size_t pack_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    return (size_t)((rows + KL_PR - 1) / KL_PR) * (size_t)(cols / KL_QKK) * rec_bytes(kind_of(t));
}

/* Packs panels [p0, p1) of W (type t) in layout K. */
static inline __attribute__((always_inline)) void pack_as(int K, kl_dtype t, const void *W,
                                                          int64_t rows, int64_t cols, int64_t p0,
                                                          int64_t p1, void *dst)
{
    int64_t nsb = cols / KL_QKK;
    size_t stride = kl_dtype_row_bytes(t, cols), bb = kl_dtype_get(t)->block_bytes,
           rb = rec_bytes(K);
    kl_ksb v;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t j = 0; j < nsb; j++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)p * (size_t)nsb + (size_t)j) * rb;
            memset(o, 0, rb);
            for (int r = 0; r < KL_PR && p * KL_PR + r < rows; r++) {
                const uint8_t *blk = (const uint8_t *)W + (size_t)(p * KL_PR + r) * stride + j * bb;
                if (is_iq3(K)) {
                    pack_iq3_row(K, blk, r, o);
                    continue;
                }
                if (K == IQ4X)
                    iq4_xs_ksb((const kl_block_iq4_xs *)blk, &v);
                else
                    kl_ksb_unpack(t, blk, &v);
                pack_row(K, &v, r, o);
            }
        }
}

/* pack_as with K a constant, one copy per kind, so that pack_row's tests of K fold away (its loop
 * over a block's elements had been most of a load's packing: the 1B IQ2 models' Q5_K token
 * matrix, packed as their output, took 0.8 s at one thread). */
#define PACK_KIND(K)                                                                               \
    static void pack_##K(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,        \
                         int64_t p1, void *dst)                                                    \
    {                                                                                              \
        pack_as(K, t, W, rows, cols, p0, p1, dst);                                                 \
    }
/* clang-format off: a kind a line */
PACK_KIND(Q2)
PACK_KIND(Q3)
PACK_KIND(Q4)
PACK_KIND(Q5)
PACK_KIND(Q6)
PACK_KIND(IQ4X)
PACK_KIND(Q3S)
PACK_KIND(IQ3X)
PACK_KIND(IQ3S)
/* clang-format on */
static const kl_pack_fn by_kind[] = {
    [Q2] = pack_Q2,     [Q3] = pack_Q3,   [Q4] = pack_Q4,     [Q5] = pack_Q5,    [Q6] = pack_Q6,
    [IQ4X] = pack_IQ4X, [Q3S] = pack_Q3S, [IQ3X] = pack_IQ3X, [IQ3S] = pack_IQ3S};

static void pack(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst)
{
    by_kind[kind_of(t)](t, W, rows, cols, p0, p1, dst);
}

void kl_panel_types_kquant(kl_isa *isa)
{
    for (kl_dtype t = KL_Q2_K; t <= KL_Q6_K; t++) {
        isa->types[t].pack_bytes = pack_bytes;
        isa->types[t].pack = pack;
    }
}

void kl_panel_types_q3_k_avx2(kl_isa *isa)
{
    isa->types[KL_Q3_K].pack = pack_Q3S;
}

void kl_panel_types_iq4_xs(kl_isa *isa)
{
    isa->types[KL_IQ4_XS].pack_bytes = pack_bytes;
    isa->types[KL_IQ4_XS].pack = pack;
}

void kl_panel_types_iq3(kl_isa *isa)
{
    isa->types[KL_IQ3_XXS].pack_bytes = pack_bytes;
    isa->types[KL_IQ3_XXS].pack = pack;
    isa->types[KL_IQ3_S].pack_bytes = pack_bytes;
    isa->types[KL_IQ3_S].pack = pack;
}
