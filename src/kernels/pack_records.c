/* kernels/pack_records.c: the panels of the packed forms that repack a row block by block
 * (IQ1_S, IQ1_M: pack_iq1.c; the IQ2 types: pack_iq2.c; TQ1_0: pack_tq.c): 16 rows one after
 * another, each row its blocks' records in order, the rows past the matrix end zero. Plain C
 * built without ISA flags, as the packers. */
#include <string.h>

#include "kernels/iq.h"

size_t kl_pack_records_bytes(int64_t rows, int64_t cols, size_t rec)
{
    return (size_t)((rows + KL_PR - 1) / KL_PR * KL_PR) * (size_t)(cols / KL_QKK) * rec;
}

void kl_pack_records(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                     void *dst, size_t rec, kl_pack_block_fn block)
{
    int64_t nblk = cols / KL_QKK;
    size_t stride = kl_dtype_row_bytes(t, cols), bb = kl_dtype_get(t)->block_bytes,
           row = (size_t)nblk * rec;
    for (int64_t r = p0 * KL_PR; r < p1 * KL_PR; r++) {
        uint8_t *o = (uint8_t *)dst + (size_t)r * row;
        if (r >= rows) {
            memset(o, 0, row);
            continue;
        }
        const uint8_t *b = (const uint8_t *)W + (size_t)r * stride;
        for (int64_t j = 0; j < nblk; j++)
            block(b + (size_t)j * bb, o + (size_t)j * rec);
    }
}
