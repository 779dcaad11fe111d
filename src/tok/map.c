/* tok/map.c: the two lookup tables of a tokenizer, built at load and read-only afterwards:
 * token text -> id (xxHash over the bytes) and BPE merge (left id, right id) -> (rank, merged
 * id). Both are open addressing with linear probing at load factor <= 1/2. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/err.h"
#include "tok/internal.h"

static uint32_t pow2_at_least(uint64_t n)
{
    uint64_t c = 16;
    while (c < n)
        c <<= 1;
    return c > (1u << 31) ? 0 : (uint32_t)c;
}

/* Returns the id whose text is s[0..len), or -1. Bounded: the table is at most half full. */
int32_t tok_map_find(const tok *t, const char *s, size_t len)
{
    const tok_strmap *m = &t->map;
    uint64_t h = XXH3_64bits(s, len);
    uint32_t mask = m->cap - 1, i = (uint32_t)(h >> 32) & mask, h32 = (uint32_t)h;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (m->hash[i] == h32) {
            size_t l;
            const char *p = tok_text_of(t, id, &l);
            if (l == len && !memcmp(p, s, len)) return id;
        }
        i = (i + 1) & mask;
    }
}

/* Builds t->map over every non-empty token text. Returns 0 or KL_ENOMEM (t->map left empty). */
int tok_map_build(tok *t)
{
    tok_strmap *m = &t->map;
    m->cap = pow2_at_least((uint64_t)t->n_vocab * 2 + 1);
    if (!m->cap) return KL_ENOMEM;
    m->slots = malloc(sizeof *m->slots * m->cap);
    m->hash = malloc(sizeof *m->hash * m->cap);
    if (!m->slots || !m->hash) {
        free(m->slots), free(m->hash);
        m->slots = NULL, m->hash = NULL, m->cap = 0;
        return KL_ENOMEM;
    }
    memset(m->slots, 0xff, sizeof *m->slots * m->cap);
    uint32_t mask = m->cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = tok_text_of(t, id, &len);
        if (!len) continue;
        uint64_t h = XXH3_64bits(s, len);
        uint32_t i = (uint32_t)(h >> 32) & mask;
        for (;;) {
            int32_t o = m->slots[i];
            if (o < 0) break;
            size_t l;
            const char *p = tok_text_of(t, o, &l);
            if (m->hash[i] == (uint32_t)h && l == len && !memcmp(p, s, len)) break; /* dup */
            i = (i + 1) & mask;
        }
        m->slots[i] = id; /* a later duplicate replaces the earlier id */
        m->hash[i] = (uint32_t)h;
    }
    return 0;
}

/* splitmix64's finalizer: ids are small and dense, so every input bit must reach the slot. */
static uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    k ^= k >> 31;
    return (uint32_t)k;
}

/* Returns 0 or KL_ENOMEM with m empty. */
int tok_pairmap_init(tok_pairmap *m, uint64_t n)
{
    m->cap = pow2_at_least(n * 2 + 1);
    m->slots = m->cap ? malloc(sizeof *m->slots * m->cap) : NULL;
    if (!m->slots) {
        m->cap = 0;
        return KL_ENOMEM;
    }
    for (uint32_t i = 0; i < m->cap; i++)
        m->slots[i].key = UINT64_MAX;
    return 0;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

/* Inserts (left, right) unless present; the caller inserts at most half the capacity. */
void tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1, i = pair_hash(k) & mask;
    while (m->slots[i].key != UINT64_MAX) {
        if (m->slots[i].key == k) return;
        i = (i + 1) & mask;
    }
    m->slots[i] = (tok_pair){.key = k, .rank = rank, .merged = merged};
}

/* The merge of (left, right), or NULL. */
const tok_pair *tok_pairmap_get(const tok_pairmap *m, int32_t left, int32_t right)
{
    if (!m->cap) return NULL;
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1, i = pair_hash(k) & mask;
    for (;;) {
        const tok_pair *p = &m->slots[i];
        if (p->key == k) return p;
        if (p->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}
