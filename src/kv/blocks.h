/* kv/blocks.h: the accounting of the paged KV cache's blocks (the memory itself is
 * kv/store.h). Every block is in exactly one of three places:
 *
 *   free    refcount 0, no hash: handed out first by kv_blocks_alloc;
 *   cached  refcount 0, with a hash: its K/V are still valid and findable by
 *           kv_blocks_lookup; sits on an LRU list and is evicted (hash dropped) only
 *           when no free block is left;
 *   in use  refcount > 0, with or without a hash.
 *
 * Prefix caching: every full block is keyed by a chained hash (kv_block_hash) of its
 * parent's hash, its token ids and a salt (cache salt mixed with the adapter id). A
 * request walks its prompt block by block with kv_blocks_lookup and computes only the
 * rest; when it has computed a full block it publishes it under its hash.
 *
 * Every operation is O(1): an open-addressing hash table (linear probing, backward-shift
 * deletion, at most half full) sized from n_blocks, and intrusive doubly linked lists.
 * Not thread-safe: the engine thread owns it.
 *
 * Misuse that only a bug in the caller can cause (an id out of range, unref of a block
 * whose refcount is 0) aborts with a message: it would otherwise corrupt the pool. */
#ifndef KILN_KV_BLOCKS_H
#define KILN_KV_BLOCKS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

typedef struct kv_blocks kv_blocks; /* opaque */

#define KV_BLOCKS_MAX (1 << 28) /* blocks in one pool at most */

/* Creates the accounting for n_blocks (1..KV_BLOCKS_MAX) blocks of block_tokens (> 0)
 * tokens, all free; ids are 0..n_blocks-1 and the first allocations return them in order.
 * Returns 0 and sets *out, or KL_EINVAL / KL_ENOMEM with err filled and *out untouched. */
int kv_blocks_create(kv_blocks **out, int32_t n_blocks, int block_tokens, kl_err *err);
void kv_blocks_destroy(kv_blocks *b); /* NULL is fine */

int32_t kv_blocks_total(const kv_blocks *b);
int kv_blocks_block_tokens(const kv_blocks *b);
int32_t kv_blocks_used(const kv_blocks *b);      /* blocks with refcount > 0 */
int32_t kv_blocks_available(const kv_blocks *b); /* free + cached (evictable) */
int32_t kv_blocks_cached(const kv_blocks *b);    /* cached (refcount 0, hashed) */

/* Returns a block with refcount 1 and no hash: a free one if any, else the least recently
 * released cached block, whose hash is dropped (it can no longer be found). Returns -1 and
 * changes nothing when every block is in use. */
int32_t kv_blocks_alloc(kv_blocks *b);
/* Takes one more reference to id. A block at refcount 0 leaves the free list or the LRU
 * (a cached block keeps its hash). */
void kv_blocks_ref(kv_blocks *b, int32_t id);
/* Drops one reference. At 0 a block with a hash goes to the most recent end of the cached
 * LRU, one without to the free list. Aborts if the refcount already is 0. */
void kv_blocks_unref(kv_blocks *b, int32_t id);
int kv_blocks_refcount(const kv_blocks *b, int32_t id);

/* The chained prefix-cache key of one block: XXH3 over the parent block's hash (0 for the
 * first block of a sequence), the block's n token ids and salt (the request's cache salt
 * mixed with its adapter id). Any change to any of them changes the hash (up to 64-bit
 * collisions). Pure function. */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n, uint64_t salt);

/* Returns the block registered under hash with one more reference (a cached block leaves
 * the LRU), or -1 (nothing changes) when no block has that hash. */
int32_t kv_blocks_lookup(kv_blocks *b, uint64_t hash);
/* Registers in-use block id, whose K/V now hold a full block, under hash. Does nothing and
 * returns false if another block already has that hash (the caller keeps its own copy,
 * unshared) or if id already has a hash; returns true when registered. */
bool kv_blocks_publish(kv_blocks *b, int32_t id, uint64_t hash);
/* The hash id is registered under; false (and *hash untouched) if it has none. */
bool kv_blocks_hash_of(const kv_blocks *b, int32_t id, uint64_t *hash);

/* Invariant check for tests (O(n_blocks)): every block is exactly once in free, LRU or in
 * use; refcounts, counters and list links agree; every hashed block is found under its
 * hash and every table entry is a hashed block. Returns true, or false with the first
 * violation written to why (n bytes, NUL-terminated). */
bool kv_blocks_check(const kv_blocks *b, char *why, size_t n);
#endif
