/* GGUF edits for tests (see t_gguf.h). */
#include "t_gguf.h"

#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "t.h"

const char *t_tmp(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

static bool edited(const char *key, const t_kv *kvs, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(kvs[i].key, key)) return true;
    return false;
}

static bool dropped(const char *name, const char *const *drop)
{
    for (; drop && *drop; drop++)
        if (!strcmp(*drop, name)) return true;
    return false;
}

void t_gguf_copy(const char *src, const char *dst, const t_kv *kvs, int n_kvs,
                 const char *const *drop)
{
    kl_err err = {0};
    gguf_file *f;
    T_EQ(gguf_open(&f, src, &err), 0);
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, dst, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        if (!edited(gguf_kv_at(f, i)->key, kvs, n_kvs)) gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    for (int i = 0; i < n_kvs; i++) {
        const t_kv *e = &kvs[i];
        if (e->type == 's') gguf_writer_set_str(w, e->key, e->s);
        if (e->type == 'u') gguf_writer_set_u32(w, e->key, (uint32_t)e->num);
        if (e->type == 'f') gguf_writer_set_f32(w, e->key, (float)e->num);
        if (e->type == 'b') gguf_writer_set_bool(w, e->key, e->num != 0);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!dropped(t->name, drop)) gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    gguf_writer_begin_data(w);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!dropped(t->name, drop)) gguf_writer_write(w, t->data, t->nbytes);
    }
    T_EQ(gguf_writer_finish(w, &err), 0);
    gguf_close(f);
}

/* The graft for tensor name, or NULL. */
static const t_graft *graft_of(const char *name, const t_graft *g, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(g[i].name, name)) return &g[i];
    return NULL;
}

void t_gguf_graft(const char *src, const char *dst, const char *donor, const t_graft *g, int n)
{
    kl_err err = {0};
    gguf_file *f, *d;
    T_EQ(gguf_open(&f, src, &err), 0);
    T_EQ(gguf_open(&d, donor, &err), 0);
    int64_t cap = gguf_n_tensors(f) + n, nt = 0;
    const gguf_tensor **ts = calloc((size_t)cap, sizeof *ts); /* the bytes of each */
    const char **names = calloc((size_t)cap, sizeof *names);  /* its name in the copy */
    T_ASSERT(ts && names);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) { /* src's, some replaced by donor's */
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const t_graft *e = graft_of(t->name, g, n);
        names[nt] = t->name;
        ts[nt++] = e ? gguf_find_tensor(d, e->from) : t;
    }
    for (int i = 0; i < n; i++) /* and those src lacks, added */
        if (!gguf_find_tensor(f, g[i].name))
            names[nt] = g[i].name, ts[nt++] = gguf_find_tensor(d, g[i].from);
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, dst, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    for (int64_t i = 0; i < nt; i++) {
        if (!ts[i]) t_fail(__FILE__, __LINE__, "%s: no tensor to graft as %s", donor, names[i]);
        gguf_writer_add_tensor(w, names[i], ts[i]->type, ts[i]->n_dims, ts[i]->ne);
    }
    gguf_writer_begin_data(w);
    for (int64_t i = 0; i < nt; i++)
        gguf_writer_write(w, ts[i]->data, ts[i]->nbytes);
    T_EQ(gguf_writer_finish(w, &err), 0);
    free(ts), free(names);
    gguf_close(d);
    gguf_close(f);
}
