/* kv/store.c: one allocation holding K and V of every layer for every block.
 * Layout: [layer][block][K | V][slot][kv_dim] in the configured dtype, so a block's K for
 * one layer is one contiguous (block_tokens, kv_dim) matrix and attention walks it linearly. */
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "kv/store.h"

struct kv_store {
    kv_store_config cfg;
    int32_t n_blocks;
    size_t half_bytes;  /* K (or V) of one block of one layer */
    size_t layer_bytes; /* all blocks of one layer */
    uint8_t *mem;
};

/* Returns the bytes of one (block_tokens, kv_dim) matrix in dtype, or 0 if it can't be. */
static size_t half_block_bytes(const kv_store_config *c)
{
    size_t row = kl_dtype_row_bytes(c->dtype, c->kv_dim);
    if (!row) return 0;
    return row * (size_t)c->block_tokens;
}

int kv_store_create(kv_store **out, const kv_store_config *cfg, kl_err *err)
{
    *out = NULL;
    if (cfg->n_layers < 1 || cfg->kv_dim < 1 || cfg->block_tokens < 1 || cfg->block_tokens > 1024)
        return kl_errf(err, KL_EINVAL, "kv cache: bad shape (layers %d, kv_dim %d, block %d)",
                       cfg->n_layers, cfg->kv_dim, cfg->block_tokens);
    if (cfg->dtype != KL_F32 && cfg->dtype != KL_F16 && cfg->dtype != KL_Q8_0)
        return kl_errf(err, KL_EUNSUP, "kv cache: type must be f32, f16 or q8_0");
    size_t half = half_block_bytes(cfg);
    if (!half)
        return kl_errf(err, KL_EINVAL, "kv cache: kv_dim %d is not a multiple of the %s block",
                       cfg->kv_dim, kl_dtype_get(cfg->dtype)->name);
    size_t per_block = half * 2 * (size_t)cfg->n_layers;
    size_t n = cfg->budget_bytes / per_block;
    if (n < 1) n = 1;
    if (n > INT32_MAX / 2) n = INT32_MAX / 2;
    uint64_t total;
    if (ckd_mul_u64(&total, n, per_block) || total > SIZE_MAX / 2)
        return kl_errf(err, KL_EINVAL, "kv cache: budget too large");
    kv_store *st = calloc(1, sizeof *st);
    if (!st) return kl_errf(err, KL_ENOMEM, "kv cache: out of memory");
    st->mem = aligned_alloc(64, (total + 63) & ~(size_t)63);
    if (!st->mem) {
        free(st);
        return kl_errf(err, KL_ENOMEM, "kv cache: cannot allocate %llu MiB",
                       (unsigned long long)(total >> 20));
    }
    /* not touched here: a large pool would cost seconds at start; pages fault in as used */
    st->cfg = *cfg;
    st->n_blocks = (int32_t)n;
    st->half_bytes = half;
    st->layer_bytes = half * 2 * n;
    *out = st;
    return 0;
}

void kv_store_fault_in(kv_store *st)
{
    memset(st->mem, 0, st->layer_bytes * (size_t)st->cfg.n_layers);
}

void kv_store_destroy(kv_store *st)
{
    if (!st) return;
    free(st->mem);
    free(st);
}

int32_t kv_store_n_blocks(const kv_store *st)
{
    return st->n_blocks;
}
const kv_store_config *kv_store_config_of(const kv_store *st)
{
    return &st->cfg;
}
size_t kv_store_block_bytes(const kv_store *st)
{
    return st->half_bytes * 2 * st->cfg.n_layers;
}

void *kv_store_k(const kv_store *st, int layer, int32_t block)
{
    return st->mem + (size_t)layer * st->layer_bytes + (size_t)block * 2 * st->half_bytes;
}

void *kv_store_v(const kv_store *st, int layer, int32_t block)
{
    return (uint8_t *)kv_store_k(st, layer, block) + st->half_bytes;
}

void kv_store_copy_block(kv_store *st, int32_t dst, int32_t src)
{
    if (dst == src) return;
    for (int l = 0; l < st->cfg.n_layers; l++)
        memcpy(kv_store_k(st, l, dst), kv_store_k(st, l, src), 2 * st->half_bytes);
}
