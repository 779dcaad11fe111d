/* gguf/write.c: the GGUF v3 writer.
 *
 * Metadata values are serialized as they are set (one small byte buffer per key) and the
 * tensor table is kept as a list; tensor data is never held here: the caller streams it
 * through gguf_writer_write after begin_data, and the writer inserts the alignment padding
 * between tensors. The first error sticks and is reported by gguf_writer_finish. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ckd.h"

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

typedef struct wkv {
    char *key;
    wbuf val; /* u32 type then the value, as in the file */
} wkv;

typedef struct wtensor {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    kl_dtype type;
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    char *path;
    char *tmp; /* written here, renamed to path by finish */
    FILE *fp;
    int rc;
    kl_err err;
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    uint32_t align;
    bool begun;
    size_t cur;        /* tensor being streamed */
    uint64_t cur_done; /* its bytes written so far */
    uint64_t data_pos; /* bytes written in the data section */
};

/* Records the first error; returns w->rc. */
__attribute__((format(printf, 3, 4))) static int fail(gguf_writer *w, int code, const char *fmt,
                                                      ...)
{
    if (w->rc) return w->rc;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->rc = kl_errf(&w->err, code, "%s: %s", w->path, msg);
    return w->rc;
}

/* Appends n bytes to b; false when out of memory (b unchanged). */
static bool buf_put(wbuf *b, const void *src, size_t n)
{
    if (n > SIZE_MAX - b->len) return false;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return true;
}

static bool buf_u32(wbuf *b, uint32_t v)
{
    return buf_put(b, &v, 4);
}

static bool buf_u64(wbuf *b, uint64_t v)
{
    return buf_put(b, &v, 8);
}

static bool buf_str(wbuf *b, const char *s, uint64_t len)
{
    return buf_u64(b, len) && (len > SIZE_MAX || buf_put(b, s, (size_t)len));
}

int gguf_writer_open(gguf_writer **out, const char *path, kl_err *err)
{
    *out = NULL;
    gguf_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path) + 32;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(n))) {
        if (w) free(w->path);
        free(w);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
    }
    /* A temporary name beside the target, so a failed write never leaves a truncated file
     * and writing over the file being read (quantize IN IN) is safe. */
    snprintf(w->tmp, n, "%s.partial-%ld", path, (long)getpid());
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(w->fp = fdopen(fd, "wb"))) {
        int rc = kl_errf(err, KL_EIO, "%s: cannot create: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(w->tmp);
        }
        free(w->tmp);
        free(w->path);
        free(w);
        return rc;
    }
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    w->align = GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return 0;
}

/* Starts (or restarts) the value of key with its type: returns the buffer to append the value
 * to, or NULL with the error recorded. */
static wbuf *kv_begin(gguf_writer *w, const char *key, gguf_vtype t)
{
    if (w->rc) return NULL;
    if (w->begun) {
        fail(w, KL_EINVAL, "metadata '%.60s' set after the tensor data began", key);
        return NULL;
    }
    size_t klen = strlen(key);
    if (klen == 0 || klen > 65535) {
        fail(w, KL_EINVAL, "metadata key of %zu bytes", klen);
        return NULL;
    }
    wkv *kv = NULL;
    for (size_t i = 0; i < w->n_kv && !kv; i++)
        if (!strcmp(w->kvs[i].key, key)) kv = &w->kvs[i];
    if (!kv) {
        if (w->n_kv == w->cap_kv) {
            size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
            wkv *n = realloc(w->kvs, cap * sizeof *n);
            if (!n) {
                fail(w, KL_ENOMEM, "out of memory");
                return NULL;
            }
            w->kvs = n;
            w->cap_kv = cap;
        }
        kv = &w->kvs[w->n_kv];
        memset(kv, 0, sizeof *kv);
        if (!(kv->key = strdup(key))) {
            fail(w, KL_ENOMEM, "out of memory");
            return NULL;
        }
        w->n_kv++;
    }
    kv->val.len = 0;
    if (!buf_u32(&kv->val, (uint32_t)t)) {
        fail(w, KL_ENOMEM, "out of memory");
        return NULL;
    }
    return &kv->val;
}

