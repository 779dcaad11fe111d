/* kv/store.h: the memory of the paged KV cache: for every layer, K and V for n_blocks blocks
 * of block_tokens tokens. It knows nothing of which block belongs to whom (kv/blocks.c does
 * the accounting); model/attn.c reads and writes K/V through it.
 *
 * Layout of one block of one layer: K then V are each (block_tokens, kv_dim) in dtype,
 * token-major, so the K vector of token slot s is at kv_store_k(st, layer, block) + s*kv_dim. */
#ifndef KILN_KV_STORE_H
#define KILN_KV_STORE_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/err.h"

typedef struct kv_store_config {
    int n_layers;
    int kv_dim;          /* n_kv_heads * head_dim */
    int block_tokens;    /* tokens per block; 16 by default */
    kl_dtype dtype;      /* KL_F16 (default), KL_F32 or KL_Q8_0 */
    size_t budget_bytes; /* n_blocks follows from this */
} kv_store_config;

typedef struct kv_store kv_store; /* opaque */

/* Allocates as many blocks as fit in cfg->budget_bytes (at least 1). Returns 0 and sets *out,
 * or a negative KL_E* code with the reason in err. */
int kv_store_create(kv_store **out, const kv_store_config *cfg, kl_err *err);
void kv_store_destroy(kv_store *st); /* NULL is fine */
int32_t kv_store_n_blocks(const kv_store *st);
const kv_store_config *kv_store_config_of(const kv_store *st);
size_t kv_store_block_bytes(const kv_store *st); /* K+V bytes of one block over all layers */
void *kv_store_k(const kv_store *st, int layer, int32_t block);
void *kv_store_v(const kv_store *st, int layer, int32_t block);
/* Copies block src's K/V (all layers) to dst: copy-on-write of a shared partial block. */
void kv_store_copy_block(kv_store *st, int32_t dst, int32_t src);
/* Writes zeros over the whole pool so its pages are mapped before a timed run (create leaves them
 * to fault in as used). */
void kv_store_fault_in(kv_store *st);
#endif
