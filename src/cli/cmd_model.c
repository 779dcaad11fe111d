/* cli/cmd_model.c: `kiln model inspect|make|quantize|convert-llama2c|split`. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int inspect(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: kiln model inspect FILE\n");
        return 2;
    }
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, argv[1], &err)) return cli_fail(&err);
    printf("%s: GGUF v%u, alignment %u, %" PRIu64 " bytes, data at offset %" PRIu64 "\n", argv[1],
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

static int make_usage(void)
{
    fprintf(
        stderr,
        "usage: kiln model make --out FILE [--arch llama] [--dim D] [--layers L] [--heads H]\n"
        "         [--kv-heads K] [--ffn F] [--vocab-from VOCAB.gguf | --vocab N] [--ctx C]\n"
        "         [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k] [--seed S] [--rope-theta T] [--tied]\n"
        "         [--std X] [--threads N]\n");
    return 2;
}

static int make(int argc, char **argv)
{
    model_make_opts o;
    model_make_defaults(&o);
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--tied")) {
            o.tied = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return make_usage();
        if (!v) {
            fprintf(stderr, "kiln: %s needs a value\n", a);
            return make_usage();
        }
        i++;
        if (!strcmp(a, "--out") || !strcmp(a, "-o"))
            out = v;
        else if (!strcmp(a, "--arch"))
            o.arch = v;
        else if (!strcmp(a, "--dim"))
            ok = parse_int(a, v, &o.dim);
        else if (!strcmp(a, "--layers"))
            ok = parse_int(a, v, &o.layers);
        else if (!strcmp(a, "--heads"))
            ok = parse_int(a, v, &o.heads);
        else if (!strcmp(a, "--kv-heads"))
            ok = parse_int(a, v, &o.kv_heads);
        else if (!strcmp(a, "--ffn"))
            ok = parse_int(a, v, &o.ffn);
        else if (!strcmp(a, "--vocab"))
            ok = parse_int(a, v, &o.vocab);
        else if (!strcmp(a, "--vocab-from"))
            o.vocab_from = v;
        else if (!strcmp(a, "--ctx"))
            ok = parse_int(a, v, &o.ctx);
        else if (!strcmp(a, "--threads"))
            ok = parse_int(a, v, &o.threads);
        else if (!strcmp(a, "--rope-theta"))
            ok = parse_float(a, v, &o.rope_theta);
        else if (!strcmp(a, "--std"))
            ok = parse_float(a, v, &o.std);
        else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(v, &end, 10);
            if (end == v || *end) {
                fprintf(stderr, "kiln: --seed: '%s' is not a number\n", v);
                ok = false;
            }
        } else if (!strcmp(a, "--type")) {
            int t = kl_dtype_from_name(v);
            if (t < 0) {
                fprintf(stderr, "kiln: --type: unknown type '%s'\n", v);
                ok = false;
            } else
                o.type = (kl_dtype)t;
        } else {
            fprintf(stderr, "kiln: model make: unknown option '%s'\n", a);
            return make_usage();
        }
        if (!ok) return 2;
    }
    if (!out) {
        fprintf(stderr, "kiln: model make: --out FILE is required\n");
        return make_usage();
    }
    kl_err err = {0};
    if (model_make(&o, out, &err)) return cli_fail(&err);
    return 0;
}

static int quantize(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: kiln model quantize IN OUT TYPE  (q8_0 q4_0 f16 bf16 q4_k q6_k)\n");
        return 2;
    }
    int t = kl_dtype_from_name(argv[3]);
    if (t < 0) {
        fprintf(stderr, "kiln: unknown type '%s'\n", argv[3]);
        return 2;
    }
    kl_err err = {0};
    if (model_quantize(argv[1], argv[2], (kl_dtype)t, &err)) return cli_fail(&err);
    return 0;
}

static int convert_llama2c(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: kiln model convert-llama2c CHECKPOINT TOKENIZER OUT\n");
        return 2;
    }
    kl_err err = {0};
    if (model_convert_llama2c(argv[1], argv[2], argv[3], &err)) return cli_fail(&err);
    return 0;
}

static int split(int argc, char **argv)
{
    int max_tensors = 0;
    if (argc != 5 || strcmp(argv[3], "--max-tensors") ||
        !cli_int("--max-tensors", argv[4], 1, 1 << 30, &max_tensors)) {
        fprintf(stderr, "usage: kiln model split IN OUT_PREFIX --max-tensors N\n");
        return 2;
    }
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, argv[1], &err)) return cli_fail(&err);
    int n = 0;
    int rc = gguf_write_split(f, argv[2], max_tensors, &n, &err);
    gguf_close(f);
    if (rc) return cli_fail(&err);
    printf("%s-00001-of-%05d.gguf (%d shards)\n", argv[2], n, n);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    if (!strcmp(sub, "inspect")) return inspect(argc - 1, argv + 1);
    if (!strcmp(sub, "make")) return make(argc - 1, argv + 1);
    if (!strcmp(sub, "quantize")) return quantize(argc - 1, argv + 1);
    if (!strcmp(sub, "convert-llama2c")) return convert_llama2c(argc - 1, argv + 1);
    if (!strcmp(sub, "split")) return split(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return cmd_model_bench(argc - 1, argv + 1);
    if (!strcmp(sub, "bench-engine")) return cmd_engine_bench(argc - 1, argv + 1);
    fprintf(stderr, "usage: kiln model inspect FILE\n"
                    "       kiln model make --out FILE [options]   (--help for the options)\n"
                    "       kiln model quantize IN OUT TYPE\n"
                    "       kiln model convert-llama2c CHECKPOINT TOKENIZER OUT\n"
                    "       kiln model split IN OUT_PREFIX --max-tensors N\n"
                    "       kiln model bench | bench-engine ...\n");
    return 2;
}