/* Sets key to a fixed-size scalar of type t whose bytes are at v. */
static int set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *v)
{
    wbuf *b = kv_begin(w, key, t);
    if (!b) return w->rc;
    if (!buf_put(b, v, gguf_vtype_size(t))) return fail(w, KL_ENOMEM, "out of memory");
    return 0;
}

int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v)
{
    return set_scalar(w, key, GGUF_U8, &v);
}
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v)
{
    return set_scalar(w, key, GGUF_I8, &v);
}
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v)
{
    return set_scalar(w, key, GGUF_U16, &v);
}
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v)
{
    return set_scalar(w, key, GGUF_I16, &v);
}
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, GGUF_U32, &v);
}
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, GGUF_I32, &v);
}
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, GGUF_U64, &v);
}
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v)
{
    return set_scalar(w, key, GGUF_I64, &v);
}
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return set_scalar(w, key, GGUF_F32, &v);
}
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v)
{
    return set_scalar(w, key, GGUF_F64, &v);
}
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GGUF_BOOL, &b);
}

int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t len)
{
    wbuf *b = kv_begin(w, key, GGUF_STRING);
    if (!b) return w->rc;
    if (!buf_str(b, s, len)) return fail(w, KL_ENOMEM, "out of memory");
    return 0;
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s)
{
    return gguf_writer_set_strn(w, key, s, strlen(s));
}

