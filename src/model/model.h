/* model/model.h: a decoder-only transformer (llama, mistral, qwen2/3, gemma 1-3, phi3, granite,
 * olmo2, command-r, starcoder2; mixtures of experts: Mixtral, qwen2moe, qwen3moe, deepseek2:
 * model/arch.c) or a BERT-style encoder (bert, nomic-bert)
 * bound from GGUF, and its forward pass over a batch of tokens from many sequences reading and
 * writing a paged KV cache (kv/store.h).
 *
 * A batch is flat (DESIGN.md "Batch"): token i belongs to sequence seq[i] at position pos[i].
 * Each sequence has a block table: block j holds its positions [j*bs, (j+1)*bs). Token i's K/V
 * is written to slot pos[i] % bs of block blocks[pos[i] / bs], and it attends to positions
 * 0..pos[i] of its own sequence (those before it were written by earlier batches or earlier in
 * this batch). The engine guarantees the tables cover every position in the batch.
 *
 * A non-causal model (hp.non_causal: bert, nomic-bert) attends both ways: token i attends to
 * every position of its sequence up to the last one in this batch, so a sequence must come
 * whole in one batch (its K/V from earlier batches never saw the later tokens). Such models
 * are encoders (hp.encoder_only): they give embeddings (want_embd), never logits. */
#ifndef KILN_MODEL_MODEL_H
#define KILN_MODEL_MODEL_H
#include <stdbool.h>
#include <stdint.h>
#include "base/err.h"
#include "base/workers.h"
#include "gguf/gguf.h"
#include "kv/store.h"

typedef struct model_hparams {
    char arch[32]; /* general.architecture: llama, qwen2, gemma2, ... (model/arch.c) */
    int n_vocab;
    int dim; /* embedding length */
    int n_layers;
    int n_heads, n_kv_heads, head_dim;
    int hidden_dim; /* FFN (a mixture's dense width: qwen2moe's shared expert default) */
    int n_expert, n_expert_used; /* a mixture of experts: experts per layer, used per token;
                                    0 0: a dense FFN */
    int ff_exp, ff_shexp;        /* an expert's FFN width; the shared expert's (0: none) */
    int n_dense_lead;            /* the first layers have a dense FFN (deepseek2) */
    int n_expert_shared;         /* deepseek2: shared experts (ff_shexp = this * ff_exp) */
    int expert_gating;           /* MODEL_GATING_*: how router logits become probabilities */
    bool expert_norm;            /* the chosen experts' weights renormalised to sum 1 */
    float expert_scale;          /* and then multiplied by this (deepseek2; else 1) */
    int q_lora, kv_lora;         /* deepseek2 (MLA): the query's rank (0: no low-rank query),
                                    the compressed KV latent's */
    int v_head_dim;              /* a value head (head_dim but for deepseek2) */
    int qk_dim;                  /* deepseek2: a query and key head (attention.key_length: the
                                    unrotated part, then n_rot rotated); head_dim is then the
                                    cached latent's kv_lora + n_rot, in one KV head */
    int n_ctx_train;             /* context length the model was trained with */
    int n_rot;                   /* rope dimensions */
    float rope_theta, norm_eps;
    char rope_scaling[8]; /* "none", "linear" or "yarn" */
    float rope_factor;    /* context scaling factor (1: none) */
    int n_ctx_orig;       /* YaRN: the context before scaling */
    float yarn_log_mul;   /* deepseek2: attention scale 1 + this * ln(rope_factor), squared */
    bool rope_neox;       /* rotate (i, i+n/2) pairs (qwen2, gemma, ...), else (2i, 2i+1) */
    int n_swa;            /* sliding window of the layers that have one (0: none) */
    float softcap_attn;   /* gemma2 soft-capping of scores and logits (0: none) */
    float softcap_final;
    float emb_scale, residual_scale, logit_scale; /* granite, command-r (1: none) */
    bool tied_output;  /* no output.weight: logits use token_embd.weight */
    bool non_causal;   /* every token attends to its whole sequence (bert: attention.causal false);
                          the sequence must come in one batch (model_forward) */
    bool encoder_only; /* no output head: embeddings only, no logits (bert, nomic-bert) */
    int pooling;       /* <arch>.pooling_type, llama.cpp's numbers: MODEL_POOL_* (0: not given) */
} model_hparams;

