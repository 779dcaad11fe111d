/* kiln model quantize, convert-llama2c and inspect (library calls and the CLI). */
#include "t.h"

#include <sys/stat.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/make.h"

static const char *tp(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

TEST(model_make_tools_quantize_q8_0)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.ffn = 200; /* ffn_down rows of 200: not a multiple of 32, F16 (llama.cpp refuses) */
    const char *in = tp("f32.gguf"), *out = tp("q8.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, in, &err), 0);
    T_EQ(model_quantize(in, out, &(model_quantize_opts){.mix = "q8_0"}, &err), 0);
    gguf_file *a, *b;
    T_EQ(gguf_open(&a, in, &err), 0);
    T_EQ(gguf_open(&b, out, &err), 0);
    uint32_t ft;
    T_EQ(gguf_get_u32(b, "general.file_type", &ft, &err), 0);
    T_EQ(ft, 7);
    T_EQ(gguf_get_u32(b, "general.quantization_version", &ft, &err), 0);
    T_EQ(ft, 2);
    /* Every other key is copied as it was. */
    for (int64_t i = 0; i < gguf_n_kv(a); i++) {
        const gguf_kv *x = gguf_kv_at(a, i), *y = gguf_find_kv(b, x->key);
        T_ASSERT(y);
        if (!strcmp(x->key, "general.file_type")) continue;
        T_EQ(y->type, x->type);
        if (x->type == GGUF_ARRAY) T_MEMEQ(y->v.arr.data, x->v.arr.data, x->v.arr.nbytes);
    }
    T_EQ(gguf_n_tensors(b), gguf_n_tensors(a));
    int quantized = 0;
    for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_find_tensor(b, x->name);
        T_ASSERT(y);
        T_EQ(y->ne[0], x->ne[0]);
        T_EQ(y->ne[1], x->ne[1]);
        if (x->n_dims == 1) {
            T_EQ(y->type, KL_F32);
            T_MEMEQ(y->data, x->data, x->nbytes);
            continue;
        }
        if (x->ne[0] % 32) {
            T_EQ(y->type, KL_F16);
            continue;
        }
        T_EQ(y->type, KL_Q8_0);
        quantized++;
        float row[200];
        kl_dequantize_row(KL_Q8_0, y->data, row, y->ne[0]);
        const float *src = x->data;
        for (int64_t j = 0; j < y->ne[0]; j++)
            T_NEAR(row[j], src[j], 0.0005); /* |w| < 0.07: q8 steps of < 0.0006 */
    }
    T_EQ(quantized, 2 * 6 + 2); /* q k v o gate up per layer, embeddings, output */
    T_EQ(gguf_find_tensor(b, "blk.0.ffn_down.weight")->type, KL_F16);
    gguf_close(a);
    gguf_close(b);
}

/* A Mixtral file: the expert stacks (3-D) are quantized whole, the router stays F32 as
 * llama.cpp's quantizer leaves it (fails before: the router became Q8_0). */
TEST(model_make_tools_quantize_experts)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.experts = 4;
    const char *in = tp("mix.gguf"), *out = tp("mixq.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, in, &err), 0);
    T_EQ(model_quantize(in, out, &(model_quantize_opts){.mix = "q8_0"}, &err), 0);
    gguf_file *b;
    T_EQ(gguf_open(&b, out, &err), 0);
    const gguf_tensor *router = gguf_find_tensor(b, "blk.1.ffn_gate_inp.weight"),
                      *up = gguf_find_tensor(b, "blk.1.ffn_up_exps.weight");
    T_EQ(router->type, KL_F32);
    T_EQ(up->type, KL_Q8_0);
    T_EQ(up->n_dims, 3);
    T_EQ(up->ne[2], 4);
    gguf_close(b);
}

