/* kernels/pack_kquant.h: the packed K-quant panel layout (Q2_K Q3_K Q4_K Q5_K Q6_K, and
 * IQ4_XS, IQ3_XXS, IQ3_S in Q4_K's shape), one for every ISA: written by pack_kquant.c (plain
 * C, so a CPU without AVX-512 can pack), read by x86/avx512_packed_kquant.c (one 512-bit
 * register: 16 rows x 4 columns) and x86/avx2_packed_kquant.c (the same register as two
 * 256-bit halves, rows 0-7 and 8-15). Included by those three files only.
 *
 * Every K-quant is read as value = S_t * u - M_t, u unsigned (Q3_K q + 4, Q6_K q + 32), per
 * group t of 16 columns (Q4_K/Q5_K: of 32) with S_t = d * sc_t. IQ4_XS (IQ4X below) is
 * d * sc_t * kl_iq4nl_values[u], u its 4-bit index, sc_t = ls - 32 per 32 columns: Q4_K's
 * nibbles, no dmin, and the file's own 6-bit ls per row (its header is 128 bytes, so the record
 * is the file's 2176 bytes per 16 rows: streamed at one activation row, 8% fewer bytes than the
 * K-quants' header of 320 gave, 2368).
 *
 * IQ3_XXS and IQ3_S (IQ3 below; the AVX2 table only): each weight is (2 s + 1) g d, s a 4-bit
 * scale per 32, g a signed grid value (IQ3_XXS: +-{4, 12, .., 52, 62}, IQ3_S: +-{1, 3, .., 15})
 * and d the block's float factor (kl_iq_dec's d: IQ3_XXS's fp16 d / 4). g takes 16 values, so
 * g = 2 u - Z with u unsigned (IQ3_XXS: kl_iq3p_xxs_u[n] of a nibble n, Z 62, u <= 62; IQ3_S: u
 * the nibble itself, Z 15), and the block's integer dot is Q6_K's shape, exact:
 *   sum_s (4 s + 2) dot_s(u, a) - Z (2 s + 1) (bs_2s + bs_2s+1)
 * the file's integer sum; the float d is kept as f32, so the reference's float steps give the
 * reference's bits. 2176 bytes per 16 rows: 1.24x IQ3_S's file bytes (110 a block), 1.39x
 * IQ3_XXS's (98).
 *
 * Panel record per super-block (16 rows; absent rows zero, so are their scales), read front
 * to back: a header, then each sub-block's bits together, so the kernel's loads form one
 * sequential stream (with the bit planes in regions of their own, Q3_K, Q5_K and Q6_K read
 * three interleaved streams per record, and streamed 3-4x slower than from cache):
 *   d     all             [16] fp16
 *   dmin  Q2_K Q4_K Q5_K  [16] fp16 (zero for the others: the header stays 64-byte aligned)
 *   sm    Q2_K..Q6_K      [8 sub-blocks][16 rows][2 bytes]: Q4_K/Q5_K (sc_s, m_s); Q2_K the
 *                         groups 2s, 2s+1 (sc | m << 4 each); Q3_K/Q6_K signed sc_2s, sc_2s+1
 * or, IQ4_XS, in place of dmin and sm (the file's scales_l and scales_h, row by row):
 *   sl    IQ4_XS          [16 rows][4 bytes]: bits 4s..4s+3 (little-endian) ls_s & 15
 *   sh    IQ4_XS          [16 rows][2 bytes]: bits 2s, 2s+1 ls_s >> 4
 * or, IQ3, in place of d and all that follows it:
 *   d3    IQ3             [16] f32
 *   s3    IQ3             [16 rows][4 bytes]: bits 4s..4s+3 (little-endian) the file's s
 * then per sub-block s of 32 columns:
 *   q4  Q4_K Q5_K Q6_K  [4 regs][16 rows][4 bytes]: low nibbles columns 32s + 4h + i, high
 *       IQ4_XS IQ3      nibbles columns 32s + 16 + 4h + i (h < 4)
 *   q2  Q2_K Q3_K       [2 regs][16][4]: bits 2k of reg h: columns 32s + 4(4h + k) + i
 *   hb  Q5_K Q3_K       [16][4]: bit g: the quant's next bit of columns 32s + 4g + i
 *   h2  Q6_K            [2][16][4]: bits 2k of reg h: bits 4-5 of columns 32s + 4(4h+k) + i
 *
 * Q3S is Q3_K as the AVX2 table packs it (its own packed id, kl_pack_id): the header of Q3_K,
 * the same 3 registers a sub-block, but each byte (row, column i) of registers b0 b1 b2 holds
 * whole quants where one vpand or a shift and a vpand gives them (x86/avx2_packed_kquant.c),
 * u_g the quant of columns 32s + 4g + i:
 *   b0: u0 bits 0-2, u4 bits 3-5, u3 & 3 bits 6-7
 *   b1: u1 bits 0-2, u5 bits 3-5, u7 & 3 bits 6-7
 *   b2: u2 bits 0-2, u6 bits 3-5, u3 >> 2 bit 6, u7 >> 2 bit 7 */
