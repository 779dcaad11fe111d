/* kernels/pack_iq1.c: IQ1_S repacked at load into 2-bit codes (the packed form the AVX-512
 * VBMI table runs, x86/avx512vbmi_iq1.c), and the scalar dot over that form, which defines
 * it. Plain C built without ISA flags, as the other packers.
 *
 * Why: an IQ1_S weight is d (2 s + 1) (g + shift / 8), g in {-1, 0, 1} from an 11-bit index
 * into the 2048-entry grid per 8 weights. Generation reads the weights once per token, and
 * the file's form costs 32 grid lookups a block (scalar loads and inserts, ~130 instructions:
 * 6.3 ns a block, 7.9 GB/s at one thread, far from the 42 GB/s one thread reads). With each
 * g + 1 as a 2-bit code, a block is 3 vector instructions per 64 weights (a GF2 affine, a byte
 * lookup with the scale folded in, the dot), for 70 bytes instead of 50. (5 codes a byte in
 * base 3, 58 bytes, needs two 128-entry lookups and a merge per 64 codes before the scale:
 * twice the instructions for 17% fewer bytes, and the kernel is far from the bandwidth.)
 *
 * Layout: 16-row panels of the rows one after another (rows past the matrix end zero), each
 * row its blocks' records of 70 bytes in order:
 *   q   [64] byte i, bits 2p, 2p + 1: g + 1 (0..2) of element 64 p + i (p 0..3), so that one
 *            64-byte register holds element i of every 64-element plane
 *   d   fp16, the file's
 *   s   [4] nibble k (little-endian): the file's qh[k] >> 12, the scale s of elements
 *            32 k..32 k + 31 in bits 0-2 and the shift's sign (1: -1/8) in bit 3
 * The dot's integer per block is the file's exactly (kernels/ref_iq1.c, 8 g +- 1 with d / 8):
 * sum_k (2 s + 1) (8 sum (g + 1) a + (shift - 8) sum a), the last sums Q8_K's bsums. */
#include <string.h>

#include "kernels/iq.h"

#define PR 16 /* rows per panel */

size_t kl_pack_iq1_s_bytes(kl_dtype t, int64_t rows, int64_t cols)
{
    (void)t;
    return (size_t)((rows + PR - 1) / PR * PR) * (size_t)(cols / KL_QKK) * KL_IQ1P_REC;
}

static void pack_block(const kl_block_iq1_s *b, uint8_t *o)
{
    memset(o, 0, KL_IQ1P_REC);
    for (int e = 0; e < KL_QKK; e++) {
        int ib = e / 32, l = e % 32 / 8;
        uint64_t g = kl_iq1s_grid[b->qs[4 * ib + l] | ((b->qh[ib] >> (3 * l) & 7) << 8)];
        int v = (int8_t)(g >> (8 * (e % 8)) & 0xFF);
        o[e % 64] |= (uint8_t)((v + 1) << (2 * (e / 64)));
    }
    memcpy(o + KL_IQ1P_D, &b->d, 2);
    uint32_t s = 0;
    for (int k = 0; k < 8; k++)
        s |= (uint32_t)(b->qh[k] >> 12) << (4 * k);
    memcpy(o + KL_IQ1P_S, &s, 4);
}

void kl_pack_iq1_s(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                   void *dst)
{
    int64_t nblk = cols / KL_QKK;
    size_t stride = kl_dtype_row_bytes(t, cols), row = (size_t)nblk * KL_IQ1P_REC;
    for (int64_t r = p0 * PR; r < p1 * PR; r++) {
        uint8_t *o = (uint8_t *)dst + (size_t)r * row;
        if (r >= rows) {
            memset(o, 0, row);
            continue;
        }
        const kl_block_iq1_s *b = (const kl_block_iq1_s *)((const uint8_t *)W + (size_t)r * stride);
        for (int64_t j = 0; j < nblk; j++)
            pack_block(&b[j], o + (size_t)j * KL_IQ1P_REC);
    }
}

/* The reference dot over the packed form: each block's integer as kernels/ref_iq.c sums it,
 * and the same float steps, so its results are the file reference's bits. w_stride: a
 * panel's bytes. */
void kl_ref_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    for (int64_t r = r0; r < r1; r++)
        for (int b = 0; b < g->B; b++) {
            const uint8_t *w = g->W + (size_t)(r / PR) * g->w_stride +
                               (size_t)(r % PR) * (size_t)nblk * KL_IQ1P_REC;
            const uint8_t *a = g->act + (size_t)b * g->a_stride;
            const float *ad = kl_act_q8_k_d(a, n);
            float sum = 0.0f;
            for (int64_t j = 0; j < nblk; j++, w += KL_IQ1P_REC) {
                const int8_t *aj = (const int8_t *)a + j * KL_QKK;
                uint16_t dh;
                uint32_t s;
                memcpy(&dh, w + KL_IQ1P_D, 2), memcpy(&s, w + KL_IQ1P_S, 4);
                int32_t isum = 0;
                for (int t = 0; t < 16; t++) { /* as the reference: per 16, times the scale */
                    int k = t / 2, nib = s >> (4 * k) & 0xF, shift = nib & 8 ? -1 : 1;
                    int32_t s16 = 0;
                    for (int e = 16 * t; e < 16 * t + 16; e++) {
                        int v = (w[e % 64] >> (2 * (e / 64)) & 3) - 1;
                        s16 += (8 * v + shift) * aj[e];
                    }
                    isum += (2 * (nib & 7) + 1) * s16;
                }
                sum += (float)isum * (0.125f * kl_fp16_to_fp32(dh) * ad[j]);
            }
            g->y[b * g->ldy + r] = sum;
        }
}
