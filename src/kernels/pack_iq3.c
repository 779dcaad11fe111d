/* kernels/pack_iq3.c: IQ3_XXS and IQ3_S repacked at load with their signs where the AVX-512
 * VBMI plane dot takes them (x86/avx512vbmi_iq3.c, the packed form that table runs). Plain C
 * built without ISA flags, as the other packers.
 *
 * Why: the plane dot over the file's blocks is bound by its byte shuffles (two of Zen 5's
 * four vector pipes), and the signs took 6-7 of ~15 a block: IQ3_XXS's 7-bit fields spread,
 * multishifted and given their parity bit by a GF(2) affine, then a bit shuffle into a mask
 * per plane, and a masked subtract of each activation plane. Here an entry's 4 signs are
 * bits of one byte that a ternary logic op puts beside the entry's code fields, and one
 * vpermb of those bytes gives each plane's weights with their signs (x86/avx512vbmi_iq3.c).
 * The same 256 bits, and the factor d as the float the dot multiplies (4 bytes, not the file's
 * fp16: a broadcast load instead of a conversion, two scalar multiplies and a shuffle a block):
 * IQ3_S's record is 112 bytes (the file's 110), IQ3_XXS's 104 (98: its 7-bit sign fields
 * become 8).
 *
 * Record (the two types share it; rows one after another in 16-row panels, pack_records.c):
 *   q   [64] at 0:   the file's grid indices (IQ3_S: their low 8 bits), entry e = elements
 *                    4 e .. 4 e + 3
 *   sg  [32] at 64:  byte i: the signs (1: negative) of elements 4 i + j at bit KL_IQ3P_SGBIT(j)
 *                    = 4, 0, 5, 1 (j = 0..3) and of elements 4 (32 + i) + j at that + 2
 *   s   uint32 at 96: nibble ib, the 4-bit scale s of elements 32 ib .. 32 ib + 31
 *   d   float at 100: the file's fp16 d as a float, times 1/4 (IQ3_XXS; exact)
 *   qh  [8] at 104, IQ3_S only: the file's (bit k of qh[ib]: bit 8 of index 8 ib + k)
 * The dot's integer per block and its float steps are the file's: a record holds the file's
 * block exactly (unpack_block, which the tests run). */
#include <string.h>

#include "kernels/iq.h"

size_t kl_pack_iq3_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    return kl_pack_records_bytes(rows, cols, t == KL_IQ3_S ? KL_IQ3P_S_REC : KL_IQ3P_XXS_REC);
}

/* The record's sign bytes from the file's 32 sign bytes (byte b bit k: element 8 b + k). */
static void put_signs(const uint8_t sb[32], uint8_t *o)
{
    for (int i = 0; i < 32; i++) {
        uint8_t v = 0;
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++) {
                int el = 4 * (32 * h + i) + j;
                v |= (uint8_t)((sb[el / 8] >> (el % 8) & 1) << (KL_IQ3P_SGBIT(j) + 2 * h));
            }
        o[KL_IQ3P_SG + i] = v;
    }
}

static void pack_block_xxs(const void *block, uint8_t *o)
{
    const kl_block_iq3_xxs *b = block;
    uint8_t sb[32];
    uint32_t s = 0;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t aux;
        memcpy(&aux, b->qs + KL_QKK / 4 + 4 * ib, 4);
        for (int l = 0; l < 4; l++)
            sb[4 * ib + l] = kl_iq_ksigns[aux >> (7 * l) & 127];
        s |= (aux >> 28) << (4 * ib);
    }
    memcpy(o, b->qs, 64);
    put_signs(sb, o);
    float d = 0.25f * kl_fp16_to_fp32(b->d);
    memcpy(o + KL_IQ3P_S, &s, 4), memcpy(o + KL_IQ3P_D, &d, 4);
}

static void pack_block_s(const void *block, uint8_t *o)
{
    const kl_block_iq3_s *b = block;
    memcpy(o, b->qs, 64);
    put_signs(b->signs, o);
    float d = kl_fp16_to_fp32(b->d);
    memcpy(o + KL_IQ3P_S, b->scales, 4), memcpy(o + KL_IQ3P_D, &d, 4);
    memcpy(o + KL_IQ3P_QH, b->qh, 8);
}

void kl_pack_iq3(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                 void *dst)
{
    if (t == KL_IQ3_S)
        kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ3P_S_REC, pack_block_s);
    else
        kl_pack_records(t, W, rows, cols, p0, p1, dst, KL_IQ3P_XXS_REC, pack_block_xxs);
}

/* Sign byte b of a record (the file's IQ3_S byte; IQ3_XXS's 7-bit field and its parity). */
static uint8_t sign_byte(const uint8_t *rec, int b)
{
    uint8_t v = 0;
    for (int k = 0; k < 8; k++) {
        int el = 8 * b + k, e = el / 4, j = el % 4;
        v |= (uint8_t)((rec[KL_IQ3P_SG + e % 32] >> (KL_IQ3P_SGBIT(j) + 2 * (e / 32)) & 1) << k);
    }
    return v;
}

/* A record back to the file's block (t's). */
void kl_unpack_iq3_block(kl_dtype t, const uint8_t *rec, void *block)
{
    uint32_t s;
    float d;
    memcpy(&s, rec + KL_IQ3P_S, 4), memcpy(&d, rec + KL_IQ3P_D, 4);
    if (t == KL_IQ3_S) {
        kl_block_iq3_s *b = block;
        memcpy(b->qs, rec, 64), memcpy(b->qh, rec + KL_IQ3P_QH, 8);
        for (int k = 0; k < 32; k++)
            b->signs[k] = sign_byte(rec, k);
        memcpy(b->scales, &s, 4), b->d = kl_fp32_to_fp16(d);
        return;
    }
    kl_block_iq3_xxs *b = block;
    memcpy(b->qs, rec, 64);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t aux = (s >> (4 * ib) & 15) << 28;
        for (int l = 0; l < 4; l++)
            aux |= (uint32_t)(sign_byte(rec, 4 * ib + l) & 127) << (7 * l);
        memcpy(b->qs + KL_QKK / 4 + 4 * ib, &aux, 4);
    }
    b->d = kl_fp32_to_fp16(4 * d);
}
