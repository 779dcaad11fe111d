/* kv/blocks.c: block accounting of the paged KV cache (see blocks.h).
 *
 * Per block: refcount, where it is (free / cached / used), its hash if any, and prev/next
 * links used by whichever list it is on (free list or LRU; in-use blocks are on none).
 * Both lists are circular with a sentinel: index n for free, n+1 for the LRU, so link
 * updates never branch on empty lists. The LRU's oldest block is sentinel.next.
 *
 * The hash table maps a 64-bit block hash to a block id: open addressing with linear
 * probing, capacity a power of two >= 2*n_blocks (so at most half full), backward-shift
 * deletion (no tombstones: probe lengths stay short forever). The slot index is a keyed
 * re-hash of the block hash with a per-pool random key, so prompts crafted to collide in the
 * low bits cannot build long probe chains. */
#include "kv/blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

enum { WHERE_FREE = 0, WHERE_CACHED = 1, WHERE_USED = 2 };

struct kv_blocks {
    int32_t n; /* blocks */
    int block_tokens;
    int32_t n_free, n_cached, n_used;
    int32_t *refcount;    /* (n) */
    uint8_t *where;       /* (n) WHERE_* */
    uint8_t *hashed;      /* (n) 1 if hash[id] is registered in the table */
    uint64_t *hash;       /* (n) */
    int32_t *prev, *next; /* (n + 2): list links; n = free sentinel, n+1 = LRU sentinel */
    int32_t *slot;        /* (cap) block id or -1 */
    uint32_t mask;        /* cap - 1 */
    uint64_t key;         /* keys the slot index */
};

static void die(const char *what, int32_t id)
{
    fprintf(stderr, "kiln: kv_blocks: %s (block %d)\n", what, (int)id);
    abort();
}

static void check_id(const kv_blocks *b, int32_t id)
{
    if (id < 0 || id >= b->n) die("id out of range", id);
}

/* ---- lists ---- */

static void list_remove(kv_blocks *b, int32_t id)
{
    b->next[b->prev[id]] = b->next[id];
    b->prev[b->next[id]] = b->prev[id];
    b->prev[id] = b->next[id] = -1;
}

/* Inserts id before the sentinel s, i.e. at the tail (most recent end). */
static void list_push_tail(kv_blocks *b, int32_t s, int32_t id)
{
    int32_t last = b->prev[s];
    b->prev[id] = last;
    b->next[id] = s;
    b->next[last] = id;
    b->prev[s] = id;
}

/* Inserts id right after the sentinel s (the head). */
static void list_push_head(kv_blocks *b, int32_t s, int32_t id)
{
    int32_t first = b->next[s];
    b->prev[id] = s;
    b->next[id] = first;
    b->prev[first] = id;
    b->next[s] = id;
}

/* ---- hash table ---- */

static uint32_t home_of(const kv_blocks *b, uint64_t hash)
{
    return (uint32_t)XXH3_64bits_withSeed(&hash, sizeof hash, b->key) & b->mask;
}

/* The slot holding the block registered under hash, or -1. */
static int64_t table_find(const kv_blocks *b, uint64_t hash)
{
    uint32_t i = home_of(b, hash);
    for (;;) {
        int32_t id = b->slot[i];
        if (id < 0) return -1;
        if (b->hash[id] == hash) return i;
        i = (i + 1) & b->mask;
    }
}

static void table_insert(kv_blocks *b, int32_t id)
{
    uint32_t i = home_of(b, b->hash[id]);
    while (b->slot[i] >= 0)
        i = (i + 1) & b->mask;
    b->slot[i] = id;
}

/* Empties slot i and shifts later members of its cluster back so that every entry stays
 * reachable from its home slot without crossing an empty slot. */
static void table_delete_slot(kv_blocks *b, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & b->mask;
        int32_t id = b->slot[j];
        if (id < 0) break;
        uint32_t h = home_of(b, b->hash[id]);
        /* The entry at j may move to i only if its home is not in (i, j] cyclically. */
        bool home_in_gap = (i <= j) ? (h > i && h <= j) : (h > i || h <= j);
        if (!home_in_gap) {
            b->slot[i] = id;
            i = j;
        }
    }
    b->slot[i] = -1;
}

static void drop_hash(kv_blocks *b, int32_t id)
{
    if (!b->hashed[id]) return;
    int64_t s = table_find(b, b->hash[id]);
    if (s < 0 || b->slot[s] != id) die("hashed block missing from the table", id);
    table_delete_slot(b, (uint32_t)s);
    b->hashed[id] = 0;
    b->hash[id] = 0;
}

/* ---- public ---- */