int gguf_writer_set_arr_raw(gguf_writer *w, const char *key, gguf_vtype et, uint64_t n,
                            const void *raw, uint64_t nbytes)
{
    if ((unsigned)et >= GGUF_VTYPE_COUNT)
        return fail(w, KL_EINVAL, "metadata '%.60s': bad element type %d", key, (int)et);
    wbuf *b = kv_begin(w, key, GGUF_ARRAY);
    if (!b) return w->rc;
    if (nbytes > SIZE_MAX || !buf_u32(b, (uint32_t)et) || !buf_u64(b, n) ||
        !buf_put(b, raw, (size_t)nbytes))
        return fail(w, KL_ENOMEM, "out of memory");
    return 0;
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype et, const void *data,
                        uint64_t n)
{
    size_t es = gguf_vtype_size(et);
    uint64_t nb;
    if (!es)
        return fail(w, KL_EINVAL, "metadata '%.60s': %s is not a fixed-size type", key,
                    gguf_vtype_name(et));
    if (ckd_mul_u64(&nb, n, es)) return fail(w, KL_ERANGE, "metadata '%.60s' too long", key);
    return gguf_writer_set_arr_raw(w, key, et, n, data, nb);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const uint64_t *lens, uint64_t n)
{
    wbuf *b = kv_begin(w, key, GGUF_ARRAY);
    if (!b) return w->rc;
    if (!buf_u32(b, GGUF_STRING) || !buf_u64(b, n)) return fail(w, KL_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (!buf_str(b, strs[i], lens ? lens[i] : strlen(strs[i])))
            return fail(w, KL_ENOMEM, "out of memory");
    return 0;
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv)
{
    const char *key = kv->key;
    switch (kv->type) {
    case GGUF_U8:
        return gguf_writer_set_u8(w, key, (uint8_t)kv->v.u64);
    case GGUF_I8:
        return gguf_writer_set_i8(w, key, (int8_t)kv->v.i64);
    case GGUF_U16:
        return gguf_writer_set_u16(w, key, (uint16_t)kv->v.u64);
    case GGUF_I16:
        return gguf_writer_set_i16(w, key, (int16_t)kv->v.i64);
    case GGUF_U32:
        return gguf_writer_set_u32(w, key, (uint32_t)kv->v.u64);
    case GGUF_I32:
        return gguf_writer_set_i32(w, key, (int32_t)kv->v.i64);
    case GGUF_U64:
        return gguf_writer_set_u64(w, key, kv->v.u64);
    case GGUF_I64:
        return gguf_writer_set_i64(w, key, kv->v.i64);
    case GGUF_F32:
        return gguf_writer_set_f32(w, key, (float)kv->v.f64);
    case GGUF_F64:
        return gguf_writer_set_f64(w, key, kv->v.f64);
    case GGUF_BOOL:
        return gguf_writer_set_bool(w, key, kv->v.b);
    case GGUF_STRING:
        return gguf_writer_set_strn(w, key, kv->v.str.ptr, kv->v.str.len);
    case GGUF_ARRAY: {
        const gguf_arr *a = &kv->v.arr;
        if (a->type != GGUF_STRING)
            return gguf_writer_set_arr_raw(w, key, a->type, a->n, a->data, a->nbytes);
        wbuf *b = kv_begin(w, key, GGUF_ARRAY);
        if (!b) return w->rc;
        if (!buf_u32(b, GGUF_STRING) || !buf_u64(b, a->n))
            return fail(w, KL_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < a->n; i++)
            if (!buf_str(b, a->strs[i].ptr, a->strs[i].len))
                return fail(w, KL_ENOMEM, "out of memory");
        return 0;
    }
    default:
        return fail(w, KL_EINVAL, "metadata '%.60s' has a bad type", key);
    }
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, kl_dtype type, int n_dims,
                           const int64_t *ne)
{
    if (w->rc) return w->rc;
    if (w->begun) return fail(w, KL_EINVAL, "tensor '%.60s' added after the data began", name);
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen >= GGUF_MAX_NAME)
        return fail(w, KL_EINVAL, "tensor name of %zu bytes", nlen);
    const kl_dtype_info *di = kl_dtype_get((int)type);
    if (!di) return fail(w, KL_EINVAL, "tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fail(w, KL_EINVAL, "tensor '%s': %d dimensions", name, n_dims);
    uint64_t nelem = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || ckd_mul_u64(&nelem, nelem, (uint64_t)ne[d]) ||
            nelem > (uint64_t)INT64_MAX)
            return fail(w, KL_EINVAL, "tensor '%s': bad dimension %d", name, d);
    if (ne[0] % di->block_elems)
        return fail(w, KL_EINVAL, "tensor '%s': row length %lld is not a multiple of %u", name,
                    (long long)ne[0], di->block_elems);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->ts[i].name, name))
            return fail(w, KL_EINVAL, "duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *n = realloc(w->ts, cap * sizeof *n);
        if (!n) return fail(w, KL_ENOMEM, "out of memory");
        w->ts = n;
        w->cap_t = cap;
    }
    wtensor *t = &w->ts[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return fail(w, KL_ENOMEM, "out of memory");
    t->n_dims = n_dims;
    t->type = type;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    if (ckd_mul_u64(&t->nbytes, nelem / di->block_elems, di->block_bytes)) {
        free(t->name);
        return fail(w, KL_EINVAL, "tensor '%s' size overflows", name);
    }
    w->n_t++;
    return 0;
}

static int put(gguf_writer *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->fp) != n)
        return fail(w, KL_EIO, "write failed: %s", strerror(errno));
    return 0;
}

static int put_zeros(gguf_writer *w, uint64_t n)
{
    static const uint8_t zeros[64];
    while (n && !w->rc) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        put(w, zeros, k);
        n -= k;
    }
    return w->rc;
}

/* Takes general.alignment from the metadata when it is a valid u32. */
static int pick_alignment(gguf_writer *w)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment")) continue;
        const wbuf *b = &w->kvs[i].val;
        uint32_t t, a;
        memcpy(&t, b->p, 4);
        if (t != GGUF_U32 || b->len != 8)
            return fail(w, KL_EINVAL, "general.alignment is not a u32");
        memcpy(&a, b->p + 4, 4);
        if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
            return fail(w, KL_EINVAL, "general.alignment %u is not a power of two", a);
        w->align = a;
    }
    return 0;
}

