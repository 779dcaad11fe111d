/* kernels/pack_iq1.c: IQ1_S and IQ1_M repacked at load into 2-bit codes (the packed forms the
 * AVX-512 VBMI table runs, x86/avx512vbmi_iq1.c, and the AVX2 one, x86/avx2_iq1_packed.c, which
 * has its own IQ1_M record), and
 * the scalar dots over those forms, which define them. Plain C built without ISA flags, as the
 * other packers.
 *
 * Why: an IQ1_S weight is d (2 s + 1) (g + shift / 8), g in {-1, 0, 1} from an 11-bit index
 * into the 2048-entry grid per 8 weights. Generation reads the weights once per token, and
 * the file's form costs 32 grid lookups a block (scalar loads and inserts, ~130 instructions:
 * 6.3 ns a block, 7.9 GB/s at one thread, far from the 42 GB/s one thread reads). With each
 * g + 1 as a 2-bit code, a block is 3 vector instructions per 64 weights (a GF2 affine, a byte
 * lookup with the scale folded in, the dot), for 70 bytes instead of 50. (5 codes a byte in
 * base 3, 58 bytes, needs two 128-entry lookups and a merge per 64 codes before the scale:
 * twice the instructions for 17% fewer bytes, and the kernel is far from the bandwidth.)
 * IQ1_M is the same grid with a shift sign per 8 weights and a 3-bit scale per 16: the same
 * code bytes, the signs and scales beside them, 76 bytes for 56.
 *
 * Code bytes (both types): byte i, bits 2p, 2p + 1: g + bias of element 64 p + i (p 0..3), so
 * that one 64-byte register holds element i of every 64-element plane; bias 1 for IQ1_S
 * (codes 0..2), 2 for IQ1_M (codes 1..3: no code is 0, which its kernel's lookup needs).
 *
 * Layouts: 16-row panels of the rows one after another (rows past the matrix end zero), each
 * row its blocks' records in order. IQ1_S, 70 bytes:
 *   q   [64] the code bytes
 *   d   fp16, the file's
 *   s   [4] nibble k (little-endian): the file's qh[k] >> 12, the scale s of elements
 *            32 k..32 k + 31 in bits 0-2 and the shift's sign (1: -1/8) in bit 3
 * IQ1_M, 76 bytes:
 *   q   [64] the code bytes
 *   sh  uint32 at 64: bit G the shift's sign of elements 8 G..8 G + 7 (1: -1/8)
 *   sd  uint64 at 68: bits 3 t..3 t + 2 the scale s of elements 16 t..16 t + 15, bits 48-63
 *            the fp16 d (the file spreads it over its scales' top nibbles)
 * IQ1_M, the AVX2 table's, 84 bytes (its tile picks a table row per chunk of 32 elements from
 * one word, where the form above needs scalar shifts and masks of its packed fields):
 *   q   [64] the code bytes, bias 1 (codes 0..2)
 *   ix  uint16 [8] at 64: chunk c (elements 32 c..32 c + 31): 4 (n | x << 4), n bit l set where
 *            elements 32 c + 8 l..+7 shift by +1/8 (the sign clear), x the scales s of its
 *            sixteens 2 c (bits 0-2) and 2 c + 1 (bits 3-5); 8 times it is the byte offset of
 *            the chunk's row in the kernel's table
 *   d   float at 80: the file's d / 8
 * The dot's integer per block is the file's exactly (kernels/ref_iq1.c, 8 g +- 1 with d / 8). */
#include <string.h>

#include "kernels/iq.h"

/* The code bytes of a block's 32 grid indices (8 elements each). */
static void pack_codes(const uint16_t ix[KL_QKK / 8], int bias, uint8_t *o)
{
    memset(o, 0, 64);
    for (int e = 0; e < KL_QKK; e++) {
        int v = (int8_t)(kl_iq1s_grid[ix[e / 8]] >> (8 * (e % 8)) & 0xFF);
        o[e % 64] |= (uint8_t)((v + bias) << (2 * (e / 64)));
    }
}

