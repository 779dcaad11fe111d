#include "t.h"

#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"

TEST(gguf_opens_stories260k)
{
    const char *path = t_shared("models/stories260K.gguf");
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    T_EQ(gguf_version(f), 3);
    T_EQ(gguf_n_tensors(f), 48);
    T_EQ(gguf_data_offset(f), 14176);
    const char *arch;
    T_EQ(gguf_get_str(f, "general.architecture", &arch, &err), 0);
    T_STREQ(arch, "llama");
    const gguf_arr *toks;
    T_EQ(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &toks, &err), 0);
    T_EQ(toks->n, 512);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    T_ASSERT(t);
    T_EQ(t->ne[0], 64);
    T_EQ(t->ne[1], 512);
    gguf_close(f);
}

TEST(gguf_refuses_v1)
{
    const char *path = t_shared("models/stories260K-ggufv1.gguf");
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "GGUF version 1 is not supported");
}

/* A FIFO (or any file that is not regular) is refused at once: opening it used to wait for a
 * writer forever. */
TEST(gguf_refuses_a_fifo_without_waiting)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/model.gguf", t_tmpdir());
    T_EQ(mkfifo(path, 0600), 0);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), KL_EIO);
    T_CONTAINS(err.msg, "not a regular file");
}

/* Writes a file with one f32 tensor of n floats, all 1.0; returns the data's offset. */
static void write_ones(const char *path, int64_t n)
{
    gguf_writer *w;
    kl_err err = {0};
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    T_EQ(gguf_writer_add_tensor(w, "w", KL_F32, 1, &n), 0);
    T_EQ(gguf_writer_begin_data(w), 0);
    for (int64_t i = 0; i < n; i++) {
        float one = 1.f;
        T_EQ(gguf_writer_write(w, &one, sizeof one), 0);
    }
    T_EQ(gguf_writer_finish(w, &err), 0);
}

/* A file truncated on disk while mapped: reading the vanished pages no longer kills the
 * process with SIGBUS; they read as zeros and gguf_faults says the file changed. */
TEST(gguf_survives_truncation_while_mapped)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/model.gguf", t_tmpdir());
    write_ones(path, 64 * 1024); /* 256 KiB of data */
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    const gguf_tensor *t = gguf_find_tensor(f, "w");
    const float *x = t->data;
    T_EQ(gguf_faults(f), 0);
    T_NEAR(x[100], 1.f, 0);
    T_EQ(truncate(path, 4096), 0);
    double sum = 0;
    for (int64_t i = 0; i < t->ne[0]; i++) /* each page past the new end faulted once */
        sum += (double)x[i];
    T_ASSERT(sum < 4096);
    T_ASSERT(gguf_faults(f) >= 60);
    gguf_close(f);
}
