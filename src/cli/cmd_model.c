/* cli/cmd_model.c: `kiln model inspect|make|make-lora|quantize|convert-llama2c|split|bench|
 * bench-engine`. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "gguf/gguf.h"
#include "model/make.h"

#define ARR_SHOWN 8   /* array elements printed before "..." */
#define STR_SHOWN 120 /* bytes of a string printed before "..." */

/* Prints s (len bytes) in double quotes, escaping control bytes, cut after max bytes. */
static void print_str(const char *s, uint64_t len, uint64_t max)
{
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (len > max) printf("...(%" PRIu64 " bytes)", len);
}

/* Prints element i of a fixed-size array. */
static void print_elem(const gguf_arr *a, uint64_t i)
{
    const uint8_t *p = (const uint8_t *)a->data + i * gguf_vtype_size(a->type);
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
    } v;
    memcpy(&v, p, gguf_vtype_size(a->type));
    switch (a->type) {
    case GGUF_U8:
        printf("%u", v.u8);
        break;
    case GGUF_I8:
        printf("%d", v.i8);
        break;
    case GGUF_U16:
        printf("%u", v.u16);
        break;
    case GGUF_I16:
        printf("%d", v.i16);
        break;
    case GGUF_U32:
        printf("%" PRIu32, v.u32);
        break;
    case GGUF_I32:
        printf("%" PRId32, v.i32);
        break;
    case GGUF_U64:
        printf("%" PRIu64, v.u64);
        break;
    case GGUF_I64:
        printf("%" PRId64, v.i64);
        break;
    case GGUF_F32:
        printf("%.9g", (double)v.f32);
        break;
    case GGUF_F64:
        printf("%.17g", v.f64);
        break;
    case GGUF_BOOL:
        printf("%s", v.u8 ? "true" : "false");
        break;
    default:
        printf("?");
        break;
    }
}

static void print_value(const gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64:
        printf("%" PRIu64, kv->v.u64);
        break;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        printf("%" PRId64, kv->v.i64);
        break;
    case GGUF_F32:
        printf("%.9g", kv->v.f64);
        break;
    case GGUF_F64:
        printf("%.17g", kv->v.f64);
        break;
    case GGUF_BOOL:
        printf("%s", kv->v.b ? "true" : "false");
        break;
    case GGUF_STRING:
        print_str(kv->v.str.ptr, kv->v.str.len, STR_SHOWN);
        break;
    case GGUF_ARRAY: {
        const gguf_arr *a = &kv->v.arr;
        if (a->type == GGUF_ARRAY) {
            printf("[%" PRIu64 " nested arrays, %" PRIu64 " bytes]", a->n, a->nbytes);
            break;
        }
        printf("[");
        for (uint64_t i = 0; i < a->n && i < ARR_SHOWN; i++) {
            if (i) printf(", ");
            if (a->type == GGUF_STRING)
                print_str(a->strs[i].ptr, a->strs[i].len, 40);
            else
                print_elem(a, i);
        }
        if (a->n > ARR_SHOWN) printf(", ... (%" PRIu64 " total)", a->n);
        printf("]");
        break;
    }
    default:
        printf("?");
        break;
    }
}

/* The positional arguments of a command that takes exactly n of them (and no option) into
 * args[]. Returns 0, or CLI_EXIT with *status set (help printed, or a usage error). */
static int positionals(const cli_cmd *cmd, int argc, char **argv, int n, const char **args,
                       int *status)
{
    cli_args a;
    cli_args_init(&a, cmd, argc, argv);
    const char *val;
    int got = 0;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        if (k == CLI_EXIT) {
            *status = a.status;
            return CLI_EXIT;
        }
        if (got == n) {
            *status = cli_usage_error(cmd, "unexpected argument '%s'", val);
            return CLI_EXIT;
        }
        args[got++] = val;
    }
    if (got < n) {
        *status = cli_usage_error(cmd, "expected %d argument%s, got %d", n, n > 1 ? "s" : "", got);
        return CLI_EXIT;
    }
    return 0;
}