/* Element e's code in a record's code bytes. */
static int code_of(const uint8_t *q, int e)
{
    return q[e % 64] >> (2 * (e / 64)) & 3;
}

/* One record's integer dot with a Q8_K block's quants a, summed per 16 and times the scale as
 * kernels/ref_iq.c sums it; *d: the record's d / 8 (0.125f times its fp16 d, as that reference
 * takes it). */
typedef int32_t (*block_dot_fn)(const uint8_t *rec, const int8_t *a, float *d);

/* The reference dot over a packed form of records of rec bytes: each block's integer and the
 * file reference's float steps, so its results are that reference's bits. w_stride: a panel's
 * bytes. */
static void ref_packed(const kl_gemm *g, int64_t r0, int64_t r1, size_t rec, block_dot_fn dot)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    for (int64_t r = r0; r < r1; r++)
        for (int b = 0; b < g->B; b++) {
            const uint8_t *w =
                g->W + (size_t)(r / KL_PR) * g->w_stride + (size_t)(r % KL_PR) * (size_t)nblk * rec;
            const uint8_t *a = g->act + (size_t)b * g->a_stride;
            const float *ad = kl_act_q8_k_d(a, n);
            float sum = 0.0f;
            for (int64_t j = 0; j < nblk; j++, w += rec) {
                float d;
                int32_t isum = dot(w, (const int8_t *)a + j * KL_QKK, &d);
                sum += (float)isum * (d * ad[j]);
            }
            g->y[b * g->ldy + r] = sum;
        }
}

/* IQ1_S */

size_t kl_pack_iq1_s_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return kl_pack_records_bytes(rows, cols, KL_IQ1P_REC);
}

static void pack_block_s(const void *block, uint8_t *o)
{
    const kl_block_iq1_s *b = block;
    uint16_t ix[KL_QKK / 8];
    for (int G = 0; G < KL_QKK / 8; G++)
        ix[G] = (uint16_t)(b->qs[G] | (b->qh[G / 4] >> (3 * (G % 4)) & 7) << 8);
    pack_codes(ix, 1, o);
    memcpy(o + KL_IQ1P_D, &b->d, 2);
    uint32_t s = 0;
    for (int k = 0; k < 8; k++)
        s |= (uint32_t)(b->qh[k] >> 12) << (4 * k);
    memcpy(o + KL_IQ1P_S, &s, 4);
}

void kl_pack_iq1_s(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst)
{
    kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ1P_REC, pack_block_s);
}

static int32_t dot_s(const uint8_t *w, const int8_t *a, float *d)
{
    uint32_t s;
    uint16_t dh;
    memcpy(&dh, w + KL_IQ1P_D, 2), memcpy(&s, w + KL_IQ1P_S, 4);
    *d = 0.125f * kl_fp16_to_fp32(dh);
    int32_t isum = 0;
    for (int t = 0; t < 16; t++) {
        int nib = s >> (4 * (t / 2)) & 0xF, shift = nib & 8 ? -1 : 1;
        int32_t s16 = 0;
        for (int e = 16 * t; e < 16 * t + 16; e++)
            s16 += (8 * (code_of(w, e) - 1) + shift) * a[e];
        isum += (2 * (nib & 7) + 1) * s16;
    }
    return isum;
}

void kl_ref_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    ref_packed(g, r0, r1, KL_IQ1P_REC, dot_s);
}

/* IQ1_M */

size_t kl_pack_iq1_m_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return kl_pack_records_bytes(rows, cols, KL_IQ1MP_REC);
}

/* A block's grid indices, its shift signs (bit G: elements 8 G..8 G + 7, 1: -1/8) and its
 * scales s of the sixteens (the 3-bit fields, sc = 2 s + 1) */
static uint32_t fields_m(const kl_block_iq1_m *b, uint16_t ix[KL_QKK / 8], int s[16])
{
    uint32_t sh = 0;
    for (int G = 0; G < KL_QKK / 8; G++) {
        int hb = b->qh[G / 2] >> (4 * (G % 2)); /* index bits 8-10, the shift's sign in bit 3 */
        ix[G] = (uint16_t)(b->qs[G] | (hb & 7) << 8);
        sh |= (uint32_t)(hb >> 3 & 1) << G;
    }
    int16_t sc[16];
    kl_iq_scales_iq1_m(b, sc);
    for (int t = 0; t < 16; t++)
        s[t] = (sc[t] - 1) / 2;
    return sh;
}

