/* model/load.c checks every tensor's type against every use before a step can run: a type
 * that the embedding lookup, the matmul or the norms cannot read is refused at load with the
 * tensor and the type named (it once loaded and emitted token 0 forever). */
#include "t.h"

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/make.h"
#include "model/model.h"

static const char *tpath(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

/* Copies src to dst with tensor `name` given type `type` (its data: zero bytes). */
static void retype(const char *src, const char *dst, const char *name, kl_dtype type)
{
    kl_err err = {0};
    gguf_file *f;
    T_EQ(gguf_open(&f, src, &err), 0);
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, dst, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gguf_writer_add_tensor(w, t->name, strcmp(t->name, name) ? t->type : type, t->n_dims,
                               t->ne);
    }
    gguf_writer_begin_data(w);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (strcmp(t->name, name)) {
            gguf_writer_write(w, t->data, t->nbytes);
            continue;
        }
        size_t n = kl_dtype_row_bytes(type, t->ne[0]) * (size_t)(t->n_dims > 1 ? t->ne[1] : 1);
        void *z = calloc(1, n);
        gguf_writer_write(w, z, n);
        free(z);
    }
    T_EQ(gguf_writer_finish(w, &err), 0);
    gguf_close(f);
}

/* Loads path and checks it is refused with KL_EUNSUP and message msg (after the path). */
static void refused(const char *path, const char *msg)
{
    kl_err err = {0};
    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    model *m = NULL;
    model_opts o = {0};
    T_EQ(model_load(&m, f, &o, &err), KL_EUNSUP);
    T_ASSERT(m == NULL);
    T_CONTAINS(err.msg, msg);
    gguf_close(f);
}

TEST(model_load_refuses_types_a_use_cannot_read)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *src = tpath("m.gguf"), *bad = tpath("bad.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, src, &err), 0);
    /* the embedding is read a row at a time: a type with no dequantizer is refused (with a
     * separate output matrix the matmul never sees it) */
    retype(src, bad, "token_embd.weight", KL_I8);
    refused(bad, "tensor token_embd.weight has type i8, which Kiln's embedding lookup cannot read");
    retype(src, bad, "token_embd.weight", KL_Q8_1);
    refused(bad,
            "tensor token_embd.weight has type q8_1, which Kiln's embedding lookup cannot read");
    retype(src, bad, "blk.1.ffn_up.weight", KL_I16);
    refused(bad, "tensor blk.1.ffn_up.weight has type i16, which Kiln's matmul does not support");
    retype(src, bad, "blk.0.attn_norm.weight", KL_F16);
    refused(bad, "tensor blk.0.attn_norm.weight is f16; 1-D tensors must be f32");
    /* tied: the embedding is also the output, read by the matmul */
    o.tied = true;
    T_EQ(model_make(&o, src, &err), 0);
    retype(src, bad, "token_embd.weight", KL_I32);
    refused(bad, "tensor token_embd.weight has type i32");
}
