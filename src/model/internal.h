/* model/internal.h: the bound model, shared by load.c (binding and checks), forward.c (the
 * layer loop) and attn.c (attention through the paged cache). Nobody outside model/ sees it. */
#ifndef KILN_MODEL_INTERNAL_H
#define KILN_MODEL_INTERNAL_H
#include "kernels/kernels.h"
#include "model/model.h"

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
    kl_rope_cfg rope;  /* its freq is rope_freqs */
    float *rope_freqs; /* (n_rot / 2) per-dimension factors (Llama 3 / linear scaling) */
    model_w tok_embd, output;
    const float *output_norm;
    model_layer *layers;
    model_scratch s;
    void *packed; /* the mapping every model_w.packed points into (pack.c) */
    size_t packed_bytes;
    int attn_qt;           /* tokens per attention tile (bounded by the scores' size) */
    size_t attn_ws_floats; /* per worker: scores (qt*group, max_ctx), queries and outputs
                              (qt*group, head_dim) each, a K/V chunk (MODEL_KV_CHUNK, head_dim) */
};

/* Attention of a batch for one layer: writes the batch's k, v into the cache, then att. */
void model_attention(model *m, kl_workers *w, kv_store *kv, int layer, const model_batch *b);
/* Packs every matmul weight kl_pack has a form for (unless opts.no_repack); model_unpack
 * releases them. */
int model_pack(model *m, kl_err *err);
void model_unpack(model *m);
#endif
