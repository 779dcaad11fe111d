/* model/internal.h: the bound model, shared by load.c (binding and checks), forward.c (the
 * layer loop) and attn.c (attention through the paged cache). Nobody outside model/ sees it. */
#ifndef KILN_MODEL_INTERNAL_H
#define KILN_MODEL_INTERNAL_H
#include "kernels/kernels.h"
#include "model/model.h"

#include <limits.h>

#define MODEL_MAX_HEAD_DIM 1024 /* load.c rejects larger heads (and n_rot <= head_dim) */
/* Cached positions per pass of attention over the cache: a chunk of K or V rows converted
 * once for every query row of a tile (never crossing a block). */
#define MODEL_KV_CHUNK 16

/* A weight matrix (rows, cols) as GGUF holds it: ne[0] = cols. */
typedef struct model_w {
    const void *data;
    kl_dtype type;
    int64_t rows, cols;
    const void *packed; /* the same weights packed for kl_matmul_packed, or NULL */
} model_w;

typedef struct model_layer {
    const float *attn_norm, *ffn_norm; /* (dim) */
    model_w wq, wk, wv, wo;
    const float *bq, *bk, *bv;    /* qwen2 biases, NULL otherwise */
    const float *q_norm, *k_norm; /* qwen3 per-head norms (head_dim), NULL otherwise */
    model_w w_gate, w_up, w_down;
} model_layer;

/* Activations of one batch: every buffer sized for opts.max_batch_tokens rows. */
typedef struct model_scratch {
    float *x;        /* (n, dim) residual stream */
    float *xb;       /* (n, dim) normed input of a sublayer */
    float *q;        /* (n, q_dim) */
    float *k, *v;    /* (n, kv_dim) */
    float *att;      /* (n, q_dim) attention output */
    float *hb, *hb2; /* (n, hidden) */
    float *rows;     /* (max_logits, dim) final-normed rows that want logits */
    void *mm;        /* matmul activation scratch, the largest any weight needs */
    float *attn_ws;  /* (n_workers, attn_ws_floats): attention workspace per worker */
    int32_t *tiles;  /* (max_batch_tokens + 1) first token of each attention tile */
} model_scratch;

struct model {
    model_hparams hp;
    model_opts opts;
    int q_dim, kv_dim;
    kl_rope_cfg rope;
    model_w tok_embd, output;
    const float *output_norm;
    model_layer *layers;
    model_scratch s;
    void *packed; /* the mapping every model_w.packed points into (pack.c) */
    size_t packed_bytes;
    bool packed_cached;    /* mapped from the packed-weights cache, not packed at this load */
    int attn_qt;           /* tokens per attention tile (bounded by the scores' size) */
    size_t attn_ws_floats; /* per worker: scores (qt*group, max_ctx), queries and outputs
                              (qt*group, head_dim) each, a K/V chunk (MODEL_KV_CHUNK, head_dim) */
};

/* Attention of a batch for one layer: writes the batch's k, v into the cache, then att. */
void model_attention(model *m, kl_workers *w, kv_store *kv, int layer, const model_batch *b);
/* Packs every matmul weight kl_pack has a form for (unless opts.no_repack), giving the file's
 * pages of each back once packed; or maps them from opts.pack_cache_dir when they were saved
 * there (and saves them there when not). model_unpack releases them. */
int model_pack(model *m, const gguf_file *f, kl_err *err);
void model_unpack(model *m);

/* The packed-weights cache (packcache.c): what an entry was made from. */
typedef struct pc_key {
    char magic[8];
    char pack_id[32];      /* kl_pack_id() */
    gguf_identity src;     /* the model file */
    uint64_t layout_hash;  /* the packed weights: order, type, shape, bytes, source offset */
    uint64_t payload_size; /* bytes */
} pc_key;

/* One lookup (and maybe a write) of an entry; holds its lock until pack_cache_close. */
typedef struct pack_cache {
    char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX], source[1024];
    int fd, lock_fd; /* the entry being written; the lock file */
    pc_key key;
} pack_cache;

/* Looks up the entry for (f, layout_hash, bytes) in dir, waiting for a replica that is
 * writing it. Returns 1 with *out mapping its payload (read-only, checksum verified), or 0
 * when there is none usable (a stale or corrupt one is removed): the caller may then
 * pack_cache_create it. Either way pack_cache_close follows. */
int pack_cache_lookup(pack_cache *pc, const char *dir, const gguf_file *f, uint64_t layout_hash,
                      size_t bytes, kl_workers *wk, void **out);
/* A writable shared mapping of a new entry of bytes (blocks reserved on disk), or NULL when
 * it cannot be made (no space, read-only directory): pack in memory instead. */
void *pack_cache_create(pack_cache *pc, size_t bytes);
/* Checksums the packed payload at p, writes the trailer, renames the entry into place and
 * prunes entries of models that are gone; p stays mapped (read-only) whatever happens. */
void pack_cache_commit(pack_cache *pc, void *p, size_t bytes, kl_workers *wk);
/* Releases the lock and removes an unfinished entry. */
void pack_cache_close(pack_cache *pc);
#endif
