#include "t.h"

#include <stdio.h>

#include "gguf/gguf.h"
#include "model/make.h"

/* A small random model at dir/m.gguf (about 20 tensors with 2 layers). */
static const char *make_model(const char *dir)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/m.gguf", dir);
    model_make_opts o;
    model_make_defaults(&o);
    kl_err err = {0};
    T_EQ(model_make(&o, p, &err), 0);
    return p;
}

TEST(gguf_split_name_parse)
{
    size_t pl;
    int no, count;
    T_ASSERT(gguf_split_name_parse("a/m-Q4_K_M-00002-of-00003.gguf", &pl, &no, &count));
    T_EQ(pl, strlen("a/m-Q4_K_M"));
    T_EQ(no, 2);
    T_EQ(count, 3);
    T_ASSERT(!gguf_split_name_parse("m-0002-of-00003.gguf", &pl, &no, &count));
    T_ASSERT(!gguf_split_name_parse("m-00000-of-00003.gguf", &pl, &no, &count));
    T_ASSERT(!gguf_split_name_parse("m-00004-of-00003.gguf", &pl, &no, &count));
    T_ASSERT(!gguf_split_name_parse("m-00001-of-00003.bin", &pl, &no, &count));
    T_ASSERT(!gguf_split_name_parse("m-0000a-of-00003.gguf", &pl, &no, &count));
    T_ASSERT(!gguf_split_name_parse("m.gguf", &pl, &no, &count));
}

