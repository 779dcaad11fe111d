/* kv/blocks: allocation, refcounts, prefix-cache publish/lookup, LRU eviction, and a
 * randomized stress run against a simple model with the invariant check after every op. */
#include "kv/blocks.h"
#include "t.h"

static kv_blocks *mk(int32_t n)
{
    kv_blocks *b = NULL;
    kl_err err = {0};
    T_EQ(kv_blocks_create(&b, n, 16, &err), 0);
    T_ASSERT(b);
    return b;
}

#define CHECK(b)                                                                                   \
    do {                                                                                           \
        char why_[256];                                                                            \
        if (!kv_blocks_check((b), why_, sizeof why_)) t_fail(__FILE__, __LINE__, "%s", why_);      \
    } while (0)

TEST(kv_blocks_create_rejects_bad_sizes)
{
    kv_blocks *b = NULL;
    kl_err err = {0};
    T_EQ(kv_blocks_create(&b, 0, 16, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "out of range");
    T_EQ(kv_blocks_create(&b, -5, 16, &err), KL_EINVAL);
    T_EQ(kv_blocks_create(&b, KV_BLOCKS_MAX + 1, 16, &err), KL_EINVAL);
    T_EQ(kv_blocks_create(&b, 4, 0, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "block size");
    T_ASSERT(b == NULL);
    kv_blocks_destroy(NULL);
}

TEST(kv_blocks_alloc_until_exhausted)
{
    kv_blocks *b = mk(8);
    T_EQ(kv_blocks_total(b), 8);
    T_EQ(kv_blocks_block_tokens(b), 16);
    T_EQ(kv_blocks_available(b), 8);
    T_EQ(kv_blocks_used(b), 0);
    for (int i = 0; i < 8; i++) {
        T_EQ(kv_blocks_alloc(b), i); /* fresh pool hands out ids in order */
        T_EQ(kv_blocks_refcount(b, i), 1);
        T_EQ(kv_blocks_used(b), i + 1);
        T_EQ(kv_blocks_available(b), 7 - i);
        CHECK(b);
    }
    T_EQ(kv_blocks_alloc(b), -1);
    T_EQ(kv_blocks_alloc(b), -1);
    CHECK(b);
    kv_blocks_unref(b, 5);
    T_EQ(kv_blocks_available(b), 1);
    T_EQ(kv_blocks_alloc(b), 5);
    T_EQ(kv_blocks_alloc(b), -1);
    for (int i = 0; i < 8; i++)
        kv_blocks_unref(b, i);
    T_EQ(kv_blocks_used(b), 0);
    T_EQ(kv_blocks_available(b), 8);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_ref_unref_shared)
{
    kv_blocks *b = mk(4);
    int32_t a = kv_blocks_alloc(b);
    kv_blocks_ref(b, a);
    kv_blocks_ref(b, a);
    T_EQ(kv_blocks_refcount(b, a), 3);
    T_EQ(kv_blocks_used(b), 1);
    kv_blocks_unref(b, a);
    kv_blocks_unref(b, a);
    T_EQ(kv_blocks_refcount(b, a), 1);
    T_EQ(kv_blocks_used(b), 1);
    T_EQ(kv_blocks_available(b), 3);
    kv_blocks_unref(b, a);
    T_EQ(kv_blocks_refcount(b, a), 0);
    T_EQ(kv_blocks_used(b), 0);
    T_EQ(kv_blocks_available(b), 4);
    /* an unhashed released block is free: the next alloc reuses it first */
    T_EQ(kv_blocks_alloc(b), a);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_publish_lookup)
{
    kv_blocks *b = mk(4);
    int32_t tok[16];
    for (int i = 0; i < 16; i++)
        tok[i] = 100 + i;
    uint64_t h0 = kv_block_hash(0, tok, 16, 0);
    uint64_t h1 = kv_block_hash(h0, tok, 16, 0);
    T_ASSERT(h0 != h1);

    T_EQ(kv_blocks_lookup(b, h0), -1);
    int32_t a = kv_blocks_alloc(b), c = kv_blocks_alloc(b);
    T_ASSERT(kv_blocks_publish(b, a, h0));
    T_ASSERT(kv_blocks_publish(b, c, h1));
    uint64_t got = 0;
    T_ASSERT(kv_blocks_hash_of(b, a, &got));
    T_ASSERT(got == h0);
    /* a second block with the same hash is not registered; the first stays */
    int32_t d = kv_blocks_alloc(b);
    T_ASSERT(!kv_blocks_publish(b, d, h0));
    T_ASSERT(!kv_blocks_hash_of(b, d, &got));
    /* a block already published cannot be re-keyed */
    T_ASSERT(!kv_blocks_publish(b, a, 12345));
    CHECK(b);

    /* lookup of an in-use block adds a reference */
    T_EQ(kv_blocks_lookup(b, h0), a);
    T_EQ(kv_blocks_refcount(b, a), 2);
    kv_blocks_unref(b, a);
    kv_blocks_unref(b, a);
    /* released hashed block is cached: still found, counted as available, not used */
    T_EQ(kv_blocks_refcount(b, a), 0);
    T_EQ(kv_blocks_cached(b), 1);
    T_EQ(kv_blocks_used(b), 2);
    T_EQ(kv_blocks_available(b), 2);
    CHECK(b);
    T_EQ(kv_blocks_lookup(b, h0), a);
    T_EQ(kv_blocks_refcount(b, a), 1);
    T_EQ(kv_blocks_cached(b), 0);
    T_EQ(kv_blocks_used(b), 3);
    CHECK(b);
    /* d (unhashed) goes to the free list, not the cache */
    kv_blocks_unref(b, d);
    T_EQ(kv_blocks_cached(b), 0);
    T_EQ(kv_blocks_lookup(b, 777), -1);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_free_before_cached_then_lru_order)
{
    kv_blocks *b = mk(4);
    int32_t id[4];
    uint64_t h[4];
    for (int i = 0; i < 4; i++) {
        id[i] = kv_blocks_alloc(b);
        h[i] = 1000 + (uint64_t)i;
        T_ASSERT(kv_blocks_publish(b, id[i], h[i]));
    }
    /* release in the order 2, 0, 3, 1: that is the eviction order */
    kv_blocks_unref(b, id[2]);
    kv_blocks_unref(b, id[0]);
    kv_blocks_unref(b, id[3]);
    kv_blocks_unref(b, id[1]);
    T_EQ(kv_blocks_cached(b), 4);
    T_EQ(kv_blocks_available(b), 4);
    CHECK(b);
    /* touching 0 (lookup + release) makes it the most recent */
    T_EQ(kv_blocks_lookup(b, h[0]), id[0]);
    kv_blocks_unref(b, id[0]);
    /* order now 2, 3, 1, 0 */
    int expect[4] = {2, 3, 1, 0};
    for (int k = 0; k < 4; k++) {
        int32_t got = kv_blocks_alloc(b);
        T_EQ(got, id[expect[k]]);
        T_EQ(kv_blocks_refcount(b, got), 1);
        uint64_t hh;
        T_ASSERT(!kv_blocks_hash_of(b, got, &hh)); /* evicted: hash dropped */
        T_EQ(kv_blocks_lookup(b, h[expect[k]]), -1);
        for (int j = k + 1; j < 4; j++) { /* the rest are still found (peek via lookup+unref) */
            int32_t x = kv_blocks_lookup(b, h[expect[j]]);
            T_EQ(x, id[expect[j]]);
            kv_blocks_unref(b, x);
        }
        CHECK(b);
        /* re-releasing the peeked ones moved them to the MRU end in the same relative order */
    }
    T_EQ(kv_blocks_alloc(b), -1);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_free_list_preferred_over_cache)
{
    kv_blocks *b = mk(3);
    int32_t a = kv_blocks_alloc(b), c = kv_blocks_alloc(b);
    T_ASSERT(kv_blocks_publish(b, a, 42));
    kv_blocks_unref(b, a); /* cached */
    kv_blocks_unref(b, c); /* free */
    int32_t x = kv_blocks_alloc(b), y = kv_blocks_alloc(b);
    T_ASSERT(x != a && y != a); /* two free blocks exist: the cached one survives */
    T_EQ(kv_blocks_lookup(b, 42), a);
    kv_blocks_unref(b, a);
    T_EQ(kv_blocks_alloc(b), a); /* now only the cached one is left */
    T_EQ(kv_blocks_lookup(b, 42), -1);
    /* its hash can be registered again on another block */
    kv_blocks_unref(b, x);
    int32_t z = kv_blocks_alloc(b);
    T_ASSERT(kv_blocks_publish(b, z, 42));
    T_EQ(kv_blocks_lookup(b, 42), z);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_ref_takes_cached_block_off_lru)
{
    kv_blocks *b = mk(2);
    int32_t a = kv_blocks_alloc(b);
    T_ASSERT(kv_blocks_publish(b, a, 9));
    kv_blocks_unref(b, a);
    kv_blocks_ref(b, a); /* e.g. the scheduler pinning a block it found earlier */
    T_EQ(kv_blocks_refcount(b, a), 1);
    T_EQ(kv_blocks_cached(b), 0);
    int32_t o = kv_blocks_alloc(b);
    T_ASSERT(o != a);
    T_EQ(kv_blocks_alloc(b), -1); /* a is in use, not evictable */
    uint64_t h;
    T_ASSERT(kv_blocks_hash_of(b, a, &h));
    T_ASSERT(h == 9);
    CHECK(b);
    kv_blocks_destroy(b);
}

TEST(kv_blocks_hash_chain_salt_tokens)
{
    int32_t t[16], u[16];
    for (int i = 0; i < 16; i++)
        t[i] = u[i] = i * 7;
    uint64_t h = kv_block_hash(0, t, 16, 0);
    T_ASSERT(h == kv_block_hash(0, u, 16, 0)); /* deterministic */
    T_ASSERT(h != kv_block_hash(1, t, 16, 0)); /* parent */
    T_ASSERT(h != kv_block_hash(0, t, 16, 1)); /* salt */
    T_ASSERT(kv_block_hash(0, t, 16, 1) != kv_block_hash(0, t, 16, 2));
    T_ASSERT(h != kv_block_hash(0, t, 15, 0)); /* length */
    u[15]++;
    T_ASSERT(h != kv_block_hash(0, u, 16, 0)); /* a token */
    /* parent and salt are not interchangeable */
    T_ASSERT(kv_block_hash(5, t, 16, 9) != kv_block_hash(9, t, 16, 5));
    /* chains: same block after different prefixes differs */
    uint64_t a = kv_block_hash(kv_block_hash(0, t, 16, 0), t, 16, 0);
    uint64_t c = kv_block_hash(kv_block_hash(0, u, 16, 0), t, 16, 0);
    T_ASSERT(a != c);
    /* no collisions over many distinct single-token changes */
    enum { N = 4096 };
    static uint64_t hs[N];
    for (int i = 0; i < N; i++) {
        int32_t v[16];
        for (int k = 0; k < 16; k++)
            v[k] = k;
        v[i % 16] = 100000 + i;
        hs[i] = kv_block_hash(0, v, 16, 0);
        for (int j = 0; j < i; j++)
            T_ASSERT(hs[j] != hs[i]);
    }
}

/* Randomized stress: a model of refcounts and hashes is kept beside the pool; every op is
 * checked against it and kv_blocks_check runs after each. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

TEST(kv_blocks_stress_random)
{
    enum { NB = 64, OPS = 100000, NH = 96 };
    kv_blocks *b = mk(NB);
    int refs[NB] = {0};  /* model: refcount */
    int64_t hash_of[NB]; /* model: registered hash index or -1 */
    int32_t owner[NH];   /* model: block registered under hash index h, or -1 */
    uint64_t lru_stamp[NB] = {0}, clock = 0;
    for (int i = 0; i < NB; i++)
        hash_of[i] = -1;
    for (int i = 0; i < NH; i++)
        owner[i] = -1;
    uint64_t s = 12345;
    int64_t evictions = 0, hits = 0;
    for (int op = 0; op < OPS; op++) {
        unsigned r = (unsigned)(rng_next(&s) % 100);
        if (r < 30) { /* alloc */
            int n_free = 0, n_cached = 0;
            int32_t oldest = -1;
            for (int i = 0; i < NB; i++) {
                if (refs[i]) continue;
                if (hash_of[i] < 0)
                    n_free++;
                else {
                    n_cached++;
                    if (oldest < 0 || lru_stamp[i] < lru_stamp[oldest]) oldest = i;
                }
            }
            int32_t id = kv_blocks_alloc(b);
            if (n_free + n_cached == 0) {
                T_EQ(id, -1);
            } else {
                T_ASSERT(id >= 0 && id < NB);
                T_EQ(refs[id], 0);
                if (n_free) {
                    T_ASSERT(hash_of[id] < 0);
                } else {
                    T_EQ(id, oldest);
                    owner[hash_of[id]] = -1;
                    hash_of[id] = -1;
                    evictions++;
                }
                refs[id] = 1;
            }
        } else if (r < 50) { /* unref a random in-use block */
            int32_t id = (int32_t)(rng_next(&s) % NB);
            if (refs[id]) {
                kv_blocks_unref(b, id);
                if (--refs[id] == 0 && hash_of[id] >= 0) lru_stamp[id] = ++clock;
            }
        } else if (r < 60) { /* ref an in-use block */
            int32_t id = (int32_t)(rng_next(&s) % NB);
            if (refs[id]) {
                kv_blocks_ref(b, id);
                refs[id]++;
            }
        } else if (r < 75) { /* publish */
            int32_t id = (int32_t)(rng_next(&s) % NB);
            int h = (int)(rng_next(&s) % NH);
            if (refs[id]) {
                bool want = hash_of[id] < 0 && owner[h] < 0;
                T_EQ(kv_blocks_publish(b, id, kv_block_hash(0, NULL, 0, (uint64_t)h)), want);
                if (want) {
                    hash_of[id] = h;
                    owner[h] = id;
                }
            }
        } else { /* lookup */
            int h = (int)(rng_next(&s) % NH);
            int32_t id = kv_blocks_lookup(b, kv_block_hash(0, NULL, 0, (uint64_t)h));
            T_EQ(id, owner[h]);
            if (id >= 0) {
                refs[id]++;
                hits++;
            }
        }
        char why[256];
        if (!kv_blocks_check(b, why, sizeof why)) t_fail(__FILE__, __LINE__, "op %d: %s", op, why);
        int used = 0, avail = 0, cached = 0;
        for (int i = 0; i < NB; i++) {
            if (refs[i])
                used++;
            else {
                avail++;
                if (hash_of[i] >= 0) cached++;
            }
        }
        T_EQ(kv_blocks_used(b), used);
        T_EQ(kv_blocks_available(b), avail);
        T_EQ(kv_blocks_cached(b), cached);
    }
    T_ASSERT(evictions > 100); /* the run exercised eviction and hits */
    T_ASSERT(hits > 1000);
    for (int i = 0; i < NB; i++)
        while (refs[i]--)
            kv_blocks_unref(b, i);
    T_EQ(kv_blocks_used(b), 0);
    T_EQ(kv_blocks_available(b), NB);
    CHECK(b);
    kv_blocks_destroy(b);
}

/* Table deletion under heavy churn in a big pool: every hash stays findable. */
TEST(kv_blocks_table_churn_large)
{
    enum { NB = 4096 };
    kv_blocks *b = mk(NB);
    static uint64_t h[NB];
    uint64_t s = 99;
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < NB; i++) {
            int32_t id = kv_blocks_alloc(b); /* evicts the oldest cached after round 0 */
            T_ASSERT(id >= 0);
            h[id] = rng_next(&s);
            T_ASSERT(kv_blocks_publish(b, id, h[id]));
            kv_blocks_unref(b, id);
        }
        for (int i = 0; i < NB; i += 7) {
            int32_t id = kv_blocks_lookup(b, h[i]);
            T_EQ(id, i);
            kv_blocks_unref(b, id);
        }
        CHECK(b);
    }
    T_EQ(kv_blocks_cached(b), NB);
    kv_blocks_destroy(b);
}

