/* grammar/cache.c: compiled grammars by (kind, source), so a schema sent with every request
 * is compiled once and its token tables (the expensive part, filled as matchers visit its
 * states) are reused.
 *
 * Bounded two ways: at most CACHE_ENTRIES grammars, and the sum of their gram_bytes (token
 * tables included, which grow after insertion) at most max_bytes; the least recently used
 * go first. A flood of distinct schemas therefore holds max_bytes plus what requests in
 * flight still reference (each holds its own reference). Lookups are a scan of 64-bit
 * hashes under a mutex; compiling happens outside it. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "grammar/grammar.h"

#define CACHE_ENTRIES 1024

typedef struct centry {
    uint64_t hash;
    gram_kind kind;
    char *src;
    size_t len;
    gram *g;
    uint64_t used; /* tick of the last use */
} centry;

struct gram_cache {
    pthread_mutex_t mu;
    size_t max_bytes;
    gram_limits lim;
    centry *e;
    int n;
    uint64_t tick;
    gram_cache_stats st;
};

gram_cache *gram_cache_create(size_t max_bytes, const gram_limits *lim)
{
    gram_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->e = calloc(CACHE_ENTRIES, sizeof *c->e);
    if (!c->e) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    if (lim) {
        c->lim = *lim;
    } else {
        gram_limits_defaults(&c->lim);
    }
    return c;
}

void gram_cache_free(gram_cache *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        gram_unref(c->e[i].g);
        free(c->e[i].src);
    }
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static uint64_t key_hash(gram_kind kind, const char *src, size_t len)
{
    return XXH3_64bits_withSeed(src, len, (uint64_t)kind + 1);
}

static int find(const gram_cache *c, uint64_t h, gram_kind kind, const char *src, size_t len)
{
    for (int i = 0; i < c->n; i++) {
        const centry *x = &c->e[i];
        if (x->hash == h && x->kind == kind && x->len == len && !memcmp(x->src, src, len)) return i;
    }
    return -1;
}

static void drop(gram_cache *c, int i)
{
    gram_unref(c->e[i].g);
    free(c->e[i].src);
    c->e[i] = c->e[--c->n];
    c->st.evictions++;
}

/* Evicts least recently used entries until the total fits (the last one always stays). */
static void trim(gram_cache *c)
{
    for (;;) {
        size_t total = 0;
        int lru = -1;
        for (int i = 0; i < c->n; i++) {
            total += gram_bytes(c->e[i].g);
            if (lru < 0 || c->e[i].used < c->e[lru].used) lru = i;
        }
        c->st.bytes = total;
        c->st.entries = (size_t)c->n;
        if ((total <= c->max_bytes && c->n < CACHE_ENTRIES) || c->n <= 1) return;
        drop(c, lru);
    }
}

/* src: a JSON array of strings. */
static int compile_choice(const gram_cache *c, const char *src, size_t len, gram **out, kl_err *err)
{
    json_t *a = json_loadb(src, len, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    const char **s = malloc(sizeof *s * (n + 1));
    size_t *l = malloc(sizeof *l * (n + 1));
    int rc = 0;
    if (!a || !json_is_array(a))
        rc = kl_errf(err, KL_EINVAL, "choices must be an array of strings");
    if (!rc && (!s || !l)) rc = kl_errf(err, KL_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_string(x))
            rc = kl_errf(err, KL_EINVAL, "choices must be strings");
        else
            s[i] = json_string_value(x), l[i] = json_string_length(x);
    }
    if (!rc) rc = gram_compile_choice(out, s, l, (int)n, &c->lim, err);
    free(s);
    free(l);
    json_decref(a);
    return rc;
}

static int compile(const gram_cache *c, gram_kind kind, const char *src, size_t len, gram **out,
                   kl_err *err)
{
    switch (kind) {
    case GRAM_JSON:
        return gram_compile_json(out, false, &c->lim, err);
    case GRAM_JSON_OBJECT:
        return gram_compile_json(out, true, &c->lim, err);
    case GRAM_SCHEMA:
        return gram_compile_schema(out, src, len, &c->lim, err);
    case GRAM_REGEX:
        return gram_compile_regex(out, src, len, &c->lim, err);
    case GRAM_GBNF:
        return gram_compile_gbnf(out, src, len, &c->lim, err);
    case GRAM_CHOICE:
        return compile_choice(c, src, len, out, err);
    }
    return kl_errf(err, KL_EINVAL, "unknown grammar kind");
}

int gram_cache_get(gram_cache *c, gram_kind kind, const char *src, size_t len, gram **out,
                   kl_err *err)
{
    *out = NULL;
    if (kind == GRAM_JSON || kind == GRAM_JSON_OBJECT) src = "", len = 0;
    uint64_t h = key_hash(kind, src, len);
    pthread_mutex_lock(&c->mu);
    int i = find(c, h, kind, src, len);
    if (i >= 0) {
        c->e[i].used = ++c->tick;
        c->st.hits++;
        *out = gram_ref(c->e[i].g);
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->st.misses++;
    pthread_mutex_unlock(&c->mu);
    gram *g;
    int rc = compile(c, kind, src, len, &g, err);
    if (rc) return rc;
    char *copy = malloc(len + 1);
    if (!copy) {
        gram_unref(g);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    memcpy(copy, src, len);
    copy[len] = 0;
    pthread_mutex_lock(&c->mu);
    i = find(c, h, kind, src, len);
    if (i >= 0) { /* compiled meanwhile by another thread: use that one */
        gram_unref(g);
        free(copy);
        c->e[i].used = ++c->tick;
        *out = gram_ref(c->e[i].g);
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    if (c->n == CACHE_ENTRIES) trim(c);
    c->e[c->n++] = (centry){h, kind, copy, len, gram_ref(g), ++c->tick};
    trim(c);
    pthread_mutex_unlock(&c->mu);
    *out = g;
    return 0;
}

void gram_cache_stats_get(gram_cache *c, gram_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    trim(c);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
