/* gguf/read.c: the bounds-checked GGUF parser.
 *
 * Rules (RELIABILITY.md 1.1): every length and count read from the file is checked against
 * the bytes left before anything is allocated or read; every size expression goes through
 * base/ckd.h; every (offset, size) pair is checked against the real file length before a
 * pointer is formed. Allocation is bounded by a small multiple of the file size. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utf8proc.h>

#include "base/ckd.h"
#include "gguf/internal.h"

/* A read cursor over the file's bytes. Every read checks the bytes left. */
typedef struct cursor {
    const uint8_t *p;
    uint64_t off, size;
    const char *path;
    kl_err *err;
} cursor;

static int bad(cursor *c, const char *what)
{
    return kl_errf(c->err, KL_EBADFILE, "%s: %s (at byte %llu)", c->path, what,
                   (unsigned long long)c->off);
}

static uint64_t left(const cursor *c)
{
    return c->size - c->off;
}

static int take(cursor *c, void *dst, uint64_t n, const char *what)
{
    if (n > left(c)) return bad(c, what);
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return 0;
}

static int u32(cursor *c, uint32_t *v, const char *what)
{
    return take(c, v, 4, what);
}

static int u64(cursor *c, uint64_t *v, const char *what)
{
    return take(c, v, 8, what);
}

static int keep(gguf_file *f, void *p)
{
    if (f->n_owned == f->cap_owned) {
        size_t cap = f->cap_owned ? f->cap_owned * 2 : 64;
        char **n = realloc(f->owned, cap * sizeof *n);
        if (!n) return KL_ENOMEM;
        f->owned = n;
        f->cap_owned = cap;
    }
    f->owned[f->n_owned++] = p;
    return 0;
}

/* Reads a string: u64 length then bytes, all inside the file. */
static int str(cursor *c, gguf_str *s, const char *what)
{
    char msg[160];
    int rc = u64(c, &s->len, what);
    if (rc) return rc;
    if (s->len > left(c)) {
        snprintf(msg, sizeof msg, "%s: length %llu runs past end of file", what,
                 (unsigned long long)s->len);
        return bad(c, msg);
    }
    s->ptr = (const char *)c->p + c->off;
    c->off += s->len;
    return 0;
}

static int copy_str(gguf_file *f, const gguf_str *s, const char **out, kl_err *err)
{
    if (memchr(s->ptr, 0, s->len))
        return kl_errf(err, KL_EBADFILE, "%s: string contains a NUL byte", f->path);
    char *p = malloc(s->len + 1);
    if (!p || keep(f, p)) {
        free(p);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", f->path);
    }
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    *out = p;
    return 0;
}