/* The engine's use: a prompt walks its full blocks by chained hash, takes every cached one
 * and computes (allocates + publishes) the rest; a salt keeps tenants apart. */
static int prompt_blocks(kv_blocks *b, const int32_t *tok, int n_blocks, uint64_t salt,
                         int32_t *ids)
{
    uint64_t parent = 0;
    int hits = 0;
    bool miss = false;
    for (int j = 0; j < n_blocks; j++) {
        uint64_t h = kv_block_hash(parent, tok + j * 16, 16, salt);
        int32_t id = miss ? -1 : kv_blocks_lookup(b, h);
        if (id >= 0) {
            hits++;
        } else {
            miss = true; /* after the first miss every later block is computed */
            id = kv_blocks_alloc(b);
            T_ASSERT(id >= 0);
            kv_blocks_publish(b, id, h);
        }
        ids[j] = id;
        parent = h;
    }
    return hits;
}

TEST(kv_blocks_prefix_sharing_scenario)
{
    kv_blocks *b = mk(32);
    int32_t sys[4 * 16], other[4 * 16];
    for (int i = 0; i < 64; i++)
        sys[i] = other[i] = 1000 + i;
    other[2 * 16 + 3] = 7; /* differs in the third block */
    int32_t a[4], c[4], d[4], e[4];
    T_EQ(prompt_blocks(b, sys, 4, 0, a), 0);
    T_EQ(prompt_blocks(b, sys, 4, 0, c), 4); /* concurrent request: shares all four */
    for (int j = 0; j < 4; j++) {
        T_EQ(c[j], a[j]);
        T_EQ(kv_blocks_refcount(b, a[j]), 2);
    }
    T_EQ(prompt_blocks(b, other, 4, 0, d), 2); /* shares the first two only */
    T_EQ(d[0], a[0]);
    T_EQ(d[1], a[1]);
    T_ASSERT(d[2] != a[2] && d[3] != a[3]);
    T_EQ(prompt_blocks(b, sys, 4, 0xfeed, e), 0); /* another tenant's salt: no hits */
    for (int j = 0; j < 4; j++)
        T_ASSERT(e[j] != a[j]);
    T_EQ(kv_blocks_used(b), 4 + 2 + 4);
    CHECK(b);
    /* everyone finishes: all blocks are cached, none used, all still findable */
    for (int j = 0; j < 4; j++) {
        kv_blocks_unref(b, a[j]);
        kv_blocks_unref(b, c[j]);
        kv_blocks_unref(b, d[j]);
        kv_blocks_unref(b, e[j]);
    }
    T_EQ(kv_blocks_used(b), 0);
    T_EQ(kv_blocks_cached(b), 10);
    T_EQ(prompt_blocks(b, sys, 4, 0, c), 4);
    for (int j = 0; j < 4; j++)
        T_EQ(c[j], a[j]);
    CHECK(b);
    kv_blocks_destroy(b);
}
