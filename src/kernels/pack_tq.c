/* kernels/pack_tq.c: TQ1_0 repacked at load into TQ2_0's blocks (the packed form the AVX2 and
 * AVX-512 tables run with their TQ2_0 kernels), and the scalar dot over that form. Plain C built
 * without ISA flags, as the other packers.
 *
 * Why: generation reads the weights once per token, and TQ1_0's 5 trits a byte cost a chain of
 * byte multiplies and two dots per chunk to take apart (13 GB/s of 54-byte blocks at one
 * thread), where TQ2_0's 2-bit fields are a shift and an and (~28 GB/s of 66-byte blocks): 22%
 * more bytes, 1.7x the weights a second. Both types hold q + 1 (0..2) per weight and one fp16 d
 * per 256, and their kernels number a block's elements in the same 32-element chunks (ref_tq.c,
 * x86/avx2_tq.h), so the TQ2_0 kernel gives the TQ1_0 kernel's int32 lanes, and its bits.
 *
 * Layout: 16-row panels of the rows one after another (rows past the matrix end zero: d 0),
 * each row its TQ2_0 blocks in order, so that a panel is 16 rows of a plain TQ2_0 matrix. */
#include <string.h>

#include "kernels/iq.h"

size_t kl_pack_tq1_0_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return kl_pack_records_bytes(rows, cols, sizeof(kl_block_tq2_0));
}

static void pack_block(const void *block, uint8_t *rec)
{
    const kl_block_tq1_0 *b = block;
    kl_block_tq2_0 o;
    kl_iq_dec dec;
    kl_iq_decode_tq1_0(b, &dec);
    memset(o.qs, 0, sizeof o.qs);
    for (int e = 0; e < KL_QKK; e++)
        o.qs[32 * (e / 128) + e % 32] |= (uint8_t)((dec.q[e] + 1) << (2 * ((e % 128) / 32)));
    o.d = b->d;
    memcpy(rec, &o, sizeof o);
}

void kl_pack_tq1_0(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst)
{
    kl_pack_records(t, W, rows, cols, p0, p1, dst, sizeof(kl_block_tq2_0), pack_block);
}

/* The reference dot over the packed form: TQ2_0's reference on the panel's rows (w_stride: a
 * panel's bytes), the same decoded values and float steps as TQ1_0's, so its bits. */
void kl_ref_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    kl_ref_gemm_tq2_0(&h, r0, r1);
}