size_t gguf_vtype_size(gguf_vtype t)
{
    static const size_t sizes[GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_VTYPE_COUNT ? sizes[t] : 0;
}

const char *gguf_vtype_name(gguf_vtype t)
{
    static const char *names[GGUF_VTYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                  "i32", "f32", "bool", "string", "array",
                                                  "u64", "i64", "f64"};
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

static int value(gguf_file *f, cursor *c, gguf_vtype t, gguf_kv *kv, int depth);

/* Reads an array body (element type, count, elements) into a. Arrays of strings get an index
 * of their elements; nested arrays are walked (bounded depth) to validate and measure them. */
static int array(gguf_file *f, cursor *c, gguf_arr *a, int depth)
{
    uint32_t et;
    int rc = u32(c, &et, "array element type truncated");
    if (rc) return rc;
    if (et >= GGUF_VTYPE_COUNT) return bad(c, "unknown array element type");
    a->type = (gguf_vtype)et;
    if ((rc = u64(c, &a->n, "array length truncated"))) return rc;
    a->data = c->p + c->off;
    size_t es = gguf_vtype_size(a->type);
    if (es) {
        uint64_t nb;
        if (ckd_mul_u64(&nb, a->n, es) || nb > left(c))
            return bad(c, "array length runs past end of file");
        if (a->type == GGUF_BOOL)
            for (uint64_t i = 0; i < a->n; i++)
                if (c->p[c->off + i] > 1) return bad(c, "bool array element is not 0 or 1");
        c->off += nb;
        a->nbytes = nb;
        return 0;
    }
    /* Variable-size elements: each takes at least 8 bytes, which bounds n before we allocate. */
    if (a->n > left(c) / 8) return bad(c, "array length runs past end of file");
    uint64_t start = c->off;
    if (a->type == GGUF_STRING) {
        gguf_str *s = malloc((a->n ? a->n : 1) * sizeof *s);
        if (!s || keep(f, s)) {
            free(s);
            return kl_errf(c->err, KL_ENOMEM, "%s: out of memory", c->path);
        }
        for (uint64_t i = 0; i < a->n; i++)
            if ((rc = str(c, &s[i], "array string"))) return rc;
        a->strs = s;
    } else {
        if (depth >= GGUF_MAX_ARRAY_DEPTH) return bad(c, "arrays nested too deeply");
        for (uint64_t i = 0; i < a->n; i++) {
            gguf_arr inner = {0};
            if ((rc = array(f, c, &inner, depth + 1))) return rc;
        }
    }
    a->nbytes = c->off - start;
    return 0;
}

static int value(gguf_file *f, cursor *c, gguf_vtype t, gguf_kv *kv, int depth)
{
    uint8_t b[8] = {0};
    int rc;
    switch (t) {
    case GGUF_U8:
        rc = take(c, b, 1, "value truncated");
        kv->v.u64 = b[0];
        return rc;
    case GGUF_I8:
        rc = take(c, b, 1, "value truncated");
        kv->v.i64 = (int8_t)b[0];
        return rc;
    case GGUF_U16: {
        uint16_t x = 0;
        rc = take(c, &x, 2, "value truncated");
        kv->v.u64 = x;
        return rc;
    }
    case GGUF_I16: {
        int16_t x = 0;
        rc = take(c, &x, 2, "value truncated");
        kv->v.i64 = x;
        return rc;
    }
    case GGUF_U32: {
        uint32_t x = 0;
        rc = take(c, &x, 4, "value truncated");
        kv->v.u64 = x;
        return rc;
    }
    case GGUF_I32: {
        int32_t x = 0;
        rc = take(c, &x, 4, "value truncated");
        kv->v.i64 = x;
        return rc;
    }
    case GGUF_F32: {
        float x = 0;
        rc = take(c, &x, 4, "value truncated");
        kv->v.f64 = (double)x;
        return rc;
    }
    case GGUF_BOOL:
        if ((rc = take(c, b, 1, "value truncated"))) return rc;
        if (b[0] > 1) return bad(c, "bool value is not 0 or 1");
        kv->v.b = b[0];
        return 0;
    case GGUF_STRING:
        return str(c, &kv->v.str, "string value");
    case GGUF_ARRAY:
        return array(f, c, &kv->v.arr, depth);
    case GGUF_U64:
        return take(c, &kv->v.u64, 8, "value truncated");
    case GGUF_I64:
        return take(c, &kv->v.i64, 8, "value truncated");
    case GGUF_F64:
        return take(c, &kv->v.f64, 8, "value truncated");
    default:
        return bad(c, "unknown value type");
    }
}

static int cmp_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fails if two strings in names[0..n) are equal. */
int gguf_find_duplicate(const char **names, int64_t n)
{
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return (int)(i > INT32_MAX ? INT32_MAX : i);
    return 0;
}

/* Keys name things ("tokenizer.ggml.model"; the spec asks for ASCII): valid UTF-8 without
 * control characters, so printing one (kiln model inspect, an error) cannot forge output. */
static bool key_text(const gguf_str *k)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)k->ptr;
    for (utf8proc_ssize_t i = 0, n = (utf8proc_ssize_t)k->len; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate(p + i, n - i, &cp);
        if (l <= 0 || cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return false;
        i += l;
    }
    return true;
}

static int parse_kvs(gguf_file *f, cursor *c)
{
    int rc = 0;
    /* Each KV takes at least 8 (key length) + 4 (type) + 1 bytes. */
    if ((uint64_t)f->n_kv > left(c) / 13) return bad(c, "metadata count larger than the file");
    f->kvs = calloc((size_t)f->n_kv + 1, sizeof *f->kvs);
    if (!f->kvs) return kl_errf(c->err, KL_ENOMEM, "%s: out of memory", c->path);
    for (int64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        gguf_str key;
        uint32_t t;
        uint64_t at = c->off;
        if ((rc = str(c, &key, "metadata key"))) return rc;
        if (key.len == 0) return bad(c, "empty metadata key");
        if (key.len > 65535) return bad(c, "metadata key longer than 65535 bytes");
        if (!key_text(&key))
            return kl_errf(c->err, KL_EBADFILE,
                           "%s: metadata key is not UTF-8 text (bad bytes or a control "
                           "character) (at byte %llu)",
                           c->path, (unsigned long long)at);
        if ((rc = copy_str(f, &key, &kv->key, c->err))) return rc;
        if ((rc = u32(c, &t, "metadata value type truncated"))) return rc;
        if (t >= GGUF_VTYPE_COUNT) {
            char msg[128];
            snprintf(msg, sizeof msg, "metadata '%.60s' has unknown value type %u", kv->key, t);
            return bad(c, msg);
        }
        kv->type = (gguf_vtype)t;
        if ((rc = value(f, c, kv->type, kv, 0))) return rc;
    }
    const char **names = malloc(((size_t)f->n_kv + 1) * sizeof *names);
    if (!names) return kl_errf(c->err, KL_ENOMEM, "%s: out of memory", c->path);
    for (int64_t i = 0; i < f->n_kv; i++)
        names[i] = f->kvs[i].key;
    int dup = gguf_find_duplicate(names, f->n_kv);
    if (dup)
        rc =
            kl_errf(c->err, KL_EBADFILE, "%s: duplicate metadata key '%.60s'", c->path, names[dup]);
    free(names);
    return rc;
}

static int parse_alignment(gguf_file *f, kl_err *err)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return 0;
    if (kv->type != GGUF_U32)
        return kl_errf(err, KL_EBADFILE, "%s: general.alignment has type %s, expected u32", f->path,
                       gguf_vtype_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
        return kl_errf(err, KL_EBADFILE,
                       "%s: general.alignment %llu is not a power of two up to %u", f->path,
                       (unsigned long long)a, GGUF_MAX_ALIGNMENT);
    /* The spec asks for a multiple of 8; below it, a tensor's data could sit at any address
     * and a kernel reading floats from it would read them misaligned. */
    if (a < GGUF_MIN_ALIGNMENT)
        return kl_errf(err, KL_EBADFILE,
                       "%s: general.alignment %llu is below %u (GGUF asks for a multiple of 8: "
                       "tensor data must be aligned for the kernels)",
                       f->path, (unsigned long long)a, GGUF_MIN_ALIGNMENT);
    f->alignment = (uint32_t)a;
    return 0;
}

/* The types the GGUF spec gives its well-known keys. A file that stores one with another
 * type (a string BOS id, a numeric chat template) would be misread or silently ignored by the
 * loaders: it is refused, naming the key. INT: any integer type. */
enum { K_STR, K_INT, K_BOOL, K_ARR_STR, K_ARR_NUM };
static const struct {
    const char *key;
    int kind;
} known_keys[] = {
    {"general.architecture", K_STR},
    {"general.name", K_STR},
    {"general.file_type", K_INT},
    {"general.quantization_version", K_INT},
    {"tokenizer.ggml.model", K_STR},
    {"tokenizer.ggml.pre", K_STR},
    {"tokenizer.ggml.tokens", K_ARR_STR},
    {"tokenizer.ggml.scores", K_ARR_NUM},
    {"tokenizer.ggml.token_type", K_ARR_NUM},
    {"tokenizer.ggml.merges", K_ARR_STR},
    {"tokenizer.ggml.bos_token_id", K_INT},
    {"tokenizer.ggml.eos_token_id", K_INT},
    {"tokenizer.ggml.unknown_token_id", K_INT},
    {"tokenizer.ggml.separator_token_id", K_INT},
    {"tokenizer.ggml.seperator_token_id", K_INT}, /* llama.cpp's spelling */
    {"tokenizer.ggml.padding_token_id", K_INT},
    {"tokenizer.ggml.cls_token_id", K_INT},
    {"tokenizer.ggml.mask_token_id", K_INT},
    {"tokenizer.ggml.eot_token_id", K_INT},
    {"tokenizer.ggml.eom_token_id", K_INT},
    {"tokenizer.ggml.add_bos_token", K_BOOL},
    {"tokenizer.ggml.add_eos_token", K_BOOL},
    {"tokenizer.ggml.add_space_prefix", K_BOOL},
    {"tokenizer.chat_template", K_STR},
};

static bool is_int_type(gguf_vtype t)
{
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

static int check_known_keys(gguf_file *f, kl_err *err)
{
    static const char *const want[] = {"string", "an integer", "bool", "an array of strings",
                                       "an array of numbers"};
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
        const gguf_kv *kv = gguf_find_kv(f, known_keys[i].key);
        if (!kv) continue;
        int k = known_keys[i].kind;
        bool arr = kv->type == GGUF_ARRAY;
        gguf_vtype et = arr ? kv->v.arr.type : kv->type;
        bool ok = k == K_STR       ? kv->type == GGUF_STRING
                  : k == K_INT     ? is_int_type(kv->type)
                  : k == K_BOOL    ? kv->type == GGUF_BOOL
                  : k == K_ARR_STR ? arr && et == GGUF_STRING
                                   : arr && (is_int_type(et) || et == GGUF_F32 || et == GGUF_F64);
        if (!ok)
            return kl_errf(err, KL_EBADFILE, "%s: %s has type %s%s, expected %s", f->path, kv->key,
                           arr ? "array of " : "", gguf_vtype_name(et), want[k]);
    }
    return 0;
}

static int parse_tensor_info(gguf_file *f, cursor *c, gguf_tensor *t)
{
    gguf_str name;
    uint32_t nd, type;
    char msg[200];
    int rc;
    if ((rc = str(c, &name, "tensor name"))) return rc;
    if (name.len == 0) return bad(c, "empty tensor name");
    if (name.len >= GGUF_MAX_NAME) return bad(c, "tensor name too long");
    if ((rc = copy_str(f, &name, &t->name, c->err))) return rc;
    if ((rc = u32(c, &nd, "tensor dimension count truncated"))) return rc;
    if (nd == 0 || nd > GGUF_MAX_DIMS) {
        snprintf(msg, sizeof msg, "tensor '%s' has %u dimensions (1 to %d allowed)", t->name, nd,
                 GGUF_MAX_DIMS);
        return bad(c, msg);
    }
    t->n_dims = (int)nd;
    uint64_t nelem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)nd && (rc = u64(c, &ne, "tensor dimension truncated"))) return rc;
        if (ne == 0 || ne > (uint64_t)INT64_MAX || ckd_mul_u64(&nelem, nelem, ne) ||
            nelem > (uint64_t)INT64_MAX) {
            snprintf(msg, sizeof msg, "tensor '%s' has an invalid shape (dimension %d is %llu)",
                     t->name, d, (unsigned long long)ne);
            return bad(c, msg);
        }
        t->ne[d] = (int64_t)ne;
    }
    if ((rc = u32(c, &type, "tensor type truncated"))) return rc;
    const kl_dtype_info *di = kl_dtype_get((int)type);
    if (!di) /* newer GGUF types are not corruption: say what is missing */
        return kl_errf(c->err, KL_EUNSUP,
                       "%s: tensor '%s' has type %u, which this version of Kiln does not support",
                       c->path, t->name, type);
    t->type = (kl_dtype)type;
    if (t->ne[0] % di->block_elems) {
        snprintf(msg, sizeof msg,
                 "tensor '%s': row length %lld is not a multiple of %s's block of %u", t->name,
                 (long long)t->ne[0], di->name, di->block_elems);
        return bad(c, msg);
    }
    uint64_t nb;
    if (ckd_mul_u64(&nb, nelem / di->block_elems, di->block_bytes)) {
        snprintf(msg, sizeof msg, "tensor '%s' size overflows", t->name);
        return bad(c, msg);
    }
    t->nbytes = nb;
    if ((rc = u64(c, &t->offset, "tensor offset truncated"))) return rc;
    if (t->offset % f->alignment) {
        snprintf(msg, sizeof msg, "tensor '%s' offset %llu is not a multiple of the alignment %u",
                 t->name, (unsigned long long)t->offset, f->alignment);
        return bad(c, msg);
    }
    return 0;
}