static const cli_cmd inspect_cmd = {
    "model inspect", "FILE",
    "Validates a GGUF file (v2 or v3) and prints its version, alignment, every metadata key with\n"
    "its type and value (long arrays: the first 8 elements and the count) and the tensor table.\n",
    NULL, NULL};

static int inspect(int argc, char **argv)
{
    const char *path;
    int status;
    if (positionals(&inspect_cmd, argc, argv, 1, &path, &status)) return status;
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, path, &err)) return cli_fail(&err);
    printf("%s: GGUF v%u, alignment %u, %" PRIu64 " bytes, data at offset %" PRIu64 "\n", path,
           gguf_version(f), gguf_alignment(f), gguf_file_size(f), gguf_data_offset(f));
    if (gguf_n_shards(f) > 1) printf("split: %d files, read as one model\n", gguf_n_shards(f));
    printf("\nmetadata: %" PRId64 " keys\n", gguf_n_kv(f));
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char type[32];
        if (kv->type == GGUF_ARRAY)
            snprintf(type, sizeof type, "%s[%s]", "array", gguf_vtype_name(kv->v.arr.type));
        else
            snprintf(type, sizeof type, "%s", gguf_vtype_name(kv->type));
        printf("%5" PRId64 ": %-14s %-44s = ", i + 1, type, kv->key);
        print_value(kv);
        printf("\n");
    }
    printf("\ntensors: %" PRId64 "\n", gguf_n_tensors(f));
    printf("%5s  %-36s %-6s %-24s %12s %12s\n", "#", "name", "type", "shape", "offset", "bytes");
    uint64_t total = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        int n = 0;
        for (int d = 0; d < t->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, d ? " x " : "",
                          t->ne[d]);
        printf("%5" PRId64 "  %-36s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", i + 1, t->name,
               kl_dtype_get(t->type)->name, shape, t->offset, t->nbytes);
        total += t->nbytes;
    }
    printf("total tensor bytes: %" PRIu64 "\n", total);
    gguf_close(f);
    return 0;
}

