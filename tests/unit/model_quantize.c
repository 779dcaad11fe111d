/* kiln model quantize: the mixes choose llama-quantize's per-tensor types (reference tables
 * made by llama.cpp's llama-quantize, Feb 2025 tree, from the same model_make files), and a
 * file of every mix loads and generates through every ISA this CPU runs, close to the F32
 * model it was made from. */
#include "t.h"

#include "gguf/gguf.h"
#include "kernels/impl.h"
#include "model/make.h"
#include "model/model.h"
#include "t_model.h"

/* One letter per type in the tables below. */
static char code_of(kl_dtype t)
{
    switch ((int)t) {
    case KL_Q4_0:
        return 'A';
    case KL_Q4_1:
        return 'B';
    case KL_Q5_0:
        return 'C';
    case KL_Q5_1:
        return 'D';
    case KL_Q8_0:
        return 'E';
    case KL_Q2_K:
        return '2';
    case KL_Q3_K:
        return '3';
    case KL_Q4_K:
        return '4';
    case KL_Q5_K:
        return '5';
    case KL_Q6_K:
        return '6';
    case KL_F32:
        return 'F';
    case KL_F16:
        return 'H';
    case KL_IQ4_NL:
        return 'N';
    case KL_IQ4_XS:
        return 'X';
    default:
        return '?';
    }
}

/* The type of tensor `name` of f: to[its index] when to is given, else its own. */
static kl_dtype type_in(const gguf_file *f, const kl_dtype *to, const char *name)
{
    for (int64_t i = 0; i < gguf_n_tensors(f); i++)
        if (!strcmp(gguf_tensor_at(f, i)->name, name))
            return to ? to[i] : gguf_tensor_at(f, i)->type;
    return (kl_dtype)-1;
}

/* "EMB[OUT] q k v o gate up down (per layer, space separated)": the types of f's tensors, or
 * the ones to[] plans for them. */
static void types_of(const gguf_file *f, const kl_dtype *to, int layers, char *out)
{
    char *p = out;
    *p++ = code_of(type_in(f, to, "token_embd.weight"));
    if (gguf_find_tensor(f, "output.weight")) *p++ = code_of(type_in(f, to, "output.weight"));
    static const char *kinds[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < layers; l++) {
        *p++ = ' ';
        for (int k = 0; k < 7; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, kinds[k]);
            *p++ = code_of(type_in(f, to, name));
        }
    }
    *p = 0;
}

typedef struct {
    const char *mix, *want;
    const char *embd, *out; /* --token-embedding-type, --output-tensor-type */
} mix_ref;

/* llama-quantize on model A (dim 256, 16 layers, 8 heads / 2 KV heads, FFN 512, tied): the
 * _M mixes' extra bits on attn_v and ffn_down by layer, Q2_K's Q4_K attn_v (GQA 4) ... */
// clang-format off
static const mix_ref ref_a[] = {
    {"q4_0",   "6 AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA AAAAAAA", NULL, NULL},
    {"q4_1",   "6 BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB BBBBBBB", NULL, NULL},
    {"q5_0",   "6 CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC CCCCCCC", NULL, NULL},
    {"q5_1",   "6 DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD DDDDDDD", NULL, NULL},
    {"q8_0",   "E EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", NULL, NULL},
    {"q2_k",   "6 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223 2243223", NULL, NULL},
    {"q3_k_s", "6 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333 3333333", NULL, NULL},
    {"q3_k_m", "6 3354335 3354334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334", NULL, NULL},
    {"q3_k_l", "6 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335 3355335", NULL, NULL},
    {"q4_k_s", "6 4454445 4454445 4454444 4454444 4444444 4444444 4444444 4444444 4444444 4444444 4444444 4444444 4444444 4444444 4444444 4444444", NULL, NULL},
    {"q4_k_m", "6 4464446 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4464446 4464446", NULL, NULL},
    {"q5_k_s", "6 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555 5555555", NULL, NULL},
    {"q5_k_m", "6 5565556 5565556 5555555 5555555 5565556 5555555 5555555 5565556 5555555 5555555 5565556 5555555 5555555 5565556 5565556 5565556", NULL, NULL},
    {"q6_k",   "6 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666 6666666", NULL, NULL},
    {"iq4_nl", "6 NN5NNN5 NN5NNN5 NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN NN5NNNN", NULL, NULL},
    {"iq4_xs", "6 XX5XXX5 XX5XXX5 XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX XX5XXXX", NULL, NULL},
    {"q8_0",   "B EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", "q4_1", NULL},
    {"q3_k_m", "6 3354335 3354334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334 3344334", "q6_k", "q4_0"},
    {"q4_k_m", "D 4464446 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4444444 4444444 4464446 4464446 4464446", NULL, "q5_1"},
};
/* model B (dim 288, 4 layers, 6 heads / 2 KV heads, FFN 768, untied): rows of 288 fit no
 * K-quant block: Q4_K falls back to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, Q2_K/Q3_K to IQ4_NL */