int kv_blocks_create(kv_blocks **out, int32_t n_blocks, int block_tokens, kl_err *err)
{
    if (n_blocks < 1 || n_blocks > KV_BLOCKS_MAX)
        return kl_errf(err, KL_EINVAL, "kv blocks: %d blocks is out of range (1..%d)",
                       (int)n_blocks, KV_BLOCKS_MAX);
    if (block_tokens < 1)
        return kl_errf(err, KL_EINVAL, "kv blocks: block size %d must be positive", block_tokens);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n_blocks)
        cap <<= 1; /* n_blocks <= 2^28: no overflow */

    kv_blocks *b = calloc(1, sizeof *b);
    if (!b) return kl_errf(err, KL_ENOMEM, "kv blocks: out of memory");
    size_t n = (size_t)n_blocks;
    b->refcount = calloc(n, sizeof *b->refcount);
    b->where = calloc(n, 1);
    b->hashed = calloc(n, 1);
    b->hash = calloc(n, sizeof *b->hash);
    b->prev = malloc((n + 2) * sizeof *b->prev);
    b->next = malloc((n + 2) * sizeof *b->next);
    b->slot = malloc((size_t)cap * sizeof *b->slot);
    if (!b->refcount || !b->where || !b->hashed || !b->hash || !b->prev || !b->next || !b->slot) {
        kv_blocks_destroy(b);
        return kl_errf(err, KL_ENOMEM, "kv blocks: out of memory for %d blocks", (int)n_blocks);
    }
    b->n = n_blocks;
    b->block_tokens = block_tokens;
    b->mask = cap - 1;
    memset(b->slot, 0xff, (size_t)cap * sizeof *b->slot);
    uint64_t key;
    if (getrandom(&key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)b;
    }
    b->key = key;

    int32_t fs = n_blocks, ls = n_blocks + 1;
    b->prev[fs] = b->next[fs] = fs;
    b->prev[ls] = b->next[ls] = ls;
    for (int32_t i = 0; i < n_blocks; i++) {
        b->where[i] = WHERE_FREE;
        list_push_tail(b, fs, i);
    }
    b->n_free = n_blocks;
    *out = b;
    return 0;
}

void kv_blocks_destroy(kv_blocks *b)
{
    if (!b) return;
    free(b->refcount);
    free(b->where);
    free(b->hashed);
    free(b->hash);
    free(b->prev);
    free(b->next);
    free(b->slot);
    free(b);
}

int32_t kv_blocks_total(const kv_blocks *b)
{
    return b->n;
}

int kv_blocks_block_tokens(const kv_blocks *b)
{
    return b->block_tokens;
}

int32_t kv_blocks_used(const kv_blocks *b)
{
    return b->n_used;
}

int32_t kv_blocks_available(const kv_blocks *b)
{
    return b->n_free + b->n_cached;
}

int32_t kv_blocks_cached(const kv_blocks *b)
{
    return b->n_cached;
}

/* Moves a refcount-0 block (free or cached) to in use with refcount 1. */
static void take(kv_blocks *b, int32_t id)
{
    list_remove(b, id);
    if (b->where[id] == WHERE_FREE)
        b->n_free--;
    else
        b->n_cached--;
    b->where[id] = WHERE_USED;
    b->refcount[id] = 1;
    b->n_used++;
}

int32_t kv_blocks_alloc(kv_blocks *b)
{
    int32_t fs = b->n, ls = b->n + 1;
    int32_t id = b->next[fs];
    if (id == fs) {
        id = b->next[ls]; /* the least recently released cached block */
        if (id == ls) return -1;
        drop_hash(b, id);
    }
    take(b, id);
    return id;
}

void kv_blocks_ref(kv_blocks *b, int32_t id)
{
    check_id(b, id);
    if (b->where[id] == WHERE_USED) {
        if (b->refcount[id] == INT32_MAX) die("refcount overflow", id);
        b->refcount[id]++;
        return;
    }
    take(b, id);
}

void kv_blocks_unref(kv_blocks *b, int32_t id)
{
    check_id(b, id);
    if (b->where[id] != WHERE_USED || b->refcount[id] <= 0) die("unref of an unused block", id);
    if (--b->refcount[id] > 0) return;
    b->n_used--;
    if (b->hashed[id]) {
        b->where[id] = WHERE_CACHED;
        list_push_tail(b, b->n + 1, id);
        b->n_cached++;
    } else {
        /* Head of the free list: a just-freed block is reused first (its memory is warm). */
        b->where[id] = WHERE_FREE;
        list_push_head(b, b->n, id);
        b->n_free++;
    }
}

int kv_blocks_refcount(const kv_blocks *b, int32_t id)
{
    check_id(b, id);
    return b->refcount[id];
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n, uint64_t salt)
{
    uint64_t head[2] = {parent, salt};
    uint64_t seed = XXH3_64bits(head, sizeof head);
    if (n <= 0 || !tokens) return XXH3_64bits_withSeed(NULL, 0, seed);
    return XXH3_64bits_withSeed(tokens, (size_t)n * sizeof *tokens, seed);
}

