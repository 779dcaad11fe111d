/* model/quantize.c: `kiln model quantize`: convert a GGUF's weight matrices to a mix of types
 * (model/quant_mix.c says which tensor gets which, as llama-quantize does). Row by row: each
 * row is dequantized to F32, then quantized to its new type, by the workers a chunk of rows
 * at a time, and each chunk is streamed to the writer: memory stays small at any size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/workers.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/make.h"
#include "model/quant_mix.h"

#define CHUNK_BYTES ((size_t)8 << 20) /* output bytes converted per pass of the workers */

typedef struct conv_job {
    const gguf_tensor *t;
    kl_dtype to;
    size_t in_rb, out_rb;
    int64_t row0, rows; /* this chunk */
    uint8_t *out;       /* (rows, out_rb) */
    float *scratch;     /* (threads, ne[0]) */
} conv_job;

static void conv_run(void *ctx, int ith, int nth)
{
    conv_job *j = ctx;
    int64_t n = j->t->ne[0];
    float *x = j->scratch + (size_t)ith * (size_t)n;
    for (int64_t r = j->rows * ith / nth; r < j->rows * (ith + 1) / nth; r++) {
        kl_dequantize_row(j->t->type,
                          (const uint8_t *)j->t->data + (size_t)(j->row0 + r) * j->in_rb, x, n);
        kl_quantize_row(j->to, x, j->out + (size_t)r * j->out_rb, n);
    }
}

/* Writes t's rows converted to type `to`. Returns 0 or the writer's error code. */
static int write_converted(gguf_writer *w, kl_workers *pool, const gguf_tensor *t, kl_dtype to,
                           uint8_t *buf, float *scratch)
{
    conv_job j = {.t = t,
                  .to = to,
                  .in_rb = kl_dtype_row_bytes(t->type, t->ne[0]),
                  .out_rb = kl_dtype_row_bytes(to, t->ne[0]),
                  .out = buf,
                  .scratch = scratch};
    int64_t rows = (int64_t)(t->nbytes / j.in_rb), per = (int64_t)(CHUNK_BYTES / j.out_rb);
    if (per < 1) per = 1;
    for (int64_t r = 0; r < rows; r += per) {
        j.row0 = r;
        j.rows = rows - r < per ? rows - r : per;
        kl_workers_run(pool, conv_run, &j);
        int rc = gguf_writer_write(w, buf, (size_t)j.rows * j.out_rb);
        if (rc) return rc;
    }
    return 0;
}

/* llama.cpp's order of a model's weights (its weight_name_comparer): by layer number
 * ("blk.N."; none before layer 0), then by name. Its rules count attn_v and ffn_* tensors in
 * that order, so the mix is decided in it. */
static int layer_number(const char *name)
{
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) l = -1;
    return l;
}

typedef struct {
    const gguf_tensor *t;
    int64_t i; /* index in the file */
} weight_ref;

static int cmp_weights(const void *a, const void *b)
{
    const gguf_tensor *x = ((const weight_ref *)a)->t, *y = ((const weight_ref *)b)->t;
    int lx = layer_number(x->name), ly = layer_number(y->name);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x->name, y->name);
}

