/* model/quantize.c: `kiln model quantize`: convert a GGUF's weight matrices to another type.
 * Row by row: each row is dequantized to F32, then quantized to the target, then streamed. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/make.h"

/* The type tensor t gets: the target for 2-D weights (and 3-D expert stacks) whose rows fit
 * its blocks, else its own. A mixture's router (ffn_gate_inp) stays as it is, as llama.cpp's
 * quantizer leaves it: a small error there changes which experts run. */
static kl_dtype pick_type(const gguf_tensor *t, kl_dtype target)
{
    if (t->n_dims < 2 || strstr(t->name, "norm") || strstr(t->name, "ffn_gate_inp.") ||
        !kl_dequantize_supports(t->type))
        return t->type;
    if (!kl_dtype_row_bytes(target, t->ne[0])) return t->type;
    return target;
}

int model_quantize(const char *in_path, const char *out_path, kl_dtype type, kl_err *err)
{
    if (!kl_quantize_supports(type)) {
        char names[256];
        return kl_errf(err, KL_EINVAL, "cannot quantize to %s (%s)",
                       kl_dtype_get(type) ? kl_dtype_get(type)->name : "that type",
                       model_quant_types(names, sizeof names));
    }
    gguf_file *f;
    int rc = gguf_open(&f, in_path, err);
    if (rc) return rc;
    gguf_writer *w;
    if ((rc = gguf_writer_open(&w, out_path, err))) {
        gguf_close(f);
        return rc;
    }
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    gguf_writer_set_u32(w, "general.file_type", model_file_type(type));
    if (type != KL_F32 && type != KL_F16 && type != KL_BF16)
        gguf_writer_set_u32(w, "general.quantization_version", 2);
    int64_t maxcols = 1;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gguf_writer_add_tensor(w, t->name, pick_type(t, type), t->n_dims, t->ne);
        if (t->ne[0] > maxcols) maxcols = t->ne[0];
    }
    float *row = malloc((size_t)maxcols * sizeof *row);
    uint8_t *q = malloc((size_t)maxcols * sizeof(float));
    if (!row || !q) rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", out_path);
    if (!rc) gguf_writer_begin_data(w); /* writer errors stick and surface at finish */
    for (int64_t i = 0; i < gguf_n_tensors(f) && !rc; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        kl_dtype to = pick_type(t, type);
        if (to == t->type) {
            if (gguf_writer_write(w, t->data, t->nbytes)) break;
            continue;
        }
        size_t in_rb = kl_dtype_row_bytes(t->type, t->ne[0]);
        size_t out_rb = kl_dtype_row_bytes(to, t->ne[0]);
        int64_t rows = (int64_t)(t->nbytes / in_rb);
        for (int64_t r = 0; r < rows; r++) {
            kl_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * in_rb, row, t->ne[0]);
            kl_quantize_row(to, row, q, t->ne[0]);
            if (gguf_writer_write(w, q, out_rb)) break;
        }
    }
    free(row);
    free(q);
    gguf_close(f);
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_finish(w, err); /* reports the writer's first error, if any */
}
