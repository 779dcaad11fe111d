/* gateway/affinity.h: prefix affinity. A prompt is cut into fixed-size blocks (of text, since
 * the gateway does not tokenize) and each block gets a chained hash H(parent, bytes, salt),
 * as the engine's prefix cache does with token blocks: two prompts share a block hash only
 * if they share everything before it too. Each endpoint keeps a bounded LRU set of the block
 * hashes recently routed to it; an endpoint's affinity for a prompt is how many of the
 * prompt's leading blocks it holds. */
#ifndef KILN_GATEWAY_AFFINITY_H
#define KILN_GATEWAY_AFFINITY_H
#include <stddef.h>
#include <stdint.h>

#define GW_PREFIX_BLOCK_BYTES 64

/* Writes the chained hashes of the first full blocks of text (at most cap) into out and
 * returns how many. A trailing partial block is not hashed: it cannot be a cache hit. */
int gw_prefix_hashes(const char *text, size_t len, uint64_t salt, uint64_t *out, int cap);

typedef struct gw_lru_set gw_lru_set; /* opaque */

/* A set of at most capacity hashes (rounded up to a power of two); NULL on failure. */
gw_lru_set *gw_lru_set_create(int capacity);
void gw_lru_set_destroy(gw_lru_set *s); /* NULL is fine */
/* Adds the hashes (refreshing ones present), evicting the least recently used. */
void gw_lru_set_add(gw_lru_set *s, const uint64_t *h, int n);
/* How many of h[0..n) from the start are present (stops at the first miss). */
int gw_lru_set_match(const gw_lru_set *s, const uint64_t *h, int n);
void gw_lru_set_clear(gw_lru_set *s);
#endif