int model_quantize_plan(const gguf_file *f, const char *path, const model_quantize_opts *o,
                        kl_dtype *to, kl_err *err)
{
    const qmix *mix = qmix_find(o->mix ? o->mix : "");
    if (!mix)
        return kl_errf(err, KL_EINVAL, "cannot quantize to %s (%s)", o->mix ? o->mix : "(null)",
                       qmix_names());
    int embd = -1, out = -1;
    if (o->token_embd_type && (embd = kl_dtype_from_name(o->token_embd_type)) < 0)
        return kl_errf(err, KL_EINVAL, "unknown token embedding type %s", o->token_embd_type);
    if (o->output_type && (out = kl_dtype_from_name(o->output_type)) < 0)
        return kl_errf(err, KL_EINVAL, "unknown output tensor type %s", o->output_type);
    int64_t n = gguf_n_tensors(f);
    weight_ref *order = malloc(sizeof *order * (size_t)(n + 1));
    if (!order) return kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++)
        order[i] = (weight_ref){gguf_tensor_at(f, i), i}, to[i] = order[i].t->type;
    qsort(order, (size_t)n, sizeof *order, cmp_weights);
    qmix_state q;
    kl_err e = {0};
    int rc = qmix_start(&q, mix, o->pure, embd, out, f, &e);
    for (int64_t i = 0; i < n && !rc; i++) {
        const gguf_tensor *t = order[i].t;
        kl_dtype *ti = &to[order[i].i];
        if (!qmix_quantizes(t)) continue;
        if ((rc = qmix_type(&q, t, ti, &e))) break;
        if (*ti == t->type) continue;
        if (!kl_dequantize_supports(t->type))
            rc = kl_errf(&e, KL_EUNSUP, "tensor %s has type %s, which Kiln cannot read to convert",
                         t->name, kl_dtype_get(t->type)->name);
        else if (!kl_quantize_supports(*ti))
            rc = kl_errf(&e, KL_EUNSUP, "tensor %s: Kiln cannot write type %s", t->name,
                         kl_dtype_get(*ti)->name);
    }
    free(order);
    return rc ? kl_errf(err, rc, "%s: %s", path, e.msg) : 0;
}

int model_quantize(const char *in_path, const char *out_path, const model_quantize_opts *o,
                   kl_err *err)
{
    const qmix *mix = qmix_find(o->mix ? o->mix : "");
    if (!mix) /* before the file is opened, whatever it holds */
        return kl_errf(err, KL_EINVAL, "cannot quantize to %s (%s)", o->mix ? o->mix : "(null)",
                       qmix_names());
    gguf_file *f;
    int rc = gguf_open(&f, in_path, err);
    if (rc) return rc;
    int64_t nt = gguf_n_tensors(f), maxcols = 1;
    kl_dtype *to = malloc(sizeof *to * (size_t)(nt + 1));
    if (!to) {
        gguf_close(f);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", out_path);
    }
    if ((rc = model_quantize_plan(f, in_path, o, to, err))) {
        free(to);
        gguf_close(f);
        return rc;
    }
    gguf_writer *w;
    if ((rc = gguf_writer_open(&w, out_path, err))) {
        free(to);
        gguf_close(f);
        return rc;
    }
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    gguf_writer_set_u32(w, "general.file_type", mix->file_type);
    if (kl_dtype_get(mix->type)->block_elems > 1)
        gguf_writer_set_u32(w, "general.quantization_version", 2);
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gguf_writer_add_tensor(w, t->name, to[i], t->n_dims, t->ne);
        if (t->ne[0] > maxcols) maxcols = t->ne[0];
    }
    int threads = o->threads < 1 ? 2 : o->threads > 64 ? 64 : o->threads;
    kl_workers *pool = threads > 1 ? kl_workers_create(threads) : NULL;
    size_t buf_bytes = CHUNK_BYTES + (size_t)maxcols * sizeof(float); /* at least one row */
    uint8_t *buf = malloc(buf_bytes);
    float *scratch = malloc((size_t)threads * (size_t)maxcols * sizeof(float));
    if (!buf || !scratch || (threads > 1 && !pool))
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", out_path);
    if (!rc) gguf_writer_begin_data(w); /* writer errors stick and surface at finish */
    for (int64_t i = 0; i < nt && !rc; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int wrc = to[i] == t->type ? gguf_writer_write(w, t->data, t->nbytes)
                                   : write_converted(w, pool, t, to[i], buf, scratch);
        if (wrc) break;
    }
    kl_workers_destroy(pool);
    free(buf);
    free(scratch);
    free(to);
    gguf_close(f);
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_finish(w, err); /* reports the writer's first error, if any */
}
