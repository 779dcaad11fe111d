/* gguf/split.c: models split over several GGUF files (llama.cpp's gguf-split layout), read
 * as one and written from one. */
#include "gguf/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_SUFFIX_LEN 20 /* "-00001-of-00003.gguf" */

static bool digits5(const char *p, int *out)
{
    int v = 0;
    for (int i = 0; i < 5; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

bool gguf_split_name_parse(const char *name, size_t *prefix_len, int *no, int *count)
{
    size_t n = strlen(name);
    if (n < SPLIT_SUFFIX_LEN) return false;
    const char *s = name + n - SPLIT_SUFFIX_LEN;
    if (s[0] != '-' || memcmp(s + 6, "-of-", 4) || strcmp(s + 15, ".gguf")) return false;
    if (!digits5(s + 1, no) || !digits5(s + 10, count)) return false;
    if (*no < 1 || *no > *count) return false;
    *prefix_len = n - SPLIT_SUFFIX_LEN;
    return true;
}

int gguf_n_shards(const gguf_file *f)
{
    return 1 + f->n_shards;
}

/* split.no / split.count of f as ints; KL_ENOTFOUND when the file is not split. */
static int split_keys(const gguf_file *f, int64_t *no, int64_t *count, kl_err *err)
{
    int rc = gguf_get_i64(f, "split.count", count, err);
    if (rc) return rc;
    if (*count < 1 || *count > GGUF_SPLIT_MAX)
        return kl_errf(err, KL_EBADFILE, "%s: split.count = %lld is out of range", f->path,
                       (long long)*count);
    rc = gguf_get_i64(f, "split.no", no, err);
    if (rc == KL_ENOTFOUND)
        return kl_errf(err, KL_EBADFILE, "%s: split.count without split.no", f->path);
    if (!rc && (*no < 0 || *no >= *count))
        return kl_errf(err, KL_EBADFILE, "%s: split.no = %lld is out of range (split.count %lld)",
                       f->path, (long long)*no, (long long)*count);
    return rc;
}

/* Appends shard s's tensors to f's table. */
static int adopt(gguf_file *f, gguf_file *s, kl_err *err)
{
    gguf_tensor *t = realloc(f->tensors, (size_t)(f->n_tensors + s->n_tensors + 1) * sizeof *t);
    if (!t) return kl_errf(err, KL_ENOMEM, "%s: out of memory", f->path);
    memcpy(t + f->n_tensors, s->tensors, (size_t)s->n_tensors * sizeof *t);
    f->tensors = t;
    f->n_tensors += s->n_tensors;
    return 0;
}

static int check_tensors(gguf_file *f, kl_err *err)
{
    int64_t want;
    int rc = gguf_get_i64(f, "split.tensors.count", &want, err);
    if (rc && rc != KL_ENOTFOUND) return rc;
    if (!rc && want != f->n_tensors)
        return kl_errf(err, KL_EBADFILE, "%s: split.tensors.count is %lld but the shards hold %lld",
                       f->path, (long long)want, (long long)f->n_tensors);
    const char **names = malloc(((size_t)f->n_tensors + 1) * sizeof *names);
    if (!names) return kl_errf(err, KL_ENOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    int dup = gguf_find_duplicate(names, f->n_tensors);
    if (dup)
        rc = kl_errf(err, KL_EBADFILE, "%s: tensor '%s' is in two shards", f->path, names[dup]);
    else
        rc = 0;
    free(names);
    return rc;
}

int gguf_join_split(gguf_file *f, kl_err *err)
{
    int64_t no, count;
    int rc = split_keys(f, &no, &count, err);
    if (rc == KL_ENOTFOUND) return 0;
    if (rc) return rc;
    size_t plen;
    int name_no, name_count;
    bool named = gguf_split_name_parse(f->path, &plen, &name_no, &name_count);
    if (no != 0) {
        if (named)
            return kl_errf(
                err, KL_EINVAL,
                "%s: shard %lld of %lld: open the first shard, %.*s-00001-of-%05lld.gguf", f->path,
                (long long)no + 1, (long long)count, (int)plen, f->path, (long long)count);
        return kl_errf(err, KL_EINVAL, "%s: shard %lld of %lld: open the first shard", f->path,
                       (long long)no + 1, (long long)count);
    }
    if (count == 1) return 0;
    if (!named || name_no != 1 || name_count != count)
        return kl_errf(err, KL_EBADFILE,
                       "%s: split.count is %lld but the name does not end in -00001-of-%05lld.gguf",
                       f->path, (long long)count, (long long)count);
    f->shards = calloc((size_t)count, sizeof *f->shards);
    if (!f->shards) return kl_errf(err, KL_ENOMEM, "%s: out of memory", f->path);
    for (int64_t i = 1; i < count; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%.*s-%05lld-of-%05lld.gguf", (int)plen, f->path,
                     (long long)i + 1, (long long)count) >= (int)sizeof path)
            return kl_errf(err, KL_EINVAL, "%s: path too long", f->path);
        gguf_file *s;
        if ((rc = gguf_open_one(&s, path, err))) return rc;
        f->shards[f->n_shards++] = s;
        int64_t sno, scount;
        rc = split_keys(s, &sno, &scount, err);
        if (rc == KL_ENOTFOUND || (!rc && (sno != i || scount != count)))
            return kl_errf(err, KL_EBADFILE, "%s: not shard %lld of %lld (split.no/split.count)",
                           path, (long long)i + 1, (long long)count);
        if (rc) return rc;
        if ((rc = adopt(f, s, err))) return rc;
    }
    return check_tensors(f, err);
}

/* ---- writing ---- */

static int write_shard(const gguf_file *f, const char *path, int shard, int n_shards, int64_t first,
                       int64_t end, kl_err *err)
{
    gguf_writer *w;
    int rc = gguf_writer_open(&w, path, err);
    if (rc) return rc;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kvs[i];
        if (!strncmp(kv->key, "split.", 6)) continue;
        if (shard == 0 || !strcmp(kv->key, "general.alignment")) gguf_writer_copy_kv(w, kv);
    }
    gguf_writer_set_u16(w, "split.no", (uint16_t)shard);
    gguf_writer_set_u16(w, "split.count", (uint16_t)n_shards);
    gguf_writer_set_i32(w, "split.tensors.count", (int32_t)f->n_tensors);
    for (int64_t i = first; i < end; i++) {
        const gguf_tensor *t = &f->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    gguf_writer_begin_data(w);
    for (int64_t i = first; i < end; i++)
        gguf_writer_write(w, f->tensors[i].data, f->tensors[i].nbytes);
    return gguf_writer_finish(w, err);
}

int gguf_write_split(const gguf_file *f, const char *out_prefix, int max_tensors, int *n_shards,
                     kl_err *err)
{
    if (max_tensors < 1) return kl_errf(err, KL_EINVAL, "max tensors per shard must be >= 1");
    int64_t n = (f->n_tensors + max_tensors - 1) / max_tensors;
    if (n < 1) n = 1;
    if (n > GGUF_SPLIT_MAX || f->n_tensors > INT32_MAX)
        return kl_errf(err, KL_EINVAL, "%s: more than %d shards", f->path, GGUF_SPLIT_MAX);
    int rc = 0;
    int64_t written = 0;
    char path[4096];
    while (written < n && !rc) {
        if (snprintf(path, sizeof path, "%s-%05lld-of-%05lld.gguf", out_prefix,
                     (long long)written + 1, (long long)n) >= (int)sizeof path) {
            rc = kl_errf(err, KL_EINVAL, "%s: path too long", out_prefix);
            break;
        }
        int64_t first = written * max_tensors, end = first + max_tensors;
        rc = write_shard(f, path, (int)written, (int)n, first,
                         end < f->n_tensors ? end : f->n_tensors, err);
        if (!rc) written++;
    }
    if (rc) { /* remove the shards already written */
        for (int64_t i = 0; i < written; i++) {
            snprintf(path, sizeof path, "%s-%05lld-of-%05lld.gguf", out_prefix, (long long)i + 1,
                     (long long)n);
            remove(path);
        }
        return rc;
    }
    *n_shards = (int)n;
    return 0;
}
