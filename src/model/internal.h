/* model/internal.h: the bound model, shared by load.c (binding and checks), forward.c (the
 * layer loop) and attn.c (attention through the paged cache). Nobody outside model/ sees it. */
#ifndef KILN_MODEL_INTERNAL_H
#define KILN_MODEL_INTERNAL_H
#include "base/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <limits.h>

#define MODEL_MAX_HEAD_DIM 1024 /* load.c rejects larger heads (and n_rot <= head_dim) */
#define MODEL_MAX_EXPERTS  512  /* per layer (DeepSeek-V3 has 256, Qwen3-MoE 128) */
/* Cached positions per pass of attention over the cache: a chunk of K or V rows converted
 * once for every query row of a tile (never crossing a block). */
#define MODEL_KV_CHUNK 16
/* Positions per step of attention's online softmax (model/attn.c), and tokens per attention
 * tile: the scratch is (tokens x query heads per KV head) x span, whatever the context. */
#define MODEL_ATTN_SPAN 256
#define MODEL_ATTN_QT   32
/* Positions per segment of attention (a multiple of the span): a long context's decoding rows
 * are split across the workers by segments, their partial results (at most
 * MODEL_ATTN_PART_FLOATS floats) merged after; see model/attn.c. */
#define MODEL_ATTN_SEG         1024
#define MODEL_ATTN_PART_FLOATS (1 << 20)

/* A weight matrix (rows, cols) as GGUF holds it: ne[0] = cols. */
typedef struct model_w {
    const void *data;
    kl_dtype type;
    int64_t rows, cols;
    const void *packed; /* the same weights packed for kl_matmul_packed, or NULL */
} model_w;

/* What sets an architecture apart (model/arch.c holds one row per architecture). */
enum {
    ARCH_QKV_BIAS = 1 << 0,     /* Q/K/V biases (qwen2) */
    ARCH_BIASES = 1 << 1,       /* every linear and norm has a bias (starcoder2) */
    ARCH_QK_NORM = 1 << 2,      /* RMSNorm of each Q and K head (qwen3, gemma3) */
    ARCH_QK_NORM_FULL = 1 << 3, /* RMSNorm of the whole Q and K projections (olmo2) */
    ARCH_POST_NORMS = 1 << 4,   /* norms on the attention and FFN outputs (gemma2/3, olmo2) */
    ARCH_NO_PRE_NORMS = 1 << 5, /* no norm before the sublayers (olmo2) */
    ARCH_EMB_SCALE = 1 << 6,    /* embeddings times sqrt(dim) (gemma) */
    ARCH_Q_SCALE = 1 << 7,      /* the query is scaled before attention, not the scores */
    ARCH_SOFTCAP = 1 << 8,      /* tanh soft-capping of scores and logits (gemma2) */
    ARCH_PARALLEL = 1 << 9,     /* attention and FFN read the same normed input (command-r) */
    ARCH_TIED = 1 << 10,        /* the output is always token_embd (gemma, command-r) */
    ARCH_FUSED = 1 << 11,       /* attn_qkv and ffn_up = [gate; up] (phi3) */
    ARCH_GRANITE = 1 << 12,     /* embedding, residual, attention and logit scales (granite) */
    ARCH_LOGIT_SCALE = 1 << 13, /* logits times logit_scale (command-r) */
    ARCH_LOCAL_ROPE = 1 << 14,  /* sliding-window layers use base 10000, unscaled (gemma3) */
    ARCH_ROPE_LONG = 1 << 15,   /* rope_factors_long / _short by context (phi3) */
    ARCH_EXPERTS = 1 << 16,     /* may be a mixture of experts (<arch>.expert_count; model/moe.c) */
    ARCH_MOE_ONLY = 1 << 17,    /* must be one (qwen2moe, qwen3moe) */
    ARCH_MOE_NORM = 1 << 18,    /* the chosen experts' weights renormalised to sum 1 (Mixtral,
                                   Qwen3-MoE's norm_topk_prob) */
    ARCH_SHARED_EXPERT = 1 << 19, /* a shared expert, sigmoid-gated, for every token (qwen2moe) */
    ARCH_MLA = 1 << 20,           /* multi-head latent attention (deepseek2: model/mla.c) */
    ARCH_MOE_DEEPSEEK = 1 << 21,  /* leading dense layers, then experts routed by softmax or
                                     sigmoid (+ a selection bias), their weights scaled, and
                                     ungated shared experts (deepseek2) */
    ARCH_BERT = 1 << 22,    /* an encoder (bert, nomic-bert): token type 0 added to the embeddings,
                               then LayerNorm; post-norms (the residual sums are LayerNormed), no
                               pre-norms or output norm or head: embeddings only */
    ARCH_ABS_POS = 1 << 23, /* learned position embeddings instead of RoPE (bert) */
    ARCH_FUSED_QKV = 1 << 24, /* attn_qkv = [q; k; v] alone (nomic-bert; ARCH_FUSED has it too) */
};
typedef enum { MODEL_NORM_RMS, MODEL_NORM_LAYER } model_norm;
typedef enum { MODEL_FFN_SWIGLU, MODEL_FFN_GEGLU, MODEL_FFN_GELU } model_ffn; /* GELU: no gate */

