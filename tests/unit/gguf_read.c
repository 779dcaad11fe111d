#include "t.h"

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