static const mix_ref ref_b[] = {
    {"q4_0",   "AE AAAAAAA AAAAAAA AAAAAAA AAAAAAA", NULL, NULL},
    {"q4_1",   "BE BBBBBBB BBBBBBB BBBBBBB BBBBBBB", NULL, NULL},
    {"q5_0",   "CE CCCCCCC CCCCCCC CCCCCCC CCCCCCC", NULL, NULL},
    {"q5_1",   "DE DDDDDDD DDDDDDD DDDDDDD DDDDDDD", NULL, NULL},
    {"q8_0",   "EE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", NULL, NULL},
    {"q2_k",   "NE NNNNNN3 NNNNNN3 NNNNNN3 NNNNNN3", NULL, NULL},
    {"q3_k_s", "NE NNNNNN3 NNNNNN3 NNNNNN3 NNNNNN3", NULL, NULL},
    {"q3_k_m", "NE NNDCNN4 NNDCNN4 NNCCNN4 NNCCNN4", NULL, NULL},
    {"q3_k_l", "NE NNDDNN5 NNDDNN5 NNDDNN5 NNDDNN5", NULL, NULL},
    {"q4_k_s", "CE CCDCCC4 CCDCCC4 CCDCCC4 CCDCCC4", NULL, NULL},
    {"q4_k_m", "CE CCCCCC4 CCCCCC4 CCECCC6 CCECCC6", NULL, NULL},
    {"q5_k_s", "DE DDDDDD5 DDDDDD5 DDDDDD5 DDDDDD5", NULL, NULL},
    {"q5_k_m", "DE DDDDDD5 DDDDDD5 DDEDDD6 DDEDDD6", NULL, NULL},
    {"q6_k",   "EE EEEEEE6 EEEEEE6 EEEEEE6 EEEEEE6", NULL, NULL},
    {"iq4_nl", "NE NNNNNNN NNNNNNN NNNNNNN NNNNNNN", NULL, NULL},
    {"iq4_xs", "NE NNNNNNX NNNNNNX NNNNNNX NNNNNNX", NULL, NULL},
};
/* model C (dim 256, 4 layers, 4 heads / 1 KV head, untied): the token embedding and output
 * types given by name win over the mix (the "--token-embedding-type q4_1 ... Q8_0") */
static const mix_ref ref_c[] = {
    {"q8_0",   "BE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", "q4_1", NULL},
    {"q8_0",   "CE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", "q5_0", NULL},
    {"q8_0",   "DE EEEEEEE EEEEEEE EEEEEEE EEEEEEE", "q5_1", NULL},
    {"q8_0",   "2E EEEEEEE EEEEEEE EEEEEEE EEEEEEE", "q2_k", NULL},
    {"q4_k_m", "36 4444444 4444444 4464446 4464446", "q3_k", NULL},
    {"q4_k_m", "4D 4444444 4444444 4464446 4464446", NULL, "q5_1"},
    {"q3_k_m", "6A 3354334 3354334 3344334 3344334", "q6_k", "q4_0"},
};
// clang-format on

/* Plans every mix of ref for a model made with o; the one numbered `write` is also written,
 * and the file holds what was planned. */
static void check_mixes(const model_make_opts *o, const mix_ref *ref, int n, int write)
{
    const char *src = t_path("src.gguf"), *dst = t_path("dst.gguf");
    kl_err err = {0};
    T_EQ(model_make(o, src, &err), 0);
    gguf_file *f, *g;
    T_EQ(gguf_open(&f, src, &err), 0);
    kl_dtype *to = malloc(sizeof *to * (size_t)gguf_n_tensors(f));
    char got[512], written[512];
    for (int i = 0; i < n; i++) {
        model_quantize_opts qo = {
            .mix = ref[i].mix, .token_embd_type = ref[i].embd, .output_type = ref[i].out};
        T_EQ(model_quantize_plan(f, src, &qo, to, &err), 0);
        types_of(f, to, o->layers, got);
        if (strcmp(got, ref[i].want)) fprintf(stderr, "# mix %s (%d)\n", ref[i].mix, i);
        T_STREQ(got, ref[i].want);
        if (i != write) continue;
        T_EQ(model_quantize(src, dst, &qo, &err), 0);
        T_EQ(gguf_open(&g, dst, &err), 0);
        types_of(g, NULL, o->layers, written);
        T_STREQ(written, got);
        gguf_close(g);
    }
    free(to);
    gguf_close(f);
}

