#include "t.h"

#include <sys/stat.h>

#include "gguf/gguf.h"

static char *tmp_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", t_tmpdir(), name);
    return buf;
}

TEST(gguf_write_every_value_type_round_trips)
{
    const char *path = tmp_path("all.gguf");
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    T_EQ(gguf_writer_set_u8(w, "t.u8", 200), 0);
    T_EQ(gguf_writer_set_i8(w, "t.i8", -100), 0);
    T_EQ(gguf_writer_set_u16(w, "t.u16", 60000), 0);
    T_EQ(gguf_writer_set_i16(w, "t.i16", -30000), 0);
    T_EQ(gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    T_EQ(gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    T_EQ(gguf_writer_set_u64(w, "t.u64", 0xfedcba9876543210ull), 0);
    T_EQ(gguf_writer_set_i64(w, "t.i64", INT64_MIN + 5), 0);
    T_EQ(gguf_writer_set_f32(w, "t.f32", 1.5e-5f), 0);
    T_EQ(gguf_writer_set_f64(w, "t.f64", 3.141592653589793), 0);
    T_EQ(gguf_writer_set_bool(w, "t.bool", true), 0);
    T_EQ(gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo"), 0);
    T_EQ(gguf_writer_set_strn(w, "t.empty", "", 0), 0);
    const char *strs[] = {"a", "", "\xe2\x96\x81the", "<0x0A>"};
    T_EQ(gguf_writer_set_arr_str(w, "t.strs", strs, NULL, 4), 0);
    int32_t ints[5] = {1, -2, 3, -4, 5};
    T_EQ(gguf_writer_set_arr(w, "t.i32s", GGUF_I32, ints, 5), 0);
    float fl[3] = {0.5f, -1.0f, 2.25f};
    T_EQ(gguf_writer_set_arr(w, "t.f32s", GGUF_F32, fl, 3), 0);
    uint8_t bools[3] = {1, 0, 1};
    T_EQ(gguf_writer_set_arr(w, "t.bools", GGUF_BOOL, bools, 3), 0);
    T_EQ(gguf_writer_set_arr(w, "t.noarr", GGUF_U64, NULL, 0), 0);
    /* An array of two arrays of u16: [1,2] and [3]. */
    uint8_t raw[64];
    size_t n = 0;
    uint32_t et = GGUF_U16;
    uint64_t cnt;
    uint16_t v16[3] = {1, 2, 3};
    memcpy(raw + n, &et, 4), n += 4;
    cnt = 2, memcpy(raw + n, &cnt, 8), n += 8;
    memcpy(raw + n, v16, 4), n += 4;
    memcpy(raw + n, &et, 4), n += 4;
    cnt = 1, memcpy(raw + n, &cnt, 8), n += 8;
    memcpy(raw + n, v16 + 2, 2), n += 2;
    T_EQ(gguf_writer_set_arr_raw(w, "t.nested", GGUF_ARRAY, 2, raw, n), 0);
    /* A key set twice keeps its place and takes the last value. */
    T_EQ(gguf_writer_set_u32(w, "t.again", 1), 0);
    T_EQ(gguf_writer_set_str(w, "t.again", "two"), 0);
    T_EQ(gguf_writer_finish(w, &err), 0);

    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    T_EQ(gguf_version(f), 3);
    T_EQ(gguf_n_kv(f), 20);
    T_EQ(gguf_n_tensors(f), 0);
    const gguf_kv *kv = gguf_find_kv(f, "t.u8");
    T_EQ(kv->type, GGUF_U8);
    T_EQ(kv->v.u64, 200);
    T_EQ(gguf_find_kv(f, "t.i8")->v.i64, -100);
    T_EQ(gguf_find_kv(f, "t.i8")->type, GGUF_I8);
    T_EQ(gguf_find_kv(f, "t.u16")->v.u64, 60000);
    T_EQ(gguf_find_kv(f, "t.i16")->v.i64, -30000);
    T_EQ(gguf_find_kv(f, "t.u32")->v.u64, 4000000000u);
    T_EQ(gguf_find_kv(f, "t.i32")->v.i64, -2000000000);
    T_ASSERT(gguf_find_kv(f, "t.u64")->v.u64 == 0xfedcba9876543210ull);
    T_EQ(gguf_find_kv(f, "t.i64")->v.i64, INT64_MIN + 5);
    T_EQ(gguf_find_kv(f, "t.f32")->type, GGUF_F32);
    T_ASSERT((float)gguf_find_kv(f, "t.f32")->v.f64 == 1.5e-5f);
    T_EQ(gguf_find_kv(f, "t.f64")->type, GGUF_F64);
    T_ASSERT(gguf_find_kv(f, "t.f64")->v.f64 == 3.141592653589793);
    T_ASSERT(gguf_find_kv(f, "t.bool")->v.b);
    const char *s;
    T_EQ(gguf_get_str(f, "t.str", &s, &err), 0);
    T_STREQ(s, "h\xc3\xa9llo");
    T_EQ(gguf_get_str(f, "t.empty", &s, &err), 0);
    T_STREQ(s, "");
    const gguf_arr *a;
    T_EQ(gguf_get_arr(f, "t.strs", GGUF_STRING, &a, &err), 0);
    T_EQ(a->n, 4);
    for (int i = 0; i < 4; i++) {
        T_EQ(a->strs[i].len, strlen(strs[i]));
        T_MEMEQ(a->strs[i].ptr, strs[i], strlen(strs[i]));
    }
    T_EQ(gguf_get_arr(f, "t.i32s", GGUF_I32, &a, &err), 0);
    T_EQ(a->n, 5);
    T_MEMEQ(a->data, ints, sizeof ints);
    T_EQ(gguf_get_arr(f, "t.f32s", GGUF_F32, &a, &err), 0);
    T_MEMEQ(a->data, fl, sizeof fl);
    T_EQ(gguf_get_arr(f, "t.bools", GGUF_BOOL, &a, &err), 0);
    T_MEMEQ(a->data, bools, 3);
    T_EQ(gguf_get_arr(f, "t.noarr", GGUF_U64, &a, &err), 0);
    T_EQ(a->n, 0);
    T_EQ(gguf_get_arr(f, "t.nested", GGUF_ARRAY, &a, &err), 0);
    T_EQ(a->n, 2);
    T_EQ(a->nbytes, n);
    T_MEMEQ(a->data, raw, n);
    T_EQ(gguf_get_str(f, "t.again", &s, &err), 0);
    T_STREQ(s, "two");
    T_STREQ(gguf_kv_at(f, 18)->key, "t.nested");
    T_STREQ(gguf_kv_at(f, 19)->key, "t.again");
    gguf_close(f);
}

TEST(gguf_write_tensors_stream_in_chunks)
{
    const char *path = tmp_path("t.gguf");
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    T_EQ(gguf_writer_set_u32(w, "general.alignment", 64), 0);
    int64_t ne_a[2] = {3, 5}, ne_b[1] = {7}, ne_c[2] = {32, 2};
    T_EQ(gguf_writer_add_tensor(w, "a", KL_F32, 2, ne_a), 0);
    T_EQ(gguf_writer_add_tensor(w, "b", KL_F16, 1, ne_b), 0);
    T_EQ(gguf_writer_add_tensor(w, "c", KL_Q8_0, 2, ne_c), 0);
    T_EQ(gguf_writer_begin_data(w), 0);
    uint8_t bytes[60 + 14 + 68];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7 + 1);
    /* Chunks that straddle tensor boundaries. */
    T_EQ(gguf_writer_write(w, bytes, 50), 0);
    T_EQ(gguf_writer_write(w, bytes + 50, 30), 0);
    T_EQ(gguf_writer_write(w, bytes + 80, sizeof bytes - 80), 0);
    T_EQ(gguf_writer_finish(w, &err), 0);

    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    T_EQ(gguf_alignment(f), 64);
    T_EQ(gguf_data_offset(f) % 64, 0);
    T_EQ(gguf_n_tensors(f), 3);
    const gguf_tensor *a = gguf_find_tensor(f, "a"), *b = gguf_find_tensor(f, "b"),
                      *c = gguf_find_tensor(f, "c");
    T_EQ(a->n_dims, 2);
    T_EQ(a->ne[0], 3);
    T_EQ(a->ne[1], 5);
    T_EQ(a->nbytes, 60);
    T_EQ(a->offset, 0);
    T_EQ(b->offset, 64);
    T_EQ(b->nbytes, 14);
    T_EQ(c->offset, 128);
    T_EQ(c->nbytes, 68);
    T_EQ(c->type, KL_Q8_0);
    T_MEMEQ(a->data, bytes, 60);
    T_MEMEQ(b->data, bytes + 60, 14);
    T_MEMEQ(c->data, bytes + 74, 68);
    gguf_close(f);
}

TEST(gguf_write_reports_missing_data_and_removes_file)
{
    const char *path = tmp_path("short.gguf");
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    int64_t ne[1] = {4};
    T_EQ(gguf_writer_add_tensor(w, "x", KL_F32, 1, ne), 0);
    T_EQ(gguf_writer_add_tensor(w, "x", KL_F32, 1, ne), KL_EINVAL);
    T_EQ(gguf_writer_finish(w, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "duplicate tensor name 'x'");
    struct stat st;
    T_ASSERT(stat(path, &st) != 0);

    T_EQ(gguf_writer_open(&w, path, &err), 0);
    T_EQ(gguf_writer_add_tensor(w, "x", KL_F32, 1, ne), 0);
    T_EQ(gguf_writer_begin_data(w), 0);
    float v[2] = {1, 2};
    T_EQ(gguf_writer_write(w, v, sizeof v), 0);
    T_EQ(gguf_writer_finish(w, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "tensor 'x' is missing 8 bytes of data");
    T_ASSERT(stat(path, &st) != 0);

    int64_t bad[2] = {33, 2};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    T_EQ(gguf_writer_add_tensor(w, "q", KL_Q4_0, 2, bad), KL_EINVAL);
    gguf_writer_abort(w);
    T_ASSERT(stat(path, &st) != 0);
}

TEST(gguf_write_copy_kv_reproduces_a_real_file)
{
    const char *src = t_shared("models/stories260K.gguf");
    const char *path = tmp_path("copy.gguf");
    gguf_file *f, *g;
    kl_err err = {0};
    T_EQ(gguf_open(&f, src, &err), 0);
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        T_EQ(gguf_writer_copy_kv(w, gguf_kv_at(f, i)), 0);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        T_EQ(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne), 0);
    }
    T_EQ(gguf_writer_begin_data(w), 0);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++)
        T_EQ(gguf_writer_write(w, gguf_tensor_at(f, i)->data, gguf_tensor_at(f, i)->nbytes), 0);
    T_EQ(gguf_writer_finish(w, &err), 0);
    /* llama.cpp's writer lays the file out the same way: the copy is byte-identical. */
    T_EQ(gguf_open(&g, path, &err), 0);
    T_EQ(gguf_file_size(g), gguf_file_size(f));
    T_EQ(gguf_data_offset(g), gguf_data_offset(f));
    T_EQ(gguf_n_kv(g), gguf_n_kv(f));
    FILE *a = fopen(src, "rb"), *b = fopen(path, "rb");
    size_t sz = (size_t)gguf_file_size(f);
    char *x = malloc(sz), *y = malloc(sz);
    T_EQ(fread(x, 1, sz, a), sz);
    T_EQ(fread(y, 1, sz, b), sz);
    T_MEMEQ(x, y, sz);
    fclose(a);
    fclose(b);
    free(x);
    free(y);
    gguf_close(f);
    gguf_close(g);
}

TEST(gguf_write_failure_leaves_an_existing_file_alone)
{
    const char *path = tmp_path("keep.gguf");
    FILE *f = fopen(path, "w");
    T_ASSERT(f);
    fputs("old contents", f);
    fclose(f);
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    int64_t ne[1] = {4};
    T_EQ(gguf_writer_add_tensor(w, "x", KL_F32, 1, ne), 0);
    T_EQ(gguf_writer_finish(w, &err), KL_EINVAL); /* no data written */
    char buf[64] = {0};
    f = fopen(path, "r");
    T_ASSERT(f && fgets(buf, sizeof buf, f));
    fclose(f);
    T_STREQ(buf, "old contents");
    /* Nothing else is left in the directory. */
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls %s", t_tmpdir());
    T_EQ(t_run(cmd, &out, NULL), 0);
    T_STREQ(out, "keep.gguf\n");
    free(out);
}
