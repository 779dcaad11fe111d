/* engine/engine.h: requests in, token events out. The C API that `kiln run`, `kiln serve`
 * and the tests call (DESIGN.md "The request path").
 *
 * One engine thread runs the step loop: plan (decode first, then prefill chunks under a token
 * budget, preempting the lowest-priority latest-arrived sequence when KV blocks run out) →
 * batch → model_forward → sample → emit → free/cache blocks. Other threads talk to it only
 * through engine_submit / engine_abort / engine_stats, which are thread-safe. */
#ifndef KILN_ENGINE_ENGINE_H
#define KILN_ENGINE_ENGINE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/err.h"

typedef struct engine engine; /* opaque */
struct model;
struct model_lora;
struct tok;
struct gram;

/* Speculative decoding (engine/spec.c): a decoding sequence proposes draft tokens, the step
 * verifies them beside everything else in its one batch, and the sequence keeps the longest
 * prefix the target agrees with plus one token of its own. Output is the target's: the same
 * tokens as without speculation when greedy or with n-gram drafts, the same distribution with
 * sampled drafts (rejection sampling). */
typedef enum engine_spec_kind {
    ENGINE_SPEC_OFF = 0,
    ENGINE_SPEC_NGRAM, /* prompt lookup: continue the latest earlier match of the last n tokens */
    ENGINE_SPEC_DRAFT, /* a smaller model with the same vocabulary, its own KV cache */
    ENGINE_SPEC_SKIP,  /* the target's first skip_layers layers and its output head */
} engine_spec_kind;

#define ENGINE_SPEC_MAX_K  16  /* draft tokens per sequence per step at most */
#define ENGINE_MAX_EXPERTS 256 /* experts whose load engine_stats carries (DeepSeek-V3 has 256) */
#define ENGINE_SPEC_STEP_ROWS                                                                      \
    32 /* draft tokens per step at most, over all sequences: the                                   \
          logits rows a model needs past max_seqs (engine_open) */

typedef struct engine_spec {
    engine_spec_kind kind;
    int k;                    /* draft tokens per sequence per step at most (default 8) */
    int ngram_min, ngram_max; /* n-gram lengths matched, longest first (default 2..4) */
    int skip_layers;          /* ENGINE_SPEC_SKIP: layers the draft runs (default half) */
    bool fixed;               /* always draft k (no adaptation, no back-off): tests, benchmarks */
    struct model *draft;      /* ENGINE_SPEC_DRAFT: borrowed; must outlive the engine */
    const struct tok *draft_tok; /* its tokenizer, checked against the target's */
} engine_spec;

/* Parses "ngram", "draft", "skip" or "off", optionally followed by ":key=value,...": k=N,
 * n=MAX, min=MIN (ngram), layers=N (skip), fixed. Returns 0, or KL_EINVAL with err naming
 * the part that is wrong (out is then unchanged). */
int engine_spec_parse(engine_spec *out, const char *text, kl_err *err);
/* Writes the setting as engine_spec_parse reads it ("ngram:k=8,n=4,min=2"). */
void engine_spec_format(const engine_spec *sp, char *buf, size_t cap);

typedef struct engine_config {
    struct model *model;   /* borrowed; must outlive the engine */
    const struct tok *tok; /* borrowed; for detokenizing pieces and stop strings */
    int n_threads;         /* compute workers (default: cores) */
    int block_tokens;      /* KV block size (default 16) */
    size_t kv_mem_bytes;   /* KV budget (default: chosen from free memory) */
    kl_dtype kv_dtype;     /* KL_F16 default, KL_F32, KL_Q8_0 */
    int max_seqs;          /* running sequences at most (default 64) */
    int max_batch_tokens;  /* per-step token budget (default chosen by benchmark) */
    int max_queue;         /* waiting requests at most; past it submit says KL_ENOSPC */
    int n_ctx;             /* longest prompt + output allowed (default: model's; never more
                              than the KV pool holds: engine_n_ctx) */
    bool prefix_cache;     /* default true */
    int pooling; /* embedding requests: ENGINE_POOL_*; 0: the model's pooling_type, else mean */
    engine_spec spec; /* speculative decoding (default off) */
} engine_config;