/* Split, then open the first shard: the same metadata and the same tensors, byte for byte. */
TEST(gguf_split_roundtrip)
{
    const char *dir = t_tmpdir(), *path = make_model(dir);
    char prefix[512], first[600];
    snprintf(prefix, sizeof prefix, "%s/s", dir);
    gguf_file *f, *g;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    int n = 0;
    T_EQ(gguf_write_split(f, prefix, 5, &n, &err), 0);
    T_EQ(n, (gguf_n_tensors(f) + 4) / 5);
    T_ASSERT(n >= 3);
    snprintf(first, sizeof first, "%s-00001-of-%05d.gguf", prefix, n);
    if (gguf_open(&g, first, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
    T_EQ(gguf_n_shards(g), n);
    T_EQ(gguf_n_shards(f), 1);
    T_EQ(gguf_n_tensors(g), gguf_n_tensors(f));
    T_EQ(gguf_n_kv(g), gguf_n_kv(f) + 3); /* + split.no, split.count, split.tensors.count */
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *a = gguf_tensor_at(f, i), *b = gguf_find_tensor(g, a->name);
        T_ASSERT(b);
        T_EQ(b->type, a->type);
        T_EQ(b->nbytes, a->nbytes);
        T_MEMEQ(b->ne, a->ne, sizeof a->ne);
        T_MEMEQ(b->data, a->data, a->nbytes);
    }
    const char *arch;
    T_EQ(gguf_get_str(g, "general.architecture", &arch, &err), 0);
    T_STREQ(arch, "llama");
    gguf_close(g);
    gguf_close(f);
}

/* Another shard than the first, a missing shard, shards out of order: clear errors. */
TEST(gguf_split_refuses_bad_sets)
{
    const char *dir = t_tmpdir(), *path = make_model(dir);
    char prefix[512], p1[600], p2[600], p3[600], tmp[600];
    snprintf(prefix, sizeof prefix, "%s/s", dir);
    gguf_file *f, *g;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    int n = 0;
    T_EQ(gguf_write_split(f, prefix, (int)(gguf_n_tensors(f) + 2) / 3, &n, &err), 0);
    gguf_close(f);
    T_EQ(n, 3);
    snprintf(p1, sizeof p1, "%s-00001-of-00003.gguf", prefix);
    snprintf(p2, sizeof p2, "%s-00002-of-00003.gguf", prefix);
    snprintf(p3, sizeof p3, "%s-00003-of-00003.gguf", prefix);
    snprintf(tmp, sizeof tmp, "%s/tmp.gguf", dir);

    T_EQ(gguf_open(&g, p2, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "shard 2 of 3: open the first shard");
    T_CONTAINS(err.msg, "s-00001-of-00003.gguf");

    T_EQ(rename(p3, tmp), 0);
    T_EQ(gguf_open(&g, p1, &err), KL_EIO);
    T_CONTAINS(err.msg, "s-00003-of-00003.gguf: cannot open");

    T_EQ(rename(p2, p3), 0); /* shard 2 under shard 3's name */
    T_EQ(rename(tmp, p2), 0);
    T_EQ(gguf_open(&g, p1, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "not shard 2 of 3");

    /* the first shard under a name that is not a split name */
    T_EQ(rename(p1, tmp), 0);
    T_EQ(gguf_open(&g, tmp, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "does not end in -00001-of-00003.gguf");
}

/* Writes a shard by hand: tensors named names[0..n), split keys as given. */
static void write_shard(const char *path, int no, int count, int total, const char *const *names,
                        int n)
{
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    if (no == 0) gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u16(w, "split.no", (uint16_t)no);
    gguf_writer_set_u16(w, "split.count", (uint16_t)count);
    gguf_writer_set_i32(w, "split.tensors.count", total);
    int64_t ne[1] = {8};
    for (int i = 0; i < n; i++)
        T_EQ(gguf_writer_add_tensor(w, names[i], KL_F32, 1, ne), 0);
    T_EQ(gguf_writer_begin_data(w), 0);
    float zero[8] = {0};
    for (int i = 0; i < n; i++)
        T_EQ(gguf_writer_write(w, zero, sizeof zero), 0);
    T_EQ(gguf_writer_finish(w, &err), 0);
}

TEST(gguf_split_refuses_duplicate_and_missing_tensors)
{
    const char *dir = t_tmpdir();
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/d-00001-of-00002.gguf", dir);
    snprintf(p2, sizeof p2, "%s/d-00002-of-00002.gguf", dir);
    const char *a[] = {"a", "b"}, *b[] = {"c", "a"};
    write_shard(p1, 0, 2, 4, a, 2);
    write_shard(p2, 1, 2, 4, b, 2);
    gguf_file *g;
    kl_err err = {0};
    T_EQ(gguf_open(&g, p1, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "tensor 'a' is in two shards");

    const char *c[] = {"c"};
    write_shard(p2, 1, 2, 4, c, 1);
    T_EQ(gguf_open(&g, p1, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "split.tensors.count is 4 but the shards hold 3");

    const char *d[] = {"c", "d"};
    write_shard(p2, 1, 2, 4, d, 2);
    T_EQ(gguf_open(&g, p1, &err), 0);
    T_EQ(gguf_n_tensors(g), 4);
    T_ASSERT(gguf_find_tensor(g, "d"));
    gguf_close(g);
}

/* A split model generates exactly what the single file does. */
TEST(gguf_split_runs_like_one_file)
{
    const char *src = t_shared("models/stories260K.gguf"), *dir = t_tmpdir();
    char cmd[2048], *a, *b, *e;
    snprintf(cmd, sizeof cmd, "%s model split %s %s/st --max-tensors 10", t_kiln(), src, dir);
    T_EQ(t_run(cmd, &a, &e), 0);
    T_CONTAINS(a, "st-00001-of-00005.gguf (5 shards)");
    free(a);
    free(e);
    snprintf(cmd, sizeof cmd, "%s run -m %s -p 'Once upon' -n 24 --temp 0 2>/dev/null", t_kiln(),
             src);
    T_EQ(t_run(cmd, &a, &e), 0);
    free(e);
    snprintf(cmd, sizeof cmd,
             "%s run -m %s/st-00001-of-00005.gguf -p 'Once upon' -n 24 --temp 0 2>/dev/null",
             t_kiln(), dir);
    T_EQ(t_run(cmd, &b, &e), 0);
    free(e);
    T_ASSERT(strlen(a) > 20);
    T_STREQ(b, a);
    free(a);
    free(b);
}