#ifndef KILN_KERNELS_PACK_KQUANT_H
#define KILN_KERNELS_PACK_KQUANT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/impl.h"

#define REG (KL_PR * 4)

enum { Q2, Q3, Q4, Q5, Q6, IQ4X, Q3S, IQ3X, IQ3S };

static inline int kind_of(kl_dtype t)
{
    switch (t) {
    case KL_Q2_K:
        return Q2;
    case KL_Q3_K:
        return Q3;
    case KL_Q4_K:
        return Q4;
    case KL_Q5_K:
        return Q5;
    case KL_IQ4_XS:
        return IQ4X;
    case KL_IQ3_XXS:
        return IQ3X;
    case KL_IQ3_S:
        return IQ3S;
    default:
        return Q6;
    }
}

/* Byte offsets of a record's parts, and its size. */
#define OFF_D    0
#define OFF_DMIN (KL_PR * 2)
#define OFF_SM   (KL_PR * 4)
#define OFF_SL   (KL_PR * 2) /* IQ4_XS */
#define OFF_SH   (KL_PR * 6)
#define OFF_S3   (KL_PR * 4) /* IQ3 */

static inline __attribute__((always_inline)) bool is_iq3(int K)
{
    return K == IQ3X || K == IQ3S;
}
/* IQ3: u of IQ3_XXS's nibbles (bits 0-2 the grid value's rank, bit 3 its sign: 31 +- g / 2),
 * and Z: g = 2 u - Z (pack_kquant.c) */
extern const uint8_t kl_iq3p_xxs_u[16];
static inline __attribute__((always_inline)) int iq3_zero(int K)
{
    return K == IQ3X ? 62 : 15;
}

/* Where the sub-blocks start: after the header. */
static inline __attribute__((always_inline)) size_t off_sub(int K)
{
    return K == IQ4X || is_iq3(K) ? KL_PR * 8 : OFF_SM + 8 * KL_PR * 2;
}

/* Registers of one sub-block: its low bits, then its high bits. */
static inline __attribute__((always_inline)) int low_regs(int K)
{
    return K == Q2 || K == Q3 ? 2 : K == Q3S ? 3 : 4;
}
static inline __attribute__((always_inline)) int sub_regs(int K)
{
    return low_regs(K) + (K == Q6 ? 2 : K == Q5 || K == Q3 ? 1 : 0);
}
static inline __attribute__((always_inline)) size_t off_lo(int K, int s)
{
    return off_sub(K) + (size_t)(s * sub_regs(K)) * REG;
}
static inline __attribute__((always_inline)) size_t off_hi(int K, int s)
{
    return off_lo(K, s) + (size_t)low_regs(K) * REG;
}
static inline __attribute__((always_inline)) size_t rec_bytes(int K)
{
    return off_lo(K, 8);
}
#endif