TEST(model_make_tools_quantize_chain_and_errors)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 256;
    o.ffn = 256;
    const char *in = tp("f32.gguf"), *q4 = tp("q4.gguf"), *f16 = tp("f16.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, in, &err), 0);
    T_EQ(model_quantize(in, q4, &(model_quantize_opts){.mix = "q4_k"}, &err), 0);
    T_EQ(model_quantize(q4, f16, &(model_quantize_opts){.mix = "f16"}, &err),
         0); /* a quantized input is dequantized */
    gguf_file *f;
    T_EQ(gguf_open(&f, q4, &err), 0);
    T_EQ(gguf_find_tensor(f, "blk.1.attn_q.weight")->type, KL_Q4_K);
    T_EQ(gguf_find_tensor(f, "blk.1.attn_k.weight")->type, KL_Q4_K);
    gguf_close(f);
    T_EQ(gguf_open(&f, f16, &err), 0);
    T_EQ(gguf_find_tensor(f, "blk.1.attn_q.weight")->type, KL_F16);
    T_EQ(gguf_find_tensor(f, "output_norm.weight")->type, KL_F32);
    gguf_close(f);
    /* In place: the output replaces the input only once it is complete. */
    T_EQ(model_quantize(q4, q4, &(model_quantize_opts){.mix = "Q8_0"}, &err), 0);
    T_EQ(gguf_open(&f, q4, &err), 0);
    T_EQ(gguf_find_tensor(f, "blk.1.attn_q.weight")->type, KL_Q8_0);
    gguf_close(f);
    T_EQ(model_quantize(in, tp("x.gguf"), &(model_quantize_opts){.mix = "q8_1"}, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "cannot quantize to q8_1");
    T_EQ(model_quantize(tp("nope.gguf"), tp("x.gguf"), &(model_quantize_opts){.mix = "q8_0"}, &err),
         KL_EIO);
    T_CONTAINS(err.msg, "nope.gguf: cannot open");
}

TEST(model_make_tools_convert_llama2c_matches_llama_cpp)
{
    /* t_shared's result lives until the next call: keep copies. */
    char *ckpt = strdup(t_shared("models/stories260K.bin"));
    char *tokbin = strdup(t_shared("models/tok512.bin"));
    char *ref = strdup(t_shared("models/stories260K.gguf"));
    const char *out = tp("s.gguf");
    kl_err err = {0};
    T_EQ(model_convert_llama2c(ckpt, tokbin, out, &err), 0);
    gguf_file *a, *b;
    T_EQ(gguf_open(&a, ref, &err), 0);
    T_EQ(gguf_open(&b, out, &err), 0);
    T_EQ(gguf_n_tensors(b), 48);
    T_EQ(gguf_n_tensors(b), gguf_n_tensors(a));
    for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
        T_STREQ(y->name, x->name);
        T_EQ(y->type, x->type);
        T_EQ(y->n_dims, x->n_dims);
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            T_EQ(y->ne[d], x->ne[d]);
        T_EQ(y->offset, x->offset);
        T_EQ(y->nbytes, x->nbytes);
        T_MEMEQ(y->data, x->data, x->nbytes);
    }
    /* Same metadata, in the same order, with the same values. */
    T_EQ(gguf_n_kv(b), gguf_n_kv(a));
    for (int64_t i = 0; i < gguf_n_kv(a); i++) {
        const gguf_kv *x = gguf_kv_at(a, i), *y = gguf_kv_at(b, i);
        T_STREQ(y->key, x->key);
        T_EQ(y->type, x->type);
    }
    T_EQ(gguf_file_size(b), gguf_file_size(a));
    gguf_close(a);
    gguf_close(b);
    free(ckpt);
    free(tokbin);
    free(ref);
}

TEST(model_make_tools_convert_llama2c_refuses_bad_input)
{
    char *ckpt = strdup(t_shared("models/stories260K.bin"));
    char *tokbin = strdup(t_shared("models/tok512.bin"));
    const char *cut = tp("cut.bin"), *out = tp("o.gguf");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "head -c 100000 '%s' > '%s'", ckpt, cut);
    T_EQ(t_run(cmd, NULL, NULL), 0);
    kl_err err = {0};
    T_EQ(model_convert_llama2c(cut, tokbin, out, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "cut.bin: 100000 bytes, but its header announces 1056540");
    /* A tokenizer with another vocab size. */
    T_EQ(model_convert_llama2c(ckpt, t_shared("models/tokenizer.bin"), out, &err), KL_EBADFILE);
    T_CONTAINS(err.msg, "tokenizer.bin: ");
    struct stat st;
    T_ASSERT(stat(out, &st) != 0);
    free(ckpt);
    free(tokbin);
}

TEST(model_make_tools_cli_inspect)
{
    char cmd[8192], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s model inspect %s", t_kiln(),
             t_shared("models/stories260K-ggufv1.gguf"));
    T_EQ(t_run(cmd, &out, &err), 1);
    T_CONTAINS(err, "kiln: ");
    T_CONTAINS(err, "stories260K-ggufv1.gguf: GGUF version 1 is not supported");
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s model inspect %s", t_kiln(), t_shared("models/stories260K.gguf"));
    T_EQ(t_run(cmd, &out, &err), 0);
    T_CONTAINS(out, "GGUF v3, alignment 32");
    T_CONTAINS(out, "tensors: 48\n");
    T_CONTAINS(out, "general.architecture");
    T_CONTAINS(out, "\"<unk>\", \"<s>\", \"</s>\"");
    T_CONTAINS(out, "... (512 total)]");
    T_CONTAINS(out, "blk.4.ffn_norm.weight");
    int rows = 0;
    for (const char *p = strstr(out, "tensors: 48"); (p = strstr(p, ".weight ")); p++)
        rows++;
    T_EQ(rows, 48);
    free(out);
    free(err);
}

