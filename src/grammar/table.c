/* grammar/table.c: per-state token tables and the trie walks that compute masks (see
 * table.h). One walk shape serves both: read the trie in preorder, keep the configurations
 * after each prefix on a stack of levels, mark a node's tokens when something survives
 * their bytes, and skip a node's subtree when nothing does. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "grammar/table.h"

typedef struct blob {
    uint64_t hash;
    int32_t n;
    uint8_t bitmap;
    uint32_t data[]; /* ids, or a bitmap */
} blob;

struct gtable {
    gtable *next;
    uint64_t serial;
    int32_t n_vocab, n_words;
    _Atomic(gentry *) *entries; /* (n_states) */
    blob **blobs;               /* identical token sets stored once: open addressing */
    uint32_t cap_blobs, n_blobs;
    /* scratch of the computation, under the grammar's lock */
    gsim sim;
    gwalk w;
    uint32_t *bits;
    int32_t *esc;
    int32_t n_esc, cap_esc;
};

void gwalk_free(gwalk *w)
{
    free(w->buf);
    free(w->off);
    free(w->cnt);
    free(w->nodes);
    memset(w, 0, sizeof *w);
}

static bool gwalk_levels(gwalk *w, int32_t levels)
{
    if (levels <= w->cap_levels) return true;
    int32_t *a = realloc(w->off, sizeof *a * (size_t)levels);
    if (a) w->off = a;
    int32_t *b = realloc(w->cnt, sizeof *b * (size_t)levels);
    if (b) w->cnt = b;
    int32_t *c = realloc(w->nodes, sizeof *c * (size_t)levels);
    if (c) w->nodes = c;
    if (!a || !b || !c) return false;
    w->cap_levels = levels;
    return true;
}

/* Room for one more level's configurations, so that a step reading the buffer never sees it
 * move while it appends to it. */
static bool gwalk_reserve(gwalk *w, int32_t more)
{
    int32_t need = w->n + more + GSIM_CLOSURE_MAX + 1;
    if (need <= w->cap) return true;
    int32_t cap = w->cap ? w->cap : 1024;
    while (cap < need)
        cap *= 2;
    gconf *p = realloc(w->buf, sizeof *p * (size_t)cap);
    if (!p) return false;
    w->buf = p;
    w->cap = cap;
    return true;
}

typedef struct local_out { /* what a walk from one state alone records */
    int32_t *esc;
    int32_t n_esc, cap_esc;
    bool full;
} local_out;

/* The walk. mask gets the valid tokens' bits; *n_set counts the tokens newly set. With lo,
 * the configurations have GP_UNKNOWN at the bottom: rules ending there are escapes. */
static int walk(gsim *sim, gwalk *w, const gram_vocab *v, int32_t y, const gconf *start,
                int32_t n_start, uint32_t *mask, int32_t *n_set, local_out *lo)
{
    int32_t d0 = v->depth[y];
    if (!gwalk_levels(w, v->max_len + 2)) return KL_ENOMEM;
    int32_t base_nodes = sim->n_nodes;
    w->n = 0;
    if (!gwalk_reserve(w, n_start)) return KL_ENOMEM;
    memcpy(w->buf, start, sizeof *start * (size_t)n_start);
    w->off[0] = 0;
    w->cnt[0] = n_start;
    w->nodes[0] = base_nodes;
    w->n = n_start;
    int32_t set = 0;
    const int32_t stop = v->end[y];
    for (int32_t i = y + 1; i < stop;) {
        int32_t d = v->depth[i] - d0;
        w->n = w->off[d - 1] + w->cnt[d - 1];
        sim->n_nodes = w->nodes[d - 1];
        if (!gwalk_reserve(w, w->cnt[d - 1])) return KL_ENOMEM;
        w->off[d] = w->n;
        int32_t k = gsim_step(sim, w->buf + w->off[d - 1], w->cnt[d - 1], v->byte[i], &w->buf,
                              &w->n, &w->cap);
        if (k < 0) return KL_ENOMEM;
        w->cnt[d] = k;
        w->nodes[d] = sim->n_nodes;
        bool esc = lo && sim->esc;
        if (k > 0 || sim->acc || esc) {
            for (int32_t j = v->tok_off[i]; j < v->tok_off[i + 1]; j++) {
                int32_t t = v->toks[j];
                uint32_t bit = 1u << (t & 31);
                if (!(mask[t >> 5] & bit)) {
                    mask[t >> 5] |= bit;
                    set++;
                }
            }
        }
        if (lo) {
            if (sim->overflow) lo->full = true;
            if (esc && v->end[i] > i + 1) {
                if (lo->n_esc == lo->cap_esc) {
                    int32_t cap = lo->cap_esc ? lo->cap_esc * 2 : 64;
                    int32_t *p = realloc(lo->esc, sizeof *p * (size_t)cap);
                    if (!p) return KL_ENOMEM;
                    lo->esc = p;
                    lo->cap_esc = cap;
                }
                lo->esc[lo->n_esc++] = i;
            }
        }
        i = k > 0 ? i + 1 : v->end[i];
    }
    sim->n_nodes = base_nodes;
    if (n_set) *n_set += set;
    return 0;
}

