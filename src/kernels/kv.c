/* kernels/kv.c: the paged KV cache's row formats (see kernels.h): F32 rows are read in place;
 * F16 rows in place for a few query rows and converted once for many; Q8_0 rows dequantized.
 * The F16 cache also rounds queries and attention weights to F16, as llama.cpp's F16 K x Q
 * and V x KQ products do, so log-probabilities track llama.cpp's default cache. */
#include <string.h>

#include "kernels/impl.h"

/* Up to this many query rows read an F16 run in place: converting it into a buffer costs
 * more than it saves when few rows share it. The kernels give the same bits either way. */
#define F16_IN_PLACE_ROWS 8

static void copy(const float *src, float *dst, int n)
{
    if (src != dst) memcpy(dst, src, sizeof(float) * (size_t)n);
}

static void write_f32(const float *x, void *row, int n)
{
    memcpy(row, x, sizeof(float) * (size_t)n);
}

static kl_kv_run read_f32(const void *row, size_t stride, int off, int n, int hd, int nr,
                          float *buf)
{
    (void)n, (void)hd, (void)nr, (void)buf;
    return (kl_kv_run){(const float *)row + off, (int)(stride / sizeof(float)), false};
}

static void write_f16(const float *x, void *row, int n)
{
    kl_fp32_to_fp16_row(x, row, n);
}

static kl_kv_run read_f16(const void *row, size_t stride, int off, int n, int hd, int nr,
                          float *buf)
{
    if (nr <= F16_IN_PLACE_ROWS)
        return (kl_kv_run){(const uint16_t *)row + off, (int)(stride / sizeof(uint16_t)), true};
    for (int r = 0; r < n; r++)
        kl_fp16_to_fp32_row((const uint16_t *)(const void *)((const uint8_t *)row + r * stride) +
                                off,
                            buf + (size_t)r * hd, hd);
    return (kl_kv_run){buf, hd, false};
}

static void round_f16(const float *src, float *dst, int n)
{
    uint16_t h16[512];
    for (int i = 0; i < n; i += 512) {
        int k = n - i < 512 ? n - i : 512;
        kl_fp32_to_fp16_row(src + i, h16, k);
        kl_fp16_to_fp32_row(h16, dst + i, k);
    }
}

static void write_q8_0(const float *x, void *row, int n)
{
    kl_quantize_row(KL_Q8_0, x, row, n);
}

static kl_kv_run read_q8_0(const void *row, size_t stride, int off, int n, int hd, int nr,
                           float *buf)
{
    (void)nr;
    size_t at = kl_dtype_row_bytes(KL_Q8_0, off); /* off: a multiple of the block */
    for (int r = 0; r < n; r++)
        kl_dequantize_row(KL_Q8_0, (const uint8_t *)row + r * stride + at, buf + (size_t)r * hd,
                          hd);
    return (kl_kv_run){buf, hd, false};
}

static const kl_kv_ops kv_ops[KL_DTYPE_COUNT] = {
    [KL_F32] = {1, write_f32, read_f32, copy},
    [KL_F16] = {1, write_f16, read_f16, round_f16},
    [KL_Q8_0] = {KL_QK, write_q8_0, read_q8_0, copy},
};
_Static_assert(sizeof kv_ops / sizeof kv_ops[0] == KL_DTYPE_COUNT, "kv_ops table size");

const kl_kv_ops *kl_kv_ops_get(kl_dtype t)
{
    return (unsigned)t < KL_DTYPE_COUNT && kv_ops[t].write ? &kv_ops[t] : NULL;
}

kl_kv_run kl_kv_run_at(const kl_kv_run *r, int j)
{
    size_t es = r->half ? sizeof(uint16_t) : sizeof(float);
    return (kl_kv_run){(const uint8_t *)r->rows + (size_t)j * (size_t)r->ld * es, r->ld, r->half};
}

void kl_kv_scores(const kl_kv_run *k, const float *q, int ldq, int nr, int nk, int hd, float scale,
                  float *s, int lds)
{
    const kl_vec_ops *v = &kl_isa_get()->vec;
    if (k->half)
        v->attn_scores_rows_f16(q, ldq, nr, k->rows, k->ld, nk, hd, scale, s, lds);
    else
        v->attn_scores_rows(q, ldq, nr, k->rows, k->ld, nk, hd, scale, s, lds);
}

void kl_kv_pv(const kl_kv_run *v, float *o, int ldo, const float *p, int ldp, int nr, int nk,
              int hd)
{
    const kl_vec_ops *ops = &kl_isa_get()->vec;
    if (v->half)
        ops->attn_pv_rows_f16(o, ldo, p, ldp, nr, v->rows, v->ld, nk, hd);
    else
        ops->attn_pv_rows(o, ldo, p, ldp, nr, v->rows, v->ld, nk, hd);
}
