/* tests/t_gguf.h: GGUF files for tests: a copy of a file with metadata edited (keys set,
 * replaced or removed) and tensors dropped, the way a converter with other options would have
 * written it; or with tensors taken from another file. */
#ifndef KILN_TESTS_T_GGUF_H
#define KILN_TESTS_T_GGUF_H

typedef struct t_kv {
    const char *key;
    char type;     /* 's' string, 'u' u32, 'f' f32, 'b' bool, '-' remove the key */
    const char *s; /* 's' */
    double num;    /* 'u', 'f', 'b' */
} t_kv;

/* Copies src to dst with the edits applied (a key set twice: the last wins) and without the
 * tensors named in drop (NULL-terminated, or NULL). Fails the test on any error. */
void t_gguf_copy(const char *src, const char *dst, const t_kv *kvs, int n_kvs,
                 const char *const *drop);
/* A tensor taken from another file: name (in the copy) gets donor's tensor from (its type,
 * shape and bytes), replacing src's tensor of that name or, when src has none, added last. */
typedef struct t_graft {
    const char *name, *from;
} t_graft;
/* Copies src to dst with the grafts g[0..n) from donor (a tensor of another type or shape, or
 * one more). Fails the test on any error. */
void t_gguf_graft(const char *src, const char *dst, const char *donor, const t_graft *g, int n);
/* A path named name in the test's temporary directory (four at a time stay valid). */
const char *t_tmp(const char *name);
#endif