typedef struct model_arch {
    const char *name;
    bool neox; /* RoPE pairs (i, i + n_rot/2), else (2i, 2i+1) */
    model_norm norm;
    model_ffn ffn;
    unsigned quirks; /* ARCH_* */
    int swa_period;  /* with a sliding window: 0 every layer; p: layers l % p < p - 1 (gemma3 6);
                        -2: even layers (gemma2) */
} model_arch;

/* The architecture named name, or NULL. */
const model_arch *model_arch_find(const char *name);

typedef struct model_layer {
    const float *attn_norm, *ffn_norm;           /* (dim); NULL without pre-norms */
    const float *attn_norm_b, *ffn_norm_b;       /* LayerNorm biases (dim) or NULL */
    const float *attn_post_norm, *ffn_post_norm; /* (dim) or NULL */
    model_w wq, wk, wv, wo;                      /* phi3: views of one attn_qkv */
    const float *bq, *bk, *bv, *bo;              /* biases or NULL */
    const float *q_norm, *k_norm;                /* head_dim (per head) or q_dim / kv_dim */
    model_w w_gate, w_up, w_down;                /* no gate for MODEL_FFN_GELU */
    const float *b_up, *b_down;
    /* A mixture of experts (hp.n_expert > 0) instead of w_gate/w_up/w_down: */
    model_w router;                  /* ffn_gate_inp (n_expert, dim) */
    model_w *exp_gate, *exp_up;      /* (n_expert) views of ffn_{gate,up}_exps: (ff_exp, dim) */
    model_w *exp_down;               /* (n_expert) views of ffn_down_exps: (dim, ff_exp) */
    model_w sh_gate, sh_up, sh_down; /* the shared expert (ARCH_SHARED_EXPERT): ff_shexp wide */
    const float *sh_gate_inp;        /* (dim): sigmoid(x . it) scales the shared expert, or
                                        NULL: added as it is (deepseek2) */
    const float *exp_probs_b;        /* (n_expert) added to the probabilities to choose the
                                        experts, not to weight them (DeepSeek-V3), or NULL */
    /* Multi-head latent attention (ARCH_MLA, model/mla.c): the query straight from wq (Lite)
     * or through a low-rank wq_a, its norm and wq_b; wkv_a gives the compressed KV latent
     * (kv_lora) and the key's shared RoPE part (n_rot); wkv_b expands the normed latent to
     * every head's key (head_dim - n_rot) and value (v_head_dim). */
    model_w wq_a, wq_b, wkv_a, wkv_b;
    const float *q_a_norm, *kv_a_norm; /* (q_lora), (kv_lora) */
    model_w *uk; /* (n_heads) head h's key rows of wkv_b transposed: (kv_lora, nope), in
                    wkv_b's float type, else Q8_0 (model/mla.c) */
    model_w *uv; /* (n_heads) views of head h's value rows of wkv_b: (v_head_dim, kv_lora) */
    const float *attn_out_norm, *attn_out_norm_b;   /* ARCH_BERT: after the attention residual */
    const float *layer_out_norm, *layer_out_norm_b; /* ARCH_BERT: after the FFN residual */
    int window; /* sliding window (positions attended, itself included), 0: all */
    const kl_rope_cfg *rope;
} model_layer;

