/* gateway/affinity.c: chained block hashes and a bounded LRU set of them.
 *
 * The set is 4-way set-associative: a hash maps to one bucket of 4 slots, each with the
 * step it was last touched; a miss replaces the bucket's oldest slot. That bounds memory
 * and time (O(1) per hash) and approximates global LRU well for this use. */
#include "gateway/affinity.h"

#include <stdlib.h>
#include <xxhash.h>

#define WAYS 4

int gw_prefix_hashes(const char *text, size_t len, uint64_t salt, uint64_t *out, int cap)
{
    uint64_t h = salt ^ 0x6b696c6e70726678ull; /* "kilnprfx": a fixed, non-zero start */
    int n = 0;
    for (size_t off = 0; off + GW_PREFIX_BLOCK_BYTES <= len && n < cap;
         off += GW_PREFIX_BLOCK_BYTES) {
        h = XXH3_64bits_withSeed(text + off, GW_PREFIX_BLOCK_BYTES, h);
        out[n++] = h | 1; /* never 0: 0 marks an empty slot */
    }
    return n;
}

struct gw_lru_set {
    size_t n_buckets; /* power of two */
    uint64_t clock;
    uint64_t *keys;   /* (n_buckets * WAYS); 0 = empty */
    uint64_t *stamps; /* (n_buckets * WAYS) */
};

gw_lru_set *gw_lru_set_create(int capacity)
{
    size_t nb = 1;
    while (nb * WAYS < (size_t)(capacity > 0 ? capacity : 1))
        nb <<= 1;
    gw_lru_set *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_buckets = nb;
    s->keys = calloc(nb * WAYS, sizeof *s->keys);
    s->stamps = calloc(nb * WAYS, sizeof *s->stamps);
    if (!s->keys || !s->stamps) {
        gw_lru_set_destroy(s);
        return NULL;
    }
    return s;
}

void gw_lru_set_destroy(gw_lru_set *s)
{
    if (!s) return;
    free(s->keys);
    free(s->stamps);
    free(s);
}

static size_t bucket(const gw_lru_set *s, uint64_t h)
{
    return (size_t)((h * 0x9e3779b97f4a7c15ull) >> 20) & (s->n_buckets - 1);
}

void gw_lru_set_add(gw_lru_set *s, const uint64_t *h, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t *k = s->keys + bucket(s, h[i]) * WAYS;
        uint64_t *st = s->stamps + bucket(s, h[i]) * WAYS;
        int slot = 0;
        for (int w = 0; w < WAYS; w++) {
            if (k[w] == h[i]) {
                slot = w;
                break;
            }
            if (st[w] < st[slot]) slot = w;
        }
        k[slot] = h[i];
        st[slot] = ++s->clock;
    }
}

int gw_lru_set_match(const gw_lru_set *s, const uint64_t *h, int n)
{
    int i = 0;
    for (; i < n; i++) {
        const uint64_t *k = s->keys + bucket(s, h[i]) * WAYS;
        int hit = 0;
        for (int w = 0; w < WAYS; w++)
            hit |= k[w] == h[i];
        if (!hit) break;
    }
    return i;
}

void gw_lru_set_clear(gw_lru_set *s)
{
    for (size_t i = 0; i < s->n_buckets * WAYS; i++)
        s->keys[i] = s->stamps[i] = 0;
    s->clock = 0;
}
