/* The KV cache's row formats (kernels/kv.c): what a write stores reads back as the dtype's
 * rounding of it, and scores and weighted sums over a run give the bits of the float kernels
 * over the dequantized rows, whether the run is read in place (few query rows) or converted
 * (many). */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"
#include "t.h"

enum { ROWS = 5, KV_DIM = 96, HD = 32, OFF = 64 }; /* the last head of three */

static void kv_check(kl_dtype t)
{
    const kl_kv_ops *ops = kl_kv_ops_get(t);
    T_ASSERT(ops);
    T_EQ(HD % ops->block, 0);
    size_t stride = kl_dtype_row_bytes(t, KV_DIM);
    static uint8_t cache[ROWS * KV_DIM * 4];
    static float x[ROWS][KV_DIM], back[ROWS][KV_DIM], buf[ROWS * HD];
    for (int r = 0; r < ROWS; r++) {
        for (int i = 0; i < KV_DIM; i++)
            x[r][i] = sinf((float)(r * KV_DIM + i) * 0.37f) * (float)(r + 1);
        ops->write(x[r], cache + r * stride, KV_DIM);
        kl_quantize_row(t, x[r], back[r], KV_DIM); /* the dtype's own rounding... */
        memcpy(buf, back[r], stride);
        kl_dequantize_row(t, buf, back[r], KV_DIM); /* ...as floats */
    }
    float q[HD], p[2][ROWS], want[ROWS], got[ROWS], o_want[2][HD], o_got[2][HD];
    for (int i = 0; i < HD; i++)
        q[i] = cosf((float)i * 0.11f);
    for (int r = 0; r < ROWS; r++)
        p[0][r] = 0.1f * (float)(r + 1), p[1][r] = 0.3f - 0.05f * (float)r;
    const kl_vec_ops *v = &kl_isa_get()->vec;
    v->attn_scores(q, back[0] + OFF, KV_DIM, ROWS, HD, 0.25f, want);
    memset(o_want, 0, sizeof o_want);
    v->attn_pv_rows(o_want[0], HD, p[0], ROWS, 2, back[0] + OFF, KV_DIM, ROWS, HD);
    static const int nrs[] = {1, 64}; /* in place for an F16 cache, then converted */
    for (int k = 0; k < 2; k++) {
        kl_kv_run run = ops->read(cache, stride, OFF, ROWS, HD, nrs[k], buf);
        kl_kv_scores(&run, q, HD, 1, ROWS, HD, 0.25f, got, ROWS);
        T_MEMEQ(got, want, sizeof want);
        memset(o_got, 0, sizeof o_got);
        kl_kv_pv(&run, o_got[0], HD, p[0], ROWS, 2, ROWS, HD);
        T_MEMEQ(o_got, o_want, sizeof o_want);
    }
    /* queries as the cache's products see them: the F16 cache rounds, the others copy */
    float qr[HD];
    ops->round(q, qr, HD);
    for (int i = 0; i < HD; i++)
        T_NEAR(qr[i], t == KL_F16 ? kl_fp16_to_fp32(kl_fp32_to_fp16(q[i])) : q[i], 0);
    ops->round(qr, qr, HD); /* in place: rounding twice changes nothing */
    for (int i = 0; i < HD; i++)
        T_NEAR(qr[i], t == KL_F16 ? kl_fp16_to_fp32(kl_fp32_to_fp16(q[i])) : q[i], 0);
}

TEST(kernels_kv_ops_read_back_what_was_written)
{
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const kl_isa *isa = kl_isa_find(isas[i]);
        if (!isa) continue;
        kl_isa_set(isa);
        kv_check(KL_F32);
        kv_check(KL_F16);
        kv_check(KL_Q8_0);
    }
    kl_isa_set(NULL);
    T_ASSERT(!kl_kv_ops_get(KL_Q4_0)); /* not a cache format */
    T_ASSERT(!kl_kv_ops_get(KL_DTYPE_COUNT));
    T_EQ(kl_kv_ops_get(KL_Q8_0)->block, 32);
}
