/* engine/seq.c: one sequence's tokens and block table: growing them, taking cached prefix
 * blocks, publishing full blocks to the prefix cache, forking choices, releasing. */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "model/lora.h"

eng_seq *seq_new(eng_req *rq, int index, const int32_t *tokens, int n, kl_err *err)
{
    eng_seq *s = calloc(1, sizeof *s);
    int cap = n + rq->r.sp.max_tokens + 1;
    if (s) s->tokens = malloc(sizeof(int32_t) * (size_t)cap);
    if (!s || !s->tokens) {
        if (s) free(s);
        kl_errf(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(s->tokens, tokens, sizeof(int32_t) * (size_t)n);
    s->req = rq;
    s->index = index;
    s->n_tokens = n;
    s->cap = cap;
    kl_rng_seed(&s->rng, rq->r.sp.seed + 0x9E3779B97F4A7C15ull * (uint64_t)index);
    stop_init(&s->stop, rq->r.sp.stop, rq->r.sp.n_stop, NULL); /* validated at submit */
    return s;
}

void seq_release_blocks(engine *e, eng_seq *s)
{
    for (int i = 0; i < s->n_blocks; i++)
        kv_blocks_unref(e->blocks, s->blocks[i]);
    s->n_blocks = 0;
    s->n_hashed = 0;
    s->n_computed = 0;
    spec_seq_release(e, s);
}

void seq_trim_blocks(engine *e, eng_seq *s)
{
    int keep = (s->n_tokens + e->bs - 1) / e->bs;
    while (s->n_blocks > keep)
        kv_blocks_unref(e->blocks, s->blocks[--s->n_blocks]);
}

void seq_free(engine *e, eng_seq *s)
{
    if (!s) return;
    seq_release_blocks(e, s);
    gram_matcher_free(s->gm);
    free(s->tokens);
    free(s->blocks);
    free(s->hashes);
    free(s->embd);
    free(s->spec.blocks);
    free(s);
}

static bool grow_blocks(eng_seq *s, int need)
{
    if (need <= s->cap_blocks) return true;
    int cap = s->cap_blocks ? s->cap_blocks * 2 : 8;
    while (cap < need)
        cap *= 2;
    int32_t *b = realloc(s->blocks, sizeof(int32_t) * (size_t)cap);
    if (b) s->blocks = b;
    uint64_t *h = realloc(s->hashes, sizeof(uint64_t) * (size_t)cap);
    if (h) s->hashes = h;
    if (!b || !h) return false;
    s->cap_blocks = cap;
    return true;
}

bool seq_reserve(engine *e, eng_seq *s, int upto)
{
    int need = (upto + e->bs - 1) / e->bs;
    if (!grow_blocks(s, need)) return false;
    while (s->n_blocks < need) {
        int32_t b = kv_blocks_alloc(e->blocks);
        if (b < 0) return false;
        s->blocks[s->n_blocks++] = b;
    }
    return true;
}

/* A 64-bit mix (splitmix64's finalizer): every input bit moves every output bit. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The salt of s's blocks: the request's cache salt, mixed with its adapter's identity (the
 * base model's blocks keep the salt as it is). */
static uint64_t block_salt(const eng_seq *s)
{
    const engine_request *r = &s->req->r;
    if (!r->lora) return r->cache_salt;
    return mix64(r->cache_salt ^ mix64(model_lora_info_of(r->lora)->id));
}

static uint64_t block_hash(engine *e, const eng_seq *s, int j)
{
    uint64_t parent = j ? s->hashes[j - 1] : 0;
    return kv_block_hash(parent, s->tokens + (size_t)j * e->bs, e->bs, block_salt(s));
}

int seq_prefix_lookup(engine *e, eng_seq *s)
{
    if (!e->cfg.prefix_cache || s->n_blocks) return 0;
    /* a model that attends both ways: a block's K/V depends on the tokens after it too */
    if (model_hparams_of(e->m)->non_causal) return 0;
    /* mean and cls pooling need the hidden rows of every prompt token: compute them all */
    if (s->req->r.embed && e->pooling != ENGINE_POOL_LAST) return 0;
    int full = (s->n_tokens - 1) / e->bs;
    if (!grow_blocks(s, full + 1)) return 0;
    int j = 0;
    for (; j < full; j++) {
        uint64_t h = block_hash(e, s, j);
        int32_t b = kv_blocks_lookup(e->blocks, h);
        if (b < 0) break;
        s->hashes[j] = h;
        s->blocks[j] = b;
    }
    s->n_blocks = s->n_hashed = j;
    s->n_computed = j * e->bs;
    return s->n_computed;
}

void seq_publish(engine *e, eng_seq *s)
{
    int full = s->n_computed / e->bs;
    for (int j = s->n_hashed; j < full && j < s->n_blocks; j++) {
        s->hashes[j] = block_hash(e, s, j);
        if (e->cfg.prefix_cache && !model_hparams_of(e->m)->non_causal) /* see lookup */
            kv_blocks_publish(e->blocks, s->blocks[j], s->hashes[j]);
        s->n_hashed = j + 1;
    }
}

bool seq_push_token(eng_seq *s, int32_t t)
{
    if (s->n_tokens >= s->cap) return false;
    s->tokens[s->n_tokens++] = t;
    return true;
}

eng_seq *seq_fork(engine *e, eng_seq *src, int index, kl_err *err)
{
    eng_seq *s = seq_new(src->req, index, src->tokens, src->n_tokens, err);
    if (!s) return NULL;
    if (!grow_blocks(s, src->n_blocks)) goto oom;
    int full = src->n_computed / e->bs;
    for (int j = 0; j < src->n_blocks; j++) {
        if (j < full) {
            kv_blocks_ref(e->blocks, src->blocks[j]);
            s->blocks[j] = src->blocks[j];
        } else { /* the partial block is written by both: copy it */
            int32_t b = kv_blocks_alloc(e->blocks);
            if (b < 0) goto oom;
            kv_store_copy_block(e->store, b, src->blocks[j]);
            s->blocks[j] = b;
        }
        s->n_blocks = j + 1;
    }
    memcpy(s->hashes, src->hashes, sizeof(uint64_t) * (size_t)src->n_hashed);
    s->n_hashed = src->n_hashed;
    s->n_computed = src->n_computed;
    s->state = SEQ_RUNNING;
    return s;
oom:
    seq_free(e, s);
    kl_errf(err, KL_ENOSPC, "kv cache full");
    return NULL;
}