int32_t kv_blocks_lookup(kv_blocks *b, uint64_t hash)
{
    int64_t s = table_find(b, hash);
    if (s < 0) return -1;
    int32_t id = b->slot[s];
    kv_blocks_ref(b, id);
    return id;
}

bool kv_blocks_publish(kv_blocks *b, int32_t id, uint64_t hash)
{
    check_id(b, id);
    if (b->where[id] != WHERE_USED) die("publish of a block not in use", id);
    if (b->hashed[id]) return false;
    if (table_find(b, hash) >= 0) return false;
    b->hash[id] = hash;
    b->hashed[id] = 1;
    table_insert(b, id);
    return true;
}

bool kv_blocks_hash_of(const kv_blocks *b, int32_t id, uint64_t *hash)
{
    check_id(b, id);
    if (!b->hashed[id]) return false;
    *hash = b->hash[id];
    return true;
}

/* ---- invariant check ---- */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (n) snprintf(why, n, __VA_ARGS__);                                                      \
        free(seen);                                                                                \
        return false;                                                                              \
    } while (0)

/* Walks the list at sentinel s, marking each member in seen[] with mark; every member must
 * be at where w. Returns the member count, or -1 with why filled. */
static int64_t walk(const kv_blocks *b, int32_t s, uint8_t w, uint8_t *seen, char *why, size_t n)
{
    int64_t count = 0;
    int32_t prev = s;
    for (int32_t id = b->next[s]; id != s; id = b->next[id]) {
        if (id < 0 || id >= b->n) {
            if (n) snprintf(why, n, "list %d: link to %d out of range", (int)s, (int)id);
            return -1;
        }
        if (seen[id]) {
            if (n) snprintf(why, n, "block %d is on a list twice", (int)id);
            return -1;
        }
        seen[id] = 1;
        if (b->prev[id] != prev) {
            if (n)
                snprintf(why, n, "block %d: prev %d, expected %d", (int)id, (int)b->prev[id],
                         (int)prev);
            return -1;
        }
        if (b->where[id] != w || b->refcount[id] != 0) {
            if (n)
                snprintf(why, n, "block %d on list %d has where %d refcount %d", (int)id, (int)s,
                         b->where[id], (int)b->refcount[id]);
            return -1;
        }
        prev = id;
        count++;
    }
    if (b->prev[s] != prev) {
        if (n) snprintf(why, n, "list %d: tail link broken", (int)s);
        return -1;
    }
    return count;
}

bool kv_blocks_check(const kv_blocks *b, char *why, size_t n)
{
    uint8_t *seen = calloc((size_t)b->n, 1);
    if (!seen) {
        if (n) snprintf(why, n, "out of memory");
        return false;
    }
    int64_t nf = walk(b, b->n, WHERE_FREE, seen, why, n);
    int64_t nc = nf < 0 ? -1 : walk(b, b->n + 1, WHERE_CACHED, seen, why, n);
    if (nc < 0) { /* why is filled */
        free(seen);
        return false;
    }
    int64_t nu = 0, nh = 0;
    for (int32_t id = 0; id < b->n; id++) {
        if (b->where[id] == WHERE_USED) {
            if (seen[id]) FAIL("in-use block %d is on a list", (int)id);
            if (b->refcount[id] <= 0)
                FAIL("in-use block %d has refcount %d", (int)id, (int)b->refcount[id]);
            if (b->prev[id] != -1 || b->next[id] != -1) FAIL("in-use block %d is linked", (int)id);
            nu++;
        } else if (!seen[id]) {
            FAIL("block %d (where %d) is on no list", (int)id, b->where[id]);
        }
        if (b->where[id] == WHERE_FREE && b->hashed[id]) FAIL("free block %d has a hash", (int)id);
        if (b->where[id] == WHERE_CACHED && !b->hashed[id])
            FAIL("cached block %d has no hash", (int)id);
        if (b->hashed[id]) {
            nh++;
            int64_t s = table_find(b, b->hash[id]);
            if (s < 0 || b->slot[s] != id)
                FAIL("hashed block %d not found under its hash", (int)id);
        }
    }
    if (nf != b->n_free || nc != b->n_cached || nu != b->n_used)
        FAIL("counters free %d cached %d used %d, lists say %lld %lld %lld", (int)b->n_free,
             (int)b->n_cached, (int)b->n_used, (long long)nf, (long long)nc, (long long)nu);
    int64_t entries = 0;
    for (uint32_t i = 0; i <= b->mask; i++) {
        int32_t id = b->slot[i];
        if (id < 0) continue;
        if (id >= b->n || !b->hashed[id]) FAIL("table slot %u holds unhashed block %d", i, (int)id);
        entries++;
    }
    if (entries != nh)
        FAIL("table has %lld entries, %lld blocks are hashed", (long long)entries, (long long)nh);
    free(seen);
    return true;
}