TEST(model_quantize_mixes_choose_llama_quantizes_types)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 256, o.layers = 16, o.heads = 8, o.kv_heads = 2, o.ffn = 512, o.vocab = 300;
    o.tied = true;
    check_mixes(&o, ref_a, (int)(sizeof ref_a / sizeof ref_a[0]), 7); /* q3_k_m */
    model_make_defaults(&o);
    o.dim = 288, o.layers = 4, o.heads = 6, o.kv_heads = 2, o.ffn = 768, o.vocab = 300;
    check_mixes(&o, ref_b, (int)(sizeof ref_b / sizeof ref_b[0]), 5); /* q2_k: iq4_nl */
    model_make_defaults(&o);
    o.dim = 256, o.layers = 4, o.heads = 4, o.kv_heads = 1, o.ffn = 512, o.vocab = 300;
    check_mixes(&o, ref_c, (int)(sizeof ref_c / sizeof ref_c[0]), 6);
}

/* A type given by name that the rows do not fit, or that is no type, is refused by name. */
TEST(model_quantize_refuses_bad_override_types)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 288, o.layers = 1, o.ffn = 768, o.vocab = 300, o.heads = 6;
    const char *src = t_path("src.gguf"), *dst = t_path("dst.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, src, &err), 0);
    model_quantize_opts qo = {.mix = "q8_0", .token_embd_type = "q4_k"};
    T_EQ(model_quantize(src, dst, &qo, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "token_embd.weight");
    T_CONTAINS(err.msg, "q4_k");
    qo = (model_quantize_opts){.mix = "q8_0", .output_type = "q9_9"};
    T_EQ(model_quantize(src, dst, &qo, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "q9_9");
}

/* Per-token log-probabilities of the fixed sequence `toks` under the model at path, and the
 * next 8 greedy tokens decoded one at a time through the cache (into gen). */
enum { NTOK = 48, NGEN = 8 };
static void run_model(const char *path, const int32_t *toks, double *lp, int32_t *gen)
{
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    model *m;
    model_opts mo = {.max_batch_tokens = NTOK, .max_logits = NTOK};
    T_EQ(model_load(&m, f, &mo, &err), 0);
    const model_hparams *hp = model_hparams_of(m);
    kv_store *kv;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F16, 4u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int nb = kv_store_n_blocks(kv);
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        blocks[i] = i;
    model_seq sq = {blocks, nb};
    float *logits = malloc(sizeof(float) * NTOK * (size_t)hp->n_vocab);
    kl_workers *w = kl_workers_create(2);
    t_batch tb;
    T_EQ(model_forward(m, w, kv, t_batch_seq(&tb, &sq, toks, NTOK, 0), logits, &err), 0);
    for (int i = 0; i + 1 < NTOK; i++) {
        const float *row = logits + (size_t)i * hp->n_vocab;
        double mx = row[0], s = 0;
        for (int v = 1; v < hp->n_vocab; v++)
            mx = fmax(mx, (double)row[v]);
        for (int v = 0; v < hp->n_vocab; v++)
            s += exp((double)row[v] - mx);
        lp[i] = (double)row[toks[i + 1]] - mx - log(s);
    }
    for (int g = 0; g < NGEN; g++) {
        const float *row = logits + (size_t)(g ? 0 : NTOK - 1) * hp->n_vocab;
        int best = 0;
        for (int v = 1; v < hp->n_vocab; v++)
            if (row[v] > row[best]) best = v;
        gen[g] = best;
        int32_t t1 = best;
        T_EQ(model_forward(m, w, kv, t_batch_seq(&tb, &sq, &t1, 1, NTOK + g), logits, &err), 0);
    }
    kl_workers_destroy(w);
    free(logits);
    free(blocks);
    kv_store_destroy(kv);
    model_free(m);
    gguf_close(f);
}

/* Each file (mix, token embedding type) made here by kiln model quantize loads and generates
 * on every ISA. Its log-probabilities are those of the same weights dequantized to F32 (kiln
 * model quantize back to f32) up to the activations' 8-bit quantization: mean |difference|
 * under 0.015 (measured 0.002-0.005 here, where a model that ignored its weights would be 0.26
 * off); and each SIMD path's are the scalar reference's up to float summation order: the
 * same to 1e-7, or where a sum's last bit moves an activation across a rounding boundary of
 * its 8-bit quantization, a mean of 0.0026 and a max of 0.01 at most here (bounds 0.005 and
 * 0.03; a sub-block scale off by one costs 0.08). */
static void check_runs(const char *const (*files)[2], int n)
{
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 256, o.layers = 2, o.heads = 4, o.kv_heads = 2, o.ffn = 512, o.vocab = 300;
    const char *src = t_path("f32.gguf"), *q = t_path("q.gguf"), *deq = t_path("deq.gguf");
    kl_err err = {0};
    T_EQ(model_make(&o, src, &err), 0);
    int32_t toks[NTOK], gen[NGEN], gen_ref[NGEN];
    for (int i = 0; i < NTOK; i++)
        toks[i] = (int32_t)((i * 37 + 11) % o.vocab);
    double ref[NTOK], scalar[NTOK], lp[NTOK];
    for (int i = 0; i < n; i++) {
        model_quantize_opts qo = {.mix = files[i][0], .token_embd_type = files[i][1]};
        T_EQ(model_quantize(src, q, &qo, &err), 0);
        T_EQ(model_quantize(q, deq, &(model_quantize_opts){.mix = "f32"}, &err), 0);
        run_model(deq, toks, ref, gen_ref);
        for (const char *const *isa = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *isa;
             isa++) {
            if (!kl_isa_find(*isa)) continue;
            kl_isa_set(kl_isa_find(*isa));
            run_model(q, toks, lp, gen);
            kl_isa_set(NULL);
            double d = 0, ds = 0, dmax = 0;
            for (int k = 0; k + 1 < NTOK; k++) {
                d += fabs(lp[k] - ref[k]);
                if (!strcmp(*isa, "scalar")) continue;
                ds += fabs(lp[k] - scalar[k]);
                dmax = fmax(dmax, fabs(lp[k] - scalar[k]));
            }
            d /= NTOK - 1, ds /= NTOK - 1;
            if (!strcmp(*isa, "scalar")) memcpy(scalar, lp, sizeof scalar);
            if (!(d < 0.015 && ds < 0.005 && dmax < 0.03))
                fprintf(
                    stderr,
                    "# %s (token_embd %s) %s: mean |d| %.4f vs F32, %.2g (max %.2g) vs scalar\n",
                    files[i][0], files[i][1] ? files[i][1] : "-", *isa, d, ds, dmax);
            T_ASSERT(d < 0.015);
            T_ASSERT(ds < 0.005 && dmax < 0.03);
            for (int g = 0; g < NGEN; g++) /* near-ties may go either way: only in range */
                T_ASSERT(gen[g] >= 0 && gen[g] < o.vocab);
        }
    }
}

TEST(model_quantize_each_mix_loads_and_generates)
{
    static const char *const mixes[][2] = {
        {"q4_0", NULL},   {"q4_1", NULL},   {"q5_0", NULL},   {"q5_1", NULL},
        {"q8_0", NULL},   {"q2_k", NULL},   {"q3_k_s", NULL}, {"q3_k_m", NULL},
        {"q3_k_l", NULL}, {"q4_k_s", NULL}, {"q4_k_m", NULL}, {"q5_k_s", NULL},
        {"q5_k_m", NULL}, {"q6_k", NULL},   {"iq4_nl", NULL}, {"iq4_xs", NULL}};
    check_runs(mixes, (int)(sizeof mixes / sizeof mixes[0]));
}

/* The token embedding types llama-quantize can be told to use (--token-embedding-type): the
 * row lookup of each (a type without one once gave token 0 forever). */
TEST(model_quantize_token_embedding_types_load_and_generate)
{
    static const char *const files[][2] = {{"q8_0", "q4_0"}, {"q8_0", "q4_1"}, {"q8_0", "q5_0"},
                                           {"q8_0", "q5_1"}, {"q8_0", "q2_k"}, {"q8_0", "q3_k"},
                                           {"q8_0", "q4_k"}, {"q8_0", "q5_k"}};
    check_runs(files, (int)(sizeof files / sizeof files[0]));
}