/* Parses a positive int option value; false (with a message) when it is not one. */
static bool parse_int(const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v <= 0 || v > INT32_MAX) {
        fprintf(stderr, "kiln: %s: '%s' is not a positive integer\n", opt, s);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool parse_float(const char *opt, const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v > 0.0f)) {
        fprintf(stderr, "kiln: %s: '%s' is not a positive number\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

enum {
    O_OUT = CLI_LONG,
    O_ARCH,
    O_DIM,
    O_LAYERS,
    O_HEADS,
    O_KV_HEADS,
    O_FFN,
    O_VOCAB,
    O_VOCAB_FROM,
    O_CTX,
    O_TYPE,
    O_SEED,
    O_ROPE_THETA,
    O_TIED,
    O_STD,
    O_THREADS,
    O_SWA,
    O_EXPERTS,
    O_EXPERTS_USED,
    O_FFN_SHARED,
    O_Q_LORA,
    O_KV_LORA,
    O_DENSE_LEAD,
    O_EXPERTS_SHARED,
    O_SIGMOID,
    O_EXPERTS_SPLIT,
    O_COPY,
};

static const cli_opt make_opts[] = {
    {O_OUT, "out", "FILE", "the GGUF file to write (required; -o also works)"},
    {'o', NULL, "FILE", "the same as --out"},
    {O_ARCH, "arch", "ARCH",
     "architecture (default llama): llama, qwen2, qwen3, gemma, gemma2, gemma3, phi3, granite, "
     "olmo2, command-r, starcoder2, qwen2moe, qwen3moe, deepseek2 (llama with --experts: "
     "Mixtral), bert, nomic-bert (embedding models: give them --vocab-from a WordPiece vocab)"},
    {O_DIM, "dim", "D", "embedding width (default 64)"},
    {O_LAYERS, "layers", "L", "transformer layers (default 2)"},
    {O_HEADS, "heads", "H", "attention heads (default 4)"},
    {O_KV_HEADS, "kv-heads", "K", "key/value heads (default 2)"},
    {O_FFN, "ffn", "F", "feed-forward width (default 192)"},
    {O_VOCAB, "vocab", "N", "a synthetic SentencePiece vocab of N tokens (default 512)"},
    {O_VOCAB_FROM, "vocab-from", "FILE",
     "copy every tokenizer.* key of this GGUF file instead (e.g. ../shared/vocab/*.gguf)"},
    {O_CTX, "ctx", "C", "context length (default 2048)"},
    {O_TYPE, "type", "TYPE", "weight type, any that model quantize writes (default f32)"},
    {O_SEED, "seed", "S", "random seed; the same seed gives the same bytes (default 42)"},
    {O_ROPE_THETA, "rope-theta", "T", "RoPE base frequency (default 10000)"},
    {O_TIED, "tied", NULL, "no output matrix: the token embeddings are used (default: untied)"},
    {O_STD, "std", "X", "standard deviation of the random weights (default 0.02)"},
    {O_THREADS, "threads", "N", "threads generating the weights (default 2)"},
    {O_SWA, "swa", "W",
     "sliding window of the layers that have one (default: none; gemma2 4096, "
     "gemma3 512)"},
    {O_EXPERTS, "experts", "N",
     "a Mixture of Experts: N experts per layer, each --ffn wide (default: none; qwen2moe and "
     "qwen3moe need it)"},
    {O_EXPERTS_USED, "experts-used", "K", "experts run per token (default 2)"},
    {O_FFN_SHARED, "ffn-shared", "F", "qwen2moe's shared expert's width (default: --ffn)"},
    {O_EXPERTS_SPLIT, "experts-split", NULL,
     "each expert its own 2-D tensor (blk.N.ffn_gate.E.weight ...), as Mixtral files converted "
     "before mid-2024 have them, not 3-D stacks (the same weights; llama.cpp's Feb 2025 tree "
     "no longer reads them)"},
    {O_COPY, "copy", NULL,
     "weights set by hand so that greedy decoding quotes its input (three layers of "
     "previous-token and induction heads, the rest zero), for speculative decoding benchmarks; "
     "llama, dim = 4 x kv-heads x dim/heads, --rope-theta 1e6 or more (1e7 for long inputs)"},
    {O_Q_LORA, "q-lora", "R",
     "deepseek2: the query's low rank; 0: a plain attn_q as V2-Lite (default dim/2, but 0 with "
     "27 layers: llama.cpp reads attn_q in 27-layer files only)"},
    {O_KV_LORA, "kv-lora", "R", "deepseek2: the compressed KV latent's rank (default dim/2)"},
    {O_DENSE_LEAD, "dense-lead", "N", "deepseek2: leading layers with a dense FFN (default 1)"},
    {O_EXPERTS_SHARED, "experts-shared", "N", "deepseek2: shared experts (default 1)"},
    {O_SIGMOID, "sigmoid", NULL,
     "deepseek2: DeepSeek-V3's routing (sigmoid, selection bias, renormalised, scaled 2.5)"},
    {0},
};

static const cli_cmd make_cmd = {
    "model make", "--out FILE [options]",
    "Writes a model of any architecture Kiln runs with random weights (normal; norms 1.0) and\n"
    "llama.cpp's tensor names and metadata keys, so the file loads in llama.cpp too.\n",
    make_opts, NULL};

static int make(int argc, char **argv)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *out = NULL;
    cli_args a;
    cli_args_init(&a, &make_cmd, argc, argv);
    const char *v;
    for (int k; (k = cli_args_next(&a, &v)) != CLI_END;) {
        bool ok = true;
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&make_cmd, "unexpected argument '%s'", v);
        case O_OUT:
        case 'o':
            out = v;
            break;
        case O_ARCH:
            o.arch = v;
            break;
        case O_DIM:
            ok = parse_int(a.opt, v, &o.dim);
            break;
        case O_LAYERS:
            ok = parse_int(a.opt, v, &o.layers);
            break;
        case O_HEADS:
            ok = parse_int(a.opt, v, &o.heads);
            break;
        case O_KV_HEADS:
            ok = parse_int(a.opt, v, &o.kv_heads);
            break;
        case O_FFN:
            ok = parse_int(a.opt, v, &o.ffn);
            break;
        case O_VOCAB:
            ok = parse_int(a.opt, v, &o.vocab);
            break;
        case O_VOCAB_FROM:
            o.vocab_from = v;
            break;
        case O_CTX:
            ok = parse_int(a.opt, v, &o.ctx);
            break;
        case O_THREADS:
            ok = parse_int(a.opt, v, &o.threads);
            break;
        case O_SWA:
            ok = parse_int(a.opt, v, &o.swa);
            break;
        case O_EXPERTS:
            ok = parse_int(a.opt, v, &o.experts);
            break;
        case O_EXPERTS_USED:
            ok = parse_int(a.opt, v, &o.experts_used);
            break;
        case O_FFN_SHARED:
            ok = parse_int(a.opt, v, &o.ffn_shared);
            break;
        case O_Q_LORA:
            ok = parse_int(a.opt, v, &o.q_lora);
            break;
        case O_KV_LORA:
            ok = parse_int(a.opt, v, &o.kv_lora);
            break;
        case O_DENSE_LEAD:
            ok = parse_int(a.opt, v, &o.dense_lead);
            break;
        case O_EXPERTS_SHARED:
            ok = parse_int(a.opt, v, &o.experts_shared);
            break;
        case O_SIGMOID:
            o.sigmoid = true;
            break;
        case O_EXPERTS_SPLIT:
            o.experts_split = true;
            break;
        case O_COPY:
            o.copy = true;
            break;
        case O_ROPE_THETA:
            ok = parse_float(a.opt, v, &o.rope_theta);
            break;
        case O_STD:
            ok = parse_float(a.opt, v, &o.std);
            break;
        case O_TIED:
            o.tied = true;
            break;
        case O_SEED:
            ok = cli_seed(v, &o.seed);
            break;
        case O_TYPE:
            ok = cli_dtype(v, &o.type);
            break;
        }
        if (!ok) return 2;
    }
    if (!out) return cli_usage_error(&make_cmd, "--out FILE is required");
    kl_err err = {0};
    if (model_make(&o, out, &err)) return cli_fail(&err);
    return 0;
}