TEST(model_make_tools_cli_make_and_quantize)
{
    char cmd[8192], *out = NULL, *err = NULL;
    const char *m = tp("m.gguf"), *q = tp("q.gguf");
    snprintf(cmd, sizeof cmd,
             "%s model make --out %s --dim 32 --heads 2 --kv-heads 1 --layers 1 "
             "--ffn 64 --vocab 300 --type q4_0 --tied --seed 3 --rope-theta 500000",
             t_kiln(), m);
    T_EQ(t_run(cmd, &out, &err), 0);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s model quantize %s %s q8_0 && %s model inspect %s", t_kiln(), m, q,
             t_kiln(), q);
    T_EQ(t_run(cmd, &out, &err), 0);
    T_CONTAINS(out, "llama.rope.freq_base                         = 500000");
    T_CONTAINS(out, "general.file_type                            = 7");
    T_CONTAINS(out, "tensors: 11\n");
    T_CONTAINS(out, "token_embd.weight                    q8_0   32 x 300");
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s model make --out %s --dim 30 --heads 4", t_kiln(), m);
    T_EQ(t_run(cmd, &out, &err), 1);
    T_STREQ(err, "kiln: dim 30 is not a multiple of heads 4\n");
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s model make --dim 32", t_kiln());
    T_EQ(t_run(cmd, &out, &err), 2);
    T_CONTAINS(err, "--out FILE is required");
    free(out);
    free(err);
}

/* A made model runs through Kiln's own forward pass: with small random weights the logits
 * are nearly uniform, so the perplexity of any text is finite and close to the vocab size. */
TEST(model_make_tools_made_model_runs)
{
    char cmd[8192], *out = NULL, *err = NULL;
    const char *m = tp("m.gguf"), *txt = tp("t.txt");
    FILE *f = fopen(txt, "w");
    T_ASSERT(f);
    fputs("the cat saw a big red ball and the dog was happy\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s model make --out %s --vocab 1000 --type q8_0 && "
             "%s perplexity -m %s -f %s",
             t_kiln(), m, t_kiln(), m, txt);
    T_EQ(t_run(cmd, &out, &err), 0);
    const char *p = strstr(out, "ppl = ");
    T_ASSERT(p);
    double ppl = atof(p + 6);
    T_ASSERT(ppl > 500.0 && ppl < 2000.0);
    free(out);
    free(err);
}

/* Per-token log-probabilities from `kiln perplexity --per-token` of model m on text txt. */
static int logprobs(const char *m, const char *txt, double *lp, int max)
{
    char cmd[8192], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s perplexity -m %s -f %s --per-token -t 2", t_kiln(), m, txt);
    T_EQ(t_run(cmd, &out, &err), 0);
    int n = 0;
    for (char *p = out; n < max && p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        int i, tok;
        if (sscanf(p, "%d %d %lf", &i, &tok, &lp[n]) == 3) n++;
    }
    free(out);
    free(err);
    return n;
}

/* A model quantized to each of these types runs like its own dequantization (the same file
 * converted back to F32): token embedding rows, matmuls and output through the type's kernels
 * agree with F32 math on the decoded weights, up to the activations' 8-bit quantization (a
 * hundredth of a log-probability here, Q8_K activations the coarser; a sub-block scale off
 * by one costs 0.08). */
TEST(model_make_tools_quantized_types_run_like_their_dequantization)
{
    static const kl_dtype types[] = {KL_Q4_K,   KL_Q6_K,  KL_Q8_0, KL_IQ4_NL,
                                     KL_IQ4_XS, KL_TQ1_0, KL_TQ2_0};
    static const char *const mixes[] = {"q4_k",   "q6_k",  "q8_0", "iq4_nl",
                                        "iq4_xs", "tq1_0", "tq2_0"};
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 256, o.ffn = 512, o.vocab = 600, o.std = 0.05f;
    const char *in = tp("f32.gguf"), *q = tp("q.gguf"), *back = tp("back.gguf"), *txt = tp("t.txt");
    kl_err err = {0};
    T_EQ(model_make(&o, in, &err), 0);
    FILE *f = fopen(txt, "w");
    T_ASSERT(f);
    fputs("the cat saw a big red ball and the dog was happy, so they ran to the park and "
          "played until the sun went down over the hill\n",
          f);
    fclose(f);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        T_EQ(model_quantize(in, q, &(model_quantize_opts){.mix = mixes[i], .pure = true}, &err), 0);
        gguf_file *g;
        T_EQ(gguf_open(&g, q, &err), 0);
        T_EQ(gguf_find_tensor(g, "token_embd.weight")->type, types[i]);
        T_EQ(gguf_find_tensor(g, "blk.1.ffn_down.weight")->type, types[i]);
        gguf_close(g);
        T_EQ(model_quantize(q, back, &(model_quantize_opts){.mix = "f32"}, &err), 0);
        double a[64], b[64];
        int n = logprobs(q, txt, a, 64);
        T_ASSERT(n > 20);
        T_EQ(logprobs(back, txt, b, 64), n);
        double sum = 0, max = 0;
        for (int j = 0; j < n; j++) {
            sum += fabs(a[j] - b[j]);
            max = fmax(max, fabs(a[j] - b[j]));
        }
        if (sum / n > 0.03 || max > 0.12)
            fprintf(stderr, "# %s: mean |d| %g, max %g\n", kl_dtype_get(types[i])->name, sum / n,
                    max);
        T_ASSERT(sum / n <= 0.03 && max <= 0.12);
    }
}
