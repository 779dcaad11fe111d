/* tests/fuzz/fuzz_gguf.c: arbitrary bytes through gguf_open_mem, then every view it hands out
 * is walked: each key with its value (strings and string-array elements read byte by byte,
 * fixed-size arrays summed), every typed getter on every key, and each tensor's name, shape
 * and data bytes (first and last). ASan catches any read outside the input. Seeds:
 * tests/fuzz/corpus/gguf/ (tiny valid files made with the writer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk_kv(const gguf_file *f, const gguf_kv *kv)
{
    kl_err err = {0};
    uint64_t h = strlen(kv->key);
    switch (kv->type) {
    case GGUF_STRING:
        for (uint64_t i = 0; i < kv->v.str.len; i++)
            h += (uint8_t)kv->v.str.ptr[i];
        break;
    case GGUF_ARRAY: {
        const gguf_arr *a = &kv->v.arr;
        if (a->type == GGUF_STRING) {
            for (uint64_t i = 0; i < a->n; i++)
                for (uint64_t j = 0; j < a->strs[i].len; j++)
                    h += (uint8_t)a->strs[i].ptr[j];
        } else {
            for (uint64_t i = 0; i < a->nbytes; i++)
                h += ((const uint8_t *)a->data)[i];
        }
        break;
    }
    default:
        h += kv->v.u64;
        break;
    }
    uint32_t u;
    int64_t i64;
    float fl;
    bool b;
    const char *s;
    const gguf_arr *arr;
    gguf_get_u32(f, kv->key, &u, &err);
    gguf_get_i64(f, kv->key, &i64, &err);
    gguf_get_f32(f, kv->key, &fl, &err);
    gguf_get_bool(f, kv->key, &b, &err);
    if (gguf_get_str(f, kv->key, &s, &err) == 0) h += strlen(s);
    gguf_get_arr(f, kv->key, GGUF_VTYPE_COUNT, &arr, &err);
    sink += h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f;
    kl_err err = {0};
    if (gguf_open_mem(&f, data, size, "fuzz", &err)) {
        if (!err.msg[0]) abort(); /* every failure explains itself */
        return 0;
    }
    uint64_t h = gguf_version(f) + gguf_alignment(f) + gguf_data_offset(f);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        walk_kv(f, gguf_kv_at(f, i));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        h += strlen(t->name) + (uint64_t)t->ne[0] + (uint64_t)t->n_dims + t->offset;
        if (gguf_find_tensor(f, t->name) != t) abort();
        if (t->nbytes) {
            const uint8_t *p = t->data;
            h += p[0] + p[t->nbytes - 1];
        }
    }
    sink += h;
    gguf_close(f);
    return 0;
}