enum { O_PURE = CLI_LONG, O_QTHREADS, O_EMBD_TYPE, O_OUTPUT_TYPE };

static const cli_opt quantize_opts[] = {
    {O_PURE, "pure", NULL, "every converted tensor in the mix's main type (no per-tensor rules)"},
    {O_QTHREADS, "threads", "N", "threads converting rows (default 2)"},
    {O_EMBD_TYPE, "token-embedding-type", "TYPE", "token_embd.weight in TYPE (e.g. q4_1)"},
    {O_OUTPUT_TYPE, "output-tensor-type", "TYPE", "output.weight in TYPE (e.g. q8_0)"},
    {0},
};

static const cli_cmd quantize_cmd = {
    "model quantize", "IN OUT TYPE [options]",
    "Writes OUT: IN with its weight matrices in a quantization mix, with llama-quantize's names\n"
    "and per-tensor types: q4_k_m q4_k_s q5_k_m q5_k_s q3_k_s q3_k_m q3_k_l q2_k q6_k q8_0 q4_0\n"
    "q4_1 q5_0 q5_1 iq4_nl iq4_xs (q3_k q4_k q5_k: the _m mixes), or f16 bf16 f32. Norms and\n"
    "1-D tensors are copied as they are; general.file_type is the mix's, all other metadata\n"
    "copied.\n",
    quantize_opts, NULL};

static int quantize(int argc, char **argv)
{
    model_quantize_opts o = {.threads = 2};
    const char *args[3];
    int got = 0;
    cli_args a;
    cli_args_init(&a, &quantize_cmd, argc, argv);
    const char *v;
    for (int k; (k = cli_args_next(&a, &v)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            if (got == 3) return cli_usage_error(&quantize_cmd, "unexpected argument '%s'", v);
            args[got++] = v;
            break;
        case O_PURE:
            o.pure = true;
            break;
        case O_QTHREADS:
            if (!parse_int(a.opt, v, &o.threads)) return 2;
            break;
        case O_EMBD_TYPE:
            o.token_embd_type = v;
            break;
        case O_OUTPUT_TYPE:
            o.output_type = v;
            break;
        }
    }
    if (got < 3) return cli_usage_error(&quantize_cmd, "expected 3 arguments, got %d", got);
    o.mix = args[2];
    kl_err err = {0};
    if (model_quantize(args[0], args[1], &o, &err)) return cli_fail(&err);
    return 0;
}