/* How a router's logits become probabilities (llama.cpp's expert_gating_func values). */
enum { MODEL_GATING_SOFTMAX = 1, MODEL_GATING_SIGMOID = 2 };

/* How an embedding model pools its tokens' final hidden states into one vector. */
enum { MODEL_POOL_NONE = 0, MODEL_POOL_MEAN = 1, MODEL_POOL_CLS = 2, MODEL_POOL_LAST = 3 };

typedef struct model_seq {
    const int32_t *blocks; /* block table */
    int n_blocks;
} model_seq;

struct model_lora;

typedef struct model_batch {
    int n;                   /* tokens */
    const int32_t *token;    /* (n) */
    const int32_t *pos;      /* (n) position in its sequence */
    const int32_t *seq;      /* (n) index into seqs */
    const bool *want_logits; /* (n); logits rows come out in token order */
    int n_seqs;
    const model_seq *seqs; /* (n_seqs) */
    /* (n_seqs) each sequence's LoRA adapter (model/lora.h; NULL: the base model), or NULL:
     * every sequence on the base model */
    const struct model_lora *const *lora;
    /* embeddings: the final-normed hidden states (what the output head would read) of the
     * tokens flagged here come out in embd, (flagged, dim) in token order; NULL: none */
    const bool *want_embd;
    float *embd;
    /* layers run (0: all): a self-speculation draft (engine/spec_model.c) runs the first ones,
     * then the final norm and output head, and writes K/V of those layers only */
    int n_layers;
} model_batch;

typedef struct model model; /* opaque */

typedef struct model_opts {
    int max_batch_tokens;       /* largest batch forward() will be given; sizes the scratch */
    int max_logits;             /* most rows of logits per batch */
    int max_ctx;                /* highest position + 1 any sequence will reach (0: n_ctx_train,
                                 at most 4096, as llama.cpp's default context) */
    int n_workers;              /* compute workers the forward pass will be given (sizes scratch) */
    bool no_repack;             /* use the weights in the file's layout only: no packed copy
                                   (half the memory, slower matmuls) */
    const char *pack_cache_dir; /* where packed weights are saved and mapped from on the next
                                   load (NULL: packed in memory at every load); read during
                                   model_load only */
    size_t pack_cache_min;      /* smallest packed size worth a cache file (0: 32 MiB) */
    int max_lora_rank;          /* largest LoRA rank an adapter may have (sizes the scratch;
                                   0: 64) */
} model_opts;

/* The packed-weights cache directory for commands: KILN_PACK_CACHE (a directory, or 0 / off
 * for none), else $XDG_CACHE_HOME/kiln/packed or ~/.cache/kiln/packed. Returns false (out
 * untouched or partial) when there is none. */
bool model_pack_cache_default(char *out, size_t n);

/* Binds the weights of f (which must outlive the model). Checks every shape and dtype.
 * Returns 0 and sets *out, or a negative KL_E* code with the reason in err. */
int model_load(model **out, gguf_file *f, const model_opts *opts, kl_err *err);
void model_free(model *m); /* NULL is fine */
const model_hparams *model_hparams_of(const model *m);
/* A Mixture of Experts' load: tokens routed to each expert since the model was loaded, summed
 * over its MoE layers (a token counts once per layer for each expert it chose; shared experts
 * are not counted). Sets *n_expert and returns the counts, or NULL and 0 for a dense model.
 * Written by model_forward: read them on its thread. */
const uint64_t *model_expert_load(const model *m, int *n_expert);
/* Pages of the model's file that vanished while it was mapped (truncated on disk; read as
 * zeros since: gguf_faults). 0 while it is intact; anything computed once it is not is wrong. */
uint64_t model_file_faults(const model *m);
/* The options the model was loaded with, defaults filled in. */
const model_opts *model_opts_of(const model *m);

/* Runs the batch; writes one row of n_vocab logits per token with want_logits into logits
 * ((rows, n_vocab) F32). Allocates nothing. Returns 0 or KL_EINVAL for a batch that breaks
 * the contract above (nothing written to the cache in that case). */
int model_forward(model *m, kl_workers *w, kv_store *kv, const model_batch *b, float *logits,
                  kl_err *err);
#endif