/* How an embedding request pools its prompt's final hidden states (llama.cpp's numbers). */
enum { ENGINE_POOL_MODEL = 0, ENGINE_POOL_MEAN = 1, ENGINE_POOL_CLS = 2, ENGINE_POOL_LAST = 3 };

#define ENGINE_MAX_STOP     8
#define ENGINE_MAX_LOGPROBS 20

typedef struct engine_sampling {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off */
    float presence_penalty, frequency_penalty;
    uint64_t seed;  /* per-request generator: same seed, same tokens, any batch */
    int max_tokens; /* generated tokens at most */
    bool ignore_eos;
    int logprobs; /* -1: none; 0: the chosen token's; N: and the top N (<= 20) */
    int n_logit_bias;
    const int32_t *logit_bias_ids; /* copied at submit */
    const float *logit_bias;
    int n_stop; /* stop strings: never emitted, matched across token boundaries */
    const char *stop[ENGINE_MAX_STOP];
    int n_stop_ids;
    const int32_t *stop_ids;
} engine_sampling;

typedef enum engine_finish {
    ENGINE_RUNNING = 0,
    ENGINE_FINISH_STOP,   /* EOS, a stop token or a stop string */
    ENGINE_FINISH_LENGTH, /* max_tokens or the context */
    ENGINE_FINISH_ABORT,  /* engine_abort or shutdown */
    ENGINE_FINISH_ERROR,  /* the model failed on this request (event.error says how) */
} engine_finish;

typedef struct engine_logprob {
    int32_t token;
    float logprob;
} engine_logprob;

/* One event for one choice of one request. Delivered on the engine thread: the callback
 * must copy what it needs and return quickly (push to a queue, wake a loop); never block. */
typedef struct engine_event {
    uint64_t id;      /* the request's id from engine_submit */
    int index;        /* choice index, 0..n-1 */
    int32_t token;    /* the sampled token, or -1 on a finish-only event */
    const char *text; /* newly final text (UTF-8 complete, stop strings held back); may be "" */
    size_t text_len;
    float logprob; /* of token, when logprobs >= 0 */
    int n_top;
    const engine_logprob *top; /* (n_top) */
    engine_finish finish;      /* ENGINE_RUNNING until this choice's last event */
    /* usage, filled on the last event of the request (all choices finished): */
    int prompt_tokens, completion_tokens, cached_tokens;
    const char *error; /* with ENGINE_FINISH_ERROR: why (a constant string); else NULL */
    bool last;         /* no more events for this request */
    double queued_s;   /* seconds from engine_submit until a step first scheduled the request
                          (-1 on events before that: an abort while waiting) */
    /* an embedding request's last event: the pooled, L2-normalised vector (n_embedding) */
    const float *embedding;
    int n_embedding;
    int spec_draft_tokens, spec_accepted_tokens; /* proposed and accepted, over all choices */
} engine_event;

typedef void (*engine_event_fn)(void *ctx, const engine_event *ev);

typedef struct engine_request {
    const int32_t *prompt; /* copied at submit */
    int n_prompt;
    int n; /* completions sharing the prompt (default 1) */
    engine_sampling sp;
    int priority;        /* higher first; FCFS within a class */
    uint64_t cache_salt; /* mixed into prefix-cache hashes; 0: none */
    /* the LoRA adapter the request runs on (model/lora.h), loaded for the engine's model;
     * borrowed: it must outlive the request's last event. NULL: the base model. Its identity
     * is mixed into the prefix-cache hashes, so adapters never share KV blocks. */
    const struct model_lora *lora;
    /* Constrained decoding (grammar/grammar.h): every choice's output stays inside this
     * language and ends (with an end token) only when it is complete; NULL: none. The
     * engine takes its own reference at submit. Logprobs are those of the masked
     * distribution (as vLLM reports them). An end token always ends a constrained choice,
     * ignore_eos or not. */
    struct gram *grammar;
    bool embed; /* the prompt's embedding, not a completion: one last event carrying it (n = 1;
                   sampling ignored) */
    int spec_k; /* 0: the engine's speculation; -1: none; N > 0: at most N drafts */
    engine_event_fn on_event;
    void *ctx;
} engine_request;