static const cli_cmd convert_cmd = {
    "model convert-llama2c", "CHECKPOINT TOKENIZER OUT",
    "Converts a llama2.c checkpoint (legacy v0) and its tokenizer.bin to GGUF, as llama.cpp's\n"
    "converter does.\n",
    NULL, NULL};

static int convert_llama2c(int argc, char **argv)
{
    const char *args[3];
    int status;
    if (positionals(&convert_cmd, argc, argv, 3, args, &status)) return status;
    kl_err err = {0};
    if (model_convert_llama2c(args[0], args[1], args[2], &err)) return cli_fail(&err);
    return 0;
}

static const cli_opt split_opts[] = {
    {CLI_LONG, "max-tensors", "N", "tensors per shard at most (required)"},
    {0},
};

static const cli_cmd split_cmd = {
    "model split", "IN OUT_PREFIX --max-tensors N",
    "Writes IN as shards OUT_PREFIX-00001-of-0000K.gguf ... in llama.cpp's gguf-split layout\n"
    "(gguf_open of the first shard opens them as one model).\n",
    split_opts, NULL};

static int split(int argc, char **argv)
{
    int max_tensors = 0, got = 0;
    const char *args[2];
    cli_args a;
    cli_args_init(&a, &split_cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        if (k == CLI_EXIT) return a.status;
        if (k == CLI_LONG && !cli_int("--max-tensors", val, 1, 1 << 30, &max_tensors)) return 1;
        if (k == CLI_ARG && got == 2)
            return cli_usage_error(&split_cmd, "unexpected argument '%s'", val);
        if (k == CLI_ARG) args[got++] = val;
    }
    if (got < 2 || !max_tensors)
        return cli_usage_error(&split_cmd, "IN, OUT_PREFIX and --max-tensors N are required");
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, args[0], &err)) return cli_fail(&err);
    int n = 0;
    int rc = gguf_write_split(f, args[1], max_tensors, &n, &err);
    gguf_close(f);
    if (rc) return cli_fail(&err);
    printf("%s-00001-of-%05d.gguf (%d shards)\n", args[1], n, n);
    return 0;
}

static const cli_cmd model_cmd = {
    "model", "<subcommand> [options]",
    "Model files:\n"
    "  inspect FILE                          validate a GGUF file and print its contents\n"
    "  make --out FILE [options]             write a random-weight llama model\n"
    "  make-lora --base FILE --out FILE      write a random LoRA adapter for a model\n"
    "  quantize IN OUT TYPE                  convert the weight matrices to another type\n"
    "  convert-llama2c CHECKPOINT TOK OUT    a llama2.c checkpoint to GGUF\n"
    "  split IN OUT_PREFIX --max-tensors N   write a model as shards (llama.cpp's gguf-split)\n"
    "  bench -m FILE [options]               prompt and generation throughput\n"
    "  bench-engine -m FILE --prefix|--chunked   the engine's scheduling benchmarks\n",
    NULL, "'kiln model <subcommand> --help' describes a subcommand.\n"};

int cmd_model(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
    } subs[] = {{"inspect", inspect},
                {"make", make},
                {"make-lora", cmd_model_make_lora},
                {"quantize", quantize},
                {"convert-llama2c", convert_llama2c},
                {"split", split},
                {"bench", cmd_model_bench},
                {"bench-engine", cmd_engine_bench}};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    for (size_t i = 0; sub && i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(sub, subs[i].name)) return subs[i].fn(argc - 1, argv + 1);
    if (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h"))) {
        cli_help_print(&model_cmd, stdout);
        return 0;
    }
    if (!sub) return cli_usage_error(&model_cmd, "which subcommand?");
    return cli_usage_error(&model_cmd, "unknown subcommand '%s'", sub);
}