/* Checks every tensor lies inside the data section and no two overlap, then sets data. */
static int place_tensors(gguf_file *f, kl_err *err)
{
    uint64_t data_size = f->size > f->data_offset ? f->size - f->data_offset : 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (ckd_add_u64(&end, t->offset, t->nbytes) || end > data_size)
            return kl_errf(
                err, KL_EBADFILE, "%s: tensor '%s' (offset %llu, %llu bytes) ends past end of file",
                f->path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        t->data = f->base + f->data_offset + t->offset;
    }
    const gguf_tensor **order = malloc(((size_t)f->n_tensors + 1) * sizeof *order);
    if (!order) return kl_errf(err, KL_ENOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_offset);
    int rc = 0;
    for (int64_t i = 1; i < f->n_tensors && !rc; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
            rc = kl_errf(err, KL_EBADFILE, "%s: tensors '%s' and '%s' overlap", f->path,
                         order[i - 1]->name, order[i]->name);
    free(order);
    return rc;
}

static int parse_tensors(gguf_file *f, cursor *c)
{
    int rc = 0;
    /* Each tensor info takes at least 8 + 1 + 4 + 8 + 4 + 8 bytes. */
    if ((uint64_t)f->n_tensors > left(c) / 33) return bad(c, "tensor count larger than the file");
    f->tensors = calloc((size_t)f->n_tensors + 1, sizeof *f->tensors);
    if (!f->tensors) return kl_errf(c->err, KL_ENOMEM, "%s: out of memory", c->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        if ((rc = parse_tensor_info(f, c, &f->tensors[i]))) return rc;
    const char **names = malloc(((size_t)f->n_tensors + 1) * sizeof *names);
    if (!names) return kl_errf(c->err, KL_ENOMEM, "%s: out of memory", c->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    int dup = gguf_find_duplicate(names, f->n_tensors);
    if (dup)
        rc = kl_errf(c->err, KL_EBADFILE, "%s: duplicate tensor name '%s'", c->path, names[dup]);
    free(names);
    if (rc) return rc;
    if (ckd_pad_u64(&f->data_offset, c->off, f->alignment))
        return bad(c, "data section offset overflows");
    if (f->n_tensors && f->data_offset > f->size)
        return bad(c, "data section starts past end of file");
    return place_tensors(f, c->err);
}

static int parse(gguf_file *f, kl_err *err)
{
    cursor c = {.p = f->base, .off = 0, .size = f->size, .path = f->path, .err = err};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    int rc;
    if (f->size < 4) return bad(&c, "file too small to be GGUF");
    u32(&c, &magic, "");
    if (magic != GGUF_MAGIC)
        return kl_errf(err, KL_EBADFILE, "%s: not a GGUF file (bad magic)", f->path);
    if ((rc = u32(&c, &version, "header truncated"))) return rc;
    if (version == 1)
        return kl_errf(err, KL_EBADFILE,
                       "%s: GGUF version 1 is not supported (legacy format with 32-bit counts); "
                       "convert it to GGUF v3 with a current llama.cpp",
                       f->path);
    if (version == 0x02000000u || version == 0x03000000u)
        return kl_errf(err, KL_EBADFILE, "%s: big-endian GGUF is not supported", f->path);
    if (version != 2 && version != 3)
        return kl_errf(err, KL_EBADFILE, "%s: unsupported GGUF version %u (2 and 3 are supported)",
                       f->path, version);
    f->version = version;
    if ((rc = u64(&c, &n_tensors, "header truncated"))) return rc;
    if ((rc = u64(&c, &n_kv, "header truncated"))) return rc;
    if (n_tensors > (uint64_t)INT64_MAX || n_kv > (uint64_t)INT64_MAX)
        return bad(&c, "count in header out of range");
    f->n_tensors = (int64_t)n_tensors;
    f->n_kv = (int64_t)n_kv;
    if ((rc = parse_kvs(f, &c))) return rc;
    if ((rc = parse_alignment(f, err)) || (rc = check_known_keys(f, err))) return rc;
    return parse_tensors(f, &c);
}

static int finish_open(gguf_file *f, gguf_file **out, kl_err *err)
{
    int rc = parse(f, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int gguf_open_mem(gguf_file **out, const void *data, size_t len, const char *name, kl_err *err)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name ? name : "<memory>"))) {
        free(f);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    f->base = data;
    f->size = len;
    f->guard = -1;
    return finish_open(f, out, err);
}

int gguf_open_one(gguf_file **out, const char *path, kl_err *err)
{
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; anything but a
     * regular file is refused right after */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return kl_errf(err, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kl_errf(err, KL_EIO, "%s: not a regular file", path);
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    f->guard = -1;
    f->size = (uint64_t)st.st_size;
    f->id = (gguf_identity){(uint64_t)st.st_dev, (uint64_t)st.st_ino, f->size,
                            (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            free(f->path);
            free(f);
            return kl_errf(err, KL_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
        /* Weights are streamed once per token: 2 MiB mappings (where the page cache holds
         * huge folios) save the TLB misses and let the prefetcher run across 4 KiB pages. */
        madvise(m, f->size, MADV_HUGEPAGE);
        f->base = m;
        f->mapped = true;
        f->guard = gguf_guard_add(m, f->size); /* the file may be truncated while mapped */
    }
    close(fd);
    return finish_open(f, out, err);
}

int gguf_open(gguf_file **out, const char *path, kl_err *err)
{
    int rc = gguf_open_one(out, path, err);
    if (!rc && (rc = gguf_join_split(*out, err))) {
        gguf_close(*out);
        *out = NULL;
    }
    return rc;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_shards; i++)
        gguf_close(f->shards[i]);
    free(f->shards);
    if (f->mapped) {
        gguf_guard_remove(f->guard);
        munmap((void *)f->base, f->size);
    }
    for (size_t i = 0; i < f->n_owned; i++)
        free(f->owned[i]);
    free(f->owned);
    free(f->kvs);
    free(f->tensors);
    free(f->path);
    free(f);
}

uint64_t gguf_faults(const gguf_file *f)
{
    uint64_t n = gguf_guard_faults(f->guard);
    for (int i = 0; i < f->n_shards; i++)
        n += gguf_faults(f->shards[i]);
    return n;
}

bool gguf_identity_of(const gguf_file *f, gguf_identity *id)
{
    if (!f->mapped || f->n_shards) return false; /* a split model is several files */
    *id = f->id;
    return true;
}

void gguf_release(const gguf_file *f, const void *p, size_t n)
{
    /* only our own read-only file mapping: MADV_DONTNEED would zero caller memory */
    const uint8_t *a = p, *end = a + n;
    for (int i = 0; i < f->n_shards; i++) /* the shard whose mapping holds the bytes */
        if (a >= f->shards[i]->base && end <= f->shards[i]->base + f->shards[i]->size)
            f = f->shards[i];
    if (!f->mapped || a < f->base || end > f->base + f->size || a >= end) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)a + page - 1) & ~(page - 1), hi = (uintptr_t)end & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

const char *gguf_path(const gguf_file *f)
{
    return f->path;
}
uint32_t gguf_version(const gguf_file *f)
{
    return f->version;
}
uint32_t gguf_alignment(const gguf_file *f)
{
    return f->alignment;
}
uint64_t gguf_data_offset(const gguf_file *f)
{
    return f->data_offset;
}
uint64_t gguf_file_size(const gguf_file *f)
{
    return f->size;
}
int64_t gguf_n_kv(const gguf_file *f)
{
    return f->n_kv;
}
int64_t gguf_n_tensors(const gguf_file *f)
{
    return f->n_tensors;
}

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    for (int64_t i = 0; i < f->n_kv; i++)
        if (f->kvs[i].key && !strcmp(f->kvs[i].key, key)) return &f->kvs[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static bool is_signed(gguf_vtype t)
{
    return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64;
}

static bool is_unsigned(gguf_vtype t)
{
    return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64;
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want, kl_err *err)
{
    return kl_errf(err, KL_EBADFILE, "%s: %s has type %s, expected %s", f->path, kv->key,
                   gguf_vtype_name(kv->type), want);
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, kl_err *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return KL_ENOTFOUND;
    if (is_signed(kv->type)) {
        *out = kv->v.i64;
        return 0;
    }
    if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->v.u64;
        return 0;
    }
    return wrong_type(f, kv, "an integer", err);
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, kl_err *err)
{
    int64_t v;
    int rc = gguf_get_i64(f, key, &v, err);
    if (rc) return rc;
    if (v < 0 || v > UINT32_MAX)
        return kl_errf(err, KL_EBADFILE, "%s: %s = %lld is out of range", f->path, key,
                       (long long)v);
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, kl_err *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return KL_ENOTFOUND;
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64) return wrong_type(f, kv, "f32", err);
    *out = (float)kv->v.f64;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, kl_err *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return KL_ENOTFOUND;
    if (kv->type != GGUF_BOOL) return wrong_type(f, kv, "bool", err);
    *out = kv->v.b;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, const char **out, kl_err *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return KL_ENOTFOUND;
    if (kv->type != GGUF_STRING) return wrong_type(f, kv, "string", err);
    return copy_str((gguf_file *)f, &kv->v.str, out, err);
}

int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype want, const gguf_arr **out,
                 kl_err *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return KL_ENOTFOUND;
    if (kv->type != GGUF_ARRAY) return wrong_type(f, kv, "array", err);
    if (want != GGUF_VTYPE_COUNT && kv->v.arr.type != want)
        return kl_errf(err, KL_EBADFILE, "%s: %s is an array of %s, expected %s", f->path, key,
                       gguf_vtype_name(kv->v.arr.type), gguf_vtype_name(want));
    *out = &kv->v.arr;
    return 0;
}