/* Activations of one batch: every buffer sized for opts.max_batch_tokens rows. */
typedef struct model_scratch {
    float *x;        /* (n, dim) residual stream */
    float *xb;       /* (n, dim) normed input of a sublayer */
    float *q;        /* (n, q_dim) */
    float *k, *v;    /* (n, kv_dim) */
    float *att;      /* (n, q_dim) attention output */
    float *xo;       /* (n, dim) attention output after its projection */
    float *hb, *hb2; /* (n, hidden) */
    float *rows;     /* (max_logits, dim) final-normed rows that want logits */
    void *mm;        /* matmul activation scratch, the largest any weight needs */
    float *attn_ws;  /* (n_workers, attn_ws_floats): attention workspace per worker */
    int32_t *tiles;  /* (max_batch_tokens + 1) first token of each attention tile */
    int32_t *attn_seg0, *attn_part0; /* (max_batch_tokens + 1) a split attention step's first
                                        segment and partial-result row of each tile */
    float *part_m, *part_a; /* (attn_parts) and (attn_parts, head_dim): segments' partial */
    double *part_s;         /* results: maxima, outputs and (attn_parts) sums */
    int32_t *seq_end;       /* (max_batch_tokens) non-causal attention: each batch sequence's last
                               position + 1 */
    /* a mixture of experts (model/moe.c); n = max_batch_tokens, k = n_expert_used */
    float *moe_logits;   /* (n, n_expert) router logits */
    float *moe_wt;       /* (n, k) weight of each token's chosen experts */
    int32_t *moe_sel;    /* (n, k) the chosen experts */
    int32_t *moe_slot;   /* (n, k) row of each choice in the grouped rows */
    int32_t *moe_first;  /* (n_expert + 1) first grouped row of each expert */
    uint64_t *moe_load;  /* (n_expert) tokens routed to each expert since load, summed over
                            the layers (model_expert_load) */
    float *moe_x;        /* (n * k, dim) the FFN input of each choice, grouped by expert */
    float *moe_y;        /* (n * k, dim) each choice's expert output, grouped */
    float *moe_sh;       /* (n, dim) the shared expert's output */
    float *moe_shg;      /* (n) the shared expert's gate logit */
    kl_mm_run *moe_runs; /* (2 * n_expert) the experts' products of one pass */
    /* multi-head latent attention (model/mla.c) */
    float *mla_qa;       /* (n, q_lora) the low-rank query */
    float *mla_kva;      /* (n, kv_lora + n_rot) the KV latent and the key's RoPE part */
    float *mla_q;        /* (n, n_heads * qk_dim) the query's heads */
    float *mla_hx;       /* (n_heads * n, max(nope, kv_lora)) per-head rows, head-major */
    float *mla_hy;       /* (n_heads * n, max(kv_lora, v_head_dim)) their products */
    kl_mm_run *mla_runs; /* (n_heads) */
} model_scratch;

/* The projections an adapter can update (model/lora.c): per layer, then the output head. */
typedef enum {
    LORA_Q,
    LORA_K,
    LORA_V,
    LORA_O,
    LORA_GATE,
    LORA_UP,
    LORA_DOWN,
    LORA_SLOTS, /* per layer */
} lora_slot;

/* One adapter's rows in this batch: tokens idx[start, start + n) of the grouping. */
typedef struct lora_group {
    const struct model_lora *a;
    int start, n;
} lora_group;

/* The adapters of one batch (model_lora_plan), sized at load for max_batch_tokens. */
typedef struct lora_scratch {
    int32_t *idx, *out_idx;          /* (max_batch_tokens), (max_logits): rows grouped by adapter */
    int32_t *out_tok;                /* (max_logits) the token of each logits row */
    int32_t *group_of;               /* (max_batch_tokens) each row's group while grouping */
    lora_group *groups, *out_groups; /* (max_batch_tokens), (max_logits) */
    int n_groups, n_out_groups;
    kl_lora_seg *segs; /* (3 * max_batch_tokens): up to three projections per group */
    float *t;          /* (3 * max_batch_tokens * max_lora_rank) shrunk rows */
} lora_scratch;