static void pack_block_m(const void *block, uint8_t *o)
{
    const kl_block_iq1_m *b = block;
    uint16_t ix[KL_QKK / 8];
    int s[16];
    uint32_t sh = fields_m(b, ix, s);
    pack_codes(ix, 2, o);
    uint64_t sd = (uint64_t)kl_iq1_m_d(b) << 48;
    for (int t = 0; t < 16; t++)
        sd |= (uint64_t)s[t] << (3 * t);
    memcpy(o + KL_IQ1MP_SH, &sh, 4), memcpy(o + KL_IQ1MP_SD, &sd, 8);
}

void kl_pack_iq1_m(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst)
{
    kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ1MP_REC, pack_block_m);
}

static int32_t dot_m(const uint8_t *w, const int8_t *a, float *d)
{
    uint32_t sh;
    uint64_t sd;
    memcpy(&sh, w + KL_IQ1MP_SH, 4), memcpy(&sd, w + KL_IQ1MP_SD, 8);
    *d = 0.125f * kl_fp16_to_fp32((uint16_t)(sd >> 48));
    int32_t isum = 0;
    for (int t = 0; t < 16; t++) {
        int32_t s16 = 0;
        for (int e = 16 * t; e < 16 * t + 16; e++)
            s16 += (8 * (code_of(w, e) - 2) + (sh >> (e / 8) & 1 ? -1 : 1)) * a[e];
        isum += (2 * (int)(sd >> (3 * t) & 7) + 1) * s16;
    }
    return isum;
}

void kl_ref_gemm_iq1_m_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    ref_packed(g, r0, r1, KL_IQ1MP_REC, dot_m);
}

/* IQ1_M, the AVX2 table's record (x86/avx2_iq1_packed.c) */

size_t kl_pack_iq1_m_avx2_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return kl_pack_records_bytes(rows, cols, KL_IQ1MA_REC);
}

static void pack_block_ma(const void *block, uint8_t *o)
{
    const kl_block_iq1_m *b = block;
    uint16_t ix[KL_QKK / 8];
    int s[16];
    uint32_t sh = ~fields_m(b, ix, s); /* bit G set: shift +1/8 */
    pack_codes(ix, 1, o);
    for (int c = 0; c < 8; c++) {
        uint16_t x = (uint16_t)(4 * ((sh >> (4 * c) & 0xF) | (s[2 * c] | s[2 * c + 1] << 3) << 4));
        memcpy(o + KL_IQ1MA_IX + 2 * c, &x, 2);
    }
    float d = 0.125f * kl_fp16_to_fp32(kl_iq1_m_d(b));
    memcpy(o + KL_IQ1MA_D, &d, 4);
}

void kl_pack_iq1_m_avx2(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                        int64_t p1, void *dst)
{
    kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ1MA_REC, pack_block_ma);
}

static int32_t dot_ma(const uint8_t *w, const int8_t *a, float *d)
{
    memcpy(d, w + KL_IQ1MA_D, 4);
    int32_t isum = 0;
    for (int t = 0; t < 16; t++) {
        uint16_t x;
        memcpy(&x, w + KL_IQ1MA_IX + 2 * (t / 2), 2);
        int s = x >> (6 + 3 * (t % 2)) & 7;
        int32_t s16 = 0;
        for (int e = 16 * t; e < 16 * t + 16; e++)
            s16 += (8 * (code_of(w, e) - 1) + (x >> (2 + e / 8 % 4) & 1 ? 1 : -1)) * a[e];
        isum += (2 * s + 1) * s16;
    }
    return isum;
}

void kl_ref_gemm_iq1_m_avx2_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    ref_packed(g, r0, r1, KL_IQ1MA_REC, dot_ma);
}