/* The step histograms' bucket upper bounds (a last bucket, +Inf, follows each list). */
#define ENGINE_STEP_S_BUCKETS   12 /* step duration, seconds */
#define ENGINE_STEP_TOK_BUCKETS 14 /* tokens run through the model in one step */
extern const double engine_step_s_le[ENGINE_STEP_S_BUCKETS - 1];
extern const double engine_step_tok_le[ENGINE_STEP_TOK_BUCKETS - 1];

typedef struct engine_stats {
    int running, waiting;
    int32_t kv_blocks_total, kv_blocks_used;
    int block_tokens;
    uint64_t kv_pool_bytes; /* the KV pool's size (pages fault in as blocks are used) */
    uint64_t kv_mem_avail;  /* MemAvailable when the pool was sized (0: unknown) */
    bool kv_pool_default;   /* sized by the default rule, not by kv_mem_bytes */
    uint64_t prefix_queries, prefix_hits; /* tokens */
    uint64_t preemptions;
    uint64_t prompt_tokens, generation_tokens, computed_tokens;
    uint64_t steps;
    /* steps that ran the model, by duration and by batch size (tokens); counts per bucket */
    uint64_t step_s_count[ENGINE_STEP_S_BUCKETS];
    double step_s_sum;
    uint64_t step_tok_count[ENGINE_STEP_TOK_BUCKETS];
    uint64_t step_tok_sum;
    uint64_t grammar_tokens; /* tokens sampled under a grammar */
    uint64_t grammar_ns;     /* engine-thread time masking logits and advancing grammars */
    /* speculative decoding: rounds with drafts, draft tokens proposed and accepted, and how
     * often the draft at each position was accepted (vLLM's spec_decode counters) */
    uint64_t spec_drafts, spec_draft_tokens, spec_accepted_tokens;
    uint64_t spec_accepted_per_pos[ENGINE_SPEC_MAX_K];
    /* a Mixture of Experts' load (model_expert_load): tokens routed to each of the first
     * n_expert experts since the model was loaded, summed over its MoE layers; 0 experts for
     * a dense model */
    int n_expert;
    uint64_t expert_tokens[ENGINE_MAX_EXPERTS];
    int n_workers;           /* compute workers (threads) */
    uint64_t worker_busy_ns; /* their time inside kernels, summed over workers */
    bool model_failed;       /* the model can serve no more (its file changed on disk): every
                                request fails and engine_submit says KL_EIO */
} engine_stats;

/* Sets default values in cfg (call before filling it). */
void engine_config_defaults(engine_config *cfg);
/* Sets OpenAI-like defaults in sp (temperature 1, top_p 1, max_tokens 16, logprobs -1 ...). */
void engine_sampling_defaults(engine_sampling *sp);

/* Creates the engine and starts its thread. Returns 0 and sets *out, or KL_E* and err. */
int engine_create(engine **out, const engine_config *cfg, kl_err *err);
/* Aborts everything still running (each gets a last ENGINE_FINISH_ABORT event), stops the
 * thread and frees it all. NULL is fine. */
void engine_destroy(engine *e);

/* Queues a request. Returns 0 and sets *id, after which events will arrive (the last with
 * last = true); or KL_EINVAL (bad parameters, prompt too long for the context: err says
 * which), or KL_ENOSPC (waiting queue full), and then no event ever arrives. */
int engine_submit(engine *e, const engine_request *req, uint64_t *id, kl_err *err);
/* Aborts a request: its blocks are freed at the next step and it gets a last event with
 * ENGINE_FINISH_ABORT. Unknown or finished ids are ignored. */
void engine_abort(engine *e, uint64_t id);
void engine_stats_get(engine *e, engine_stats *out);
/* The length of the vectors embedding requests give (the model's embedding width). */
int engine_embedding_dim(const engine *e);
/* The longest input an embedding request may have: the context, or for a model that attends
 * both ways (bert), which computes an input in one step, the step's token budget if less. */
int engine_embed_max_tokens(const engine *e);
/* Whether the model generates text; an encoder (bert, nomic-bert) makes embeddings only. */
bool engine_generates(const engine *e);
/* The longest prompt + output a request may have: the configured context, or what the whole
 * KV pool holds when that is less (a longer sequence could never finish). */
int engine_n_ctx(const engine *e);
/* Blocks until nothing is running or waiting, or timeout_ms passes. Returns true if idle. */
bool engine_wait_idle(engine *e, int timeout_ms);
#endif