int gguf_writer_begin_data(gguf_writer *w)
{
    if (w->rc) return w->rc;
    if (w->begun) return fail(w, KL_EINVAL, "begin_data called twice");
    if (pick_alignment(w)) return w->rc;
    uint64_t off = 0, head = 24;
    for (size_t i = 0; i < w->n_t; i++) {
        w->ts[i].offset = off;
        uint64_t end;
        if (ckd_add_u64(&end, off, w->ts[i].nbytes) || ckd_pad_u64(&off, end, w->align))
            return fail(w, KL_ERANGE, "tensor data too large");
    }
    uint32_t hdr[2] = {GGUF_MAGIC, 3};
    uint64_t counts[2] = {w->n_t, w->n_kv};
    put(w, hdr, sizeof hdr);
    put(w, counts, sizeof counts);
    for (size_t i = 0; i < w->n_kv && !w->rc; i++) {
        uint64_t klen = strlen(w->kvs[i].key);
        put(w, &klen, 8);
        put(w, w->kvs[i].key, (size_t)klen);
        put(w, w->kvs[i].val.p, w->kvs[i].val.len);
        head += 8 + klen + w->kvs[i].val.len;
    }
    for (size_t i = 0; i < w->n_t && !w->rc; i++) {
        const wtensor *t = &w->ts[i];
        uint64_t nlen = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        put(w, &nlen, 8);
        put(w, t->name, (size_t)nlen);
        put(w, &nd, 4);
        for (int d = 0; d < t->n_dims; d++)
            put(w, &t->ne[d], 8);
        put(w, &type, 4);
        put(w, &t->offset, 8);
        head += 8 + nlen + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    uint64_t padded;
    if (ckd_pad_u64(&padded, head, w->align)) return fail(w, KL_ERANGE, "header too large");
    put_zeros(w, padded - head);
    w->begun = true;
    w->cur = 0;
    w->cur_done = 0;
    w->data_pos = 0;
    return w->rc;
}

int gguf_writer_write(gguf_writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (w->rc) return w->rc;
    if (!w->begun) return fail(w, KL_EINVAL, "tensor data written before begin_data");
    while (n) {
        if (w->cur >= w->n_t) return fail(w, KL_EINVAL, "more tensor data than declared");
        wtensor *t = &w->ts[w->cur];
        if (w->cur_done == 0 && w->data_pos < t->offset) {
            if (put_zeros(w, t->offset - w->data_pos)) return w->rc;
            w->data_pos = t->offset;
        }
        uint64_t room = t->nbytes - w->cur_done;
        size_t k = room < n ? (size_t)room : n;
        if (put(w, p, k)) return w->rc;
        p += k;
        n -= k;
        w->cur_done += k;
        w->data_pos += k;
        if (w->cur_done == t->nbytes) {
            w->cur++;
            w->cur_done = 0;
        }
    }
    return 0;
}

static void writer_free(gguf_writer *w)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->ts[i].name);
    free(w->ts);
    free(w->tmp);
    free(w->path);
    free(w);
}

int gguf_writer_finish(gguf_writer *w, kl_err *err)
{
    if (!w->rc && !w->begun) gguf_writer_begin_data(w);
    /* Zero-byte trailing tensors cannot exist (every dimension is >= 1), so all tensors were
     * written exactly when cur reached the end. */
    if (!w->rc && w->cur != w->n_t)
        fail(w, KL_EINVAL, "tensor '%s' is missing %llu bytes of data", w->ts[w->cur].name,
             (unsigned long long)(w->ts[w->cur].nbytes - w->cur_done));
    if (fflush(w->fp) != 0 && !w->rc) fail(w, KL_EIO, "write failed: %s", strerror(errno));
    if (fclose(w->fp) != 0 && !w->rc) fail(w, KL_EIO, "close failed: %s", strerror(errno));
    if (!w->rc && rename(w->tmp, w->path) != 0)
        fail(w, KL_EIO, "cannot rename into place: %s", strerror(errno));
    int rc = w->rc;
    if (rc) {
        unlink(w->tmp);
        if (err) *err = w->err;
    }
    writer_free(w);
    return rc;
}

void gguf_writer_abort(gguf_writer *w)
{
    if (!w) return;
    fclose(w->fp);
    unlink(w->tmp);
    writer_free(w);
}