struct model {
    const gguf_file *file; /* the weights' file (borrowed): its mapping may lose pages */
    model_hparams hp;
    model_opts opts;
    int q_dim, kv_dim;
    const model_arch *arch;
    kl_rope_cfg rope, rope_local; /* rope_local: gemma3's sliding-window layers */
    float q_scale;                /* ARCH_Q_SCALE: queries times this */
    float kq_scale;               /* scores times this */
    model_w tok_embd, output;     /* output: none (data NULL) in an encoder (ARCH_BERT) */
    const float *output_norm, *output_norm_b;
    model_w tok_types, pos_embd;        /* ARCH_BERT: token_types (row 0 added); ARCH_ABS_POS:
                                           position_embd (n_ctx_train rows) */
    const float *emb_norm, *emb_norm_b; /* ARCH_BERT: token_embd_norm */
    model_layer *layers;
    model_w *experts; /* (n_layers, 3, n_expert): what the layers' exp_* point into */
    model_w *mla_w;   /* (n_layers, 2, n_heads): what the layers' uk, uv point into */
    uint8_t *mla_uk;  /* (n_layers, n_heads, kv_lora, nope): the uk weights */
    uint8_t *mla_pk;  /* uk and uv packed for kl_matmul_packed (NULL: not packed) */
    model_scratch s;
    void *packed; /* the mapping every model_w.packed points into (pack.c) */
    size_t packed_bytes;
    bool packed_cached;    /* mapped from the packed-weights cache, not packed at this load */
    size_t attn_ws_floats; /* per worker: running and folded sums (qt*group doubles each) and
                              maxima, scores (qt*group, span), queries, outputs and folded
                              outputs (qt*group, head_dim) each, a K/V chunk (MODEL_KV_CHUNK,
                              head_dim); even (doubles stay aligned) */
    size_t attn_parts;     /* rows of partial results (MODEL_ATTN_PART_FLOATS) */
    lora_scratch lora;
};

/* LoRA in the forward pass (lora.c). Groups the batch's rows (and its logits rows) by
 * adapter; nothing to do afterwards when no sequence has one. */
void model_lora_plan(model *m, const model_batch *b);
/* Adds each adapter's update to the projections slots[0..n) of layer (-1: the output head;
 * slot ignored) just computed from x into ys[k], over its own rows. */
void model_lora_add(model *m, kl_workers *w, int layer, const lora_slot *slots, int n,
                    const float *x, float *const *ys);
int model_lora_scratch_alloc(model *m, kl_err *err);
void model_lora_scratch_free(model *m);

/* make.c: x[0..n) approximately normal with standard deviation sd (bounded by 3.46 sd); a
 * name's hash (FNV-1a), to seed a tensor's generator. */
void model_fill_normal(kl_rng *r, float *x, int64_t n, float sd);
uint64_t model_hash_name(const char *s);
/* model/make_copy.c: whether o can make a --copy model (0 or KL_EINVAL in err), and row r of
 * tensor name in one (cols floats into x). */
struct model_make_opts;
int model_copy_check(const struct model_make_opts *o, kl_err *err);
void model_copy_row(const struct model_make_opts *o, const char *name, int64_t r, int64_t cols,
                    float *x);

/* The FFN of layer l as a mixture of experts (model/moe.c): xb (n, dim) in, xb out. */
void model_moe_ffn(model *m, kl_workers *w, int layer, int n);
/* Projections of x (n rows) by w into y (forward.c's, for moe.c). */
void model_proj(model *m, kl_workers *wk, const model_w *w, const float *x, int n, float *y);
void model_proj2(model *m, kl_workers *wk, const model_w *w0, float *y0, const model_w *w1,
                 float *y1, const float *x, int n);
/* A matmul output of w into y (rows of w->rows floats). */
kl_mm_out model_mm_out(const model_w *w, float *y);

/* Multi-head latent attention (model/mla.c): the q, k and v rows of layer l from xb, as the
 * attention reads them (the latent as one KV head; each query head in the latent's space);
 * then the heads' values from att, (n, n_heads * v_head_dim), into att for attn_output. */
void model_mla_qkv(model *m, kl_workers *w, const model_batch *b, int layer);
void model_mla_values(model *m, kl_workers *w, int layer, int n);
/* Builds every layer's uk (transposed) and uv (views) from wkv_b, both packed unless
 * opts.no_repack; mla_free frees them. */
int model_mla_bind(model *m, kl_err *err);
void model_mla_free(model *m);

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