int gwalk_subtree(gsim *sim, gwalk *w, const gram_vocab *v, int32_t y, const gconf *start,
                  int32_t n, uint32_t *mask)
{
    return walk(sim, w, v, y, start, n, mask, NULL, NULL);
}

/* ---- tables ---- */

gtable *gtable_for(gram *g, const gram_vocab *v)
{
    pthread_mutex_lock(&g->mu);
    gtable *t = g->tables;
    while (t && t->serial != v->serial)
        t = t->next;
    if (!t && (t = calloc(1, sizeof *t))) {
        t->serial = v->serial;
        t->n_vocab = v->n_vocab;
        t->n_words = (v->n_vocab + 31) / 32;
        t->entries = calloc((size_t)g->n_states, sizeof *t->entries);
        t->bits = malloc(sizeof *t->bits * (size_t)t->n_words);
        if (!t->entries || !t->bits || gsim_init(&t->sim, g, g->max_depth)) {
            free(t->entries);
            free(t->bits);
            free(t);
            t = NULL;
        } else {
            t->next = g->tables;
            g->tables = t;
            atomic_fetch_add(&g->table_bytes, sizeof *t + sizeof *t->entries * (size_t)g->n_states);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return t;
}

void gentry_own_free(gentry *own)
{
    free((void *)own->acc);
    free((void *)own->esc);
    memset(own, 0, sizeof *own);
}

void gtable_free_all(gram *g)
{
    gtable *t = g->tables;
    while (t) {
        gtable *nx = t->next;
        for (int32_t s = 0; s < g->n_states; s++) {
            gentry *e = atomic_load(&t->entries[s]);
            if (e) {
                free((void *)e->esc);
                free(e);
            }
        }
        for (uint32_t i = 0; i < t->cap_blobs; i++)
            free(t->blobs[i]);
        free(t->blobs);
        free(t->entries);
        free(t->bits);
        free(t->esc);
        gsim_free(&t->sim);
        gwalk_free(&t->w);
        free(t);
        t = nx;
    }
    g->tables = NULL;
}

/* The stored copy of a token set (ids or bitmap), shared with identical ones; NULL when it
 * cannot be stored. *bytes grows by what storing it cost. */
static const blob *intern_blob(gtable *t, const uint32_t *data, int32_t n, bool bitmap,
                               size_t *bytes)
{
    size_t sz = sizeof(uint32_t) * (size_t)n;
    uint64_t h = XXH3_64bits(data, sz) ^ (uint64_t)bitmap;
    if (t->n_blobs * 2 >= t->cap_blobs) {
        uint32_t cap = t->cap_blobs ? t->cap_blobs * 2 : 64;
        blob **nb = calloc(cap, sizeof *nb);
        if (!nb) return NULL;
        for (uint32_t i = 0; i < t->cap_blobs; i++) {
            blob *b = t->blobs[i];
            if (!b) continue;
            uint32_t p = (uint32_t)b->hash & (cap - 1);
            while (nb[p])
                p = (p + 1) & (cap - 1);
            nb[p] = b;
        }
        *bytes += sizeof *nb * (cap - t->cap_blobs);
        free(t->blobs);
        t->blobs = nb;
        t->cap_blobs = cap;
    }
    uint32_t p = (uint32_t)h & (t->cap_blobs - 1);
    for (; t->blobs[p]; p = (p + 1) & (t->cap_blobs - 1)) {
        const blob *b = t->blobs[p];
        if (b->hash == h && b->n == n && b->bitmap == bitmap && !memcmp(b->data, data, sz))
            return b;
    }
    blob *b = malloc(sizeof *b + sz);
    if (!b) return NULL;
    b->hash = h;
    b->n = n;
    b->bitmap = bitmap;
    memcpy(b->data, data, sz);
    t->blobs[p] = b;
    t->n_blobs++;
    *bytes += sizeof *b + sz;
    return b;
}

/* Computes state s's entry into dst: a walk of the whole trie from (s, GP_UNKNOWN). Under
 * the grammar's lock (the scratch is the table's). The token set is in t->bits (bitmap,
 * *n_acc tokens), the escapes in t->esc. */
static int compute(gram *g, gtable *t, const gram_vocab *v, int32_t s, gentry *dst)
{
    (void)g;
    memset(t->bits, 0, sizeof *t->bits * (size_t)t->n_words);
    t->sim.n_nodes = 0;
    t->sim.max_seen_depth = 1;
    local_out lo = {t->esc, 0, t->cap_esc, false};
    gconf start = {s, GP_UNKNOWN};
    int32_t n_acc = 0;
    int rc = walk(&t->sim, &t->w, v, 0, &start, 1, t->bits, &n_acc, &lo);
    t->esc = lo.esc;
    t->cap_esc = lo.cap_esc;
    t->n_esc = lo.n_esc;
    if (rc) return rc;
    memset(dst, 0, sizeof *dst);
    dst->n_acc = n_acc;
    dst->full = lo.full;
    dst->max_push = t->sim.max_seen_depth - 1;
    dst->n_esc = lo.n_esc;
    return 0;
}

/* The token set of t->bits (n_acc tokens) as a list of ids when that is smaller. Writes the
 * list into out (n_words entries at least) and returns true when it chose the list. */
static bool as_list(const gtable *t, int32_t n_acc, uint32_t *out)
{
    if (n_acc >= t->n_words) return false;
    int32_t k = 0;
    for (int32_t w = 0; w < t->n_words; w++) {
        uint32_t x = t->bits[w];
        while (x) {
            out[k++] = (uint32_t)(w * 32 + __builtin_ctz(x));
            x &= x - 1;
        }
    }
    return true;
}

const gentry *gtable_entry(gram *g, gtable *t, const gram_vocab *v, int32_t s, gentry *own)
{
    gentry *e = atomic_load_explicit(&t->entries[s], memory_order_acquire);
    if (e) return e;
    pthread_mutex_lock(&g->mu);
    e = atomic_load_explicit(&t->entries[s], memory_order_relaxed);
    if (e) {
        pthread_mutex_unlock(&g->mu);
        return e;
    }
    gentry tmp;
    const gentry *res = NULL;
    uint32_t *list = NULL;
    if (compute(g, t, v, s, &tmp)) goto done;
    list = malloc(sizeof *list * (size_t)t->n_words);
    if (!list) goto done;
    bool is_list = as_list(t, tmp.n_acc, list);
    const uint32_t *data = is_list ? list : t->bits;
    int32_t n_data = is_list ? tmp.n_acc : t->n_words;
    size_t cost = sizeof *e + sizeof(int32_t) * (size_t)tmp.n_esc;
    if (atomic_load(&g->table_bytes) + cost + sizeof(uint32_t) * (size_t)n_data <=
        g->max_table_bytes) {
        size_t added = 0;
        const blob *b = intern_blob(t, data, n_data, !is_list, &added);
        e = malloc(sizeof *e);
        int32_t *esc = malloc(sizeof *esc * (size_t)(tmp.n_esc + 1));
        if (b && e && esc) {
            if (tmp.n_esc) memcpy(esc, t->esc, sizeof *esc * (size_t)tmp.n_esc);
            *e = tmp;
            e->acc = b->data;
            e->bitmap = b->bitmap;
            e->esc = esc;
            atomic_fetch_add(&g->table_bytes, cost + added);
            atomic_store_explicit(&t->entries[s], e, memory_order_release);
            res = e;
            goto done;
        }
        free(e);
        free(esc);
        if (added) atomic_fetch_add(&g->table_bytes, added);
    }
    /* not kept: the caller's own copy */
    gentry_own_free(own);
    uint32_t *acc = malloc(sizeof *acc * (size_t)(n_data + 1));
    int32_t *esc = malloc(sizeof *esc * (size_t)(tmp.n_esc + 1));
    if (!acc || !esc) {
        free(acc);
        free(esc);
        goto done;
    }
    memcpy(acc, data, sizeof *acc * (size_t)n_data);
    if (tmp.n_esc) memcpy(esc, t->esc, sizeof *esc * (size_t)tmp.n_esc);
    *own = tmp;
    own->acc = acc;
    own->bitmap = !is_list;
    own->esc = esc;
    res = own;
done:
    free(list);
    pthread_mutex_unlock(&g->mu);
    return res;
}
