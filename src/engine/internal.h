/* engine/internal.h: requests, sequences and the engine state shared by engine.c (the API
 * and the thread), sched.c (planning a step), step.c (running it: batch, forward, sample,
 * emit) and seq.c (one sequence's tokens, blocks and text). */
#ifndef KILN_ENGINE_INTERNAL_H
#define KILN_ENGINE_INTERNAL_H
#include <pthread.h>

#include "base/clock.h"
#include "base/workers.h"
#include "engine/engine.h"
#include "engine/sample.h"
#include "engine/spec.h"
#include "engine/stop.h"
#include "grammar/grammar.h"
#include "kv/blocks.h"
#include "kv/store.h"
#include "model/model.h"
#include "tok/tok.h"

typedef struct eng_req eng_req;

typedef enum seq_state { SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } seq_state;

/* One choice of a request: its tokens (prompt then generated), the blocks holding their K/V,
 * its sampler state and its text stream. Preemption frees the blocks and keeps the rest, so
 * recomputing reproduces exactly the same continuation. */
typedef struct eng_seq {
    eng_req *req;
    int index; /* choice index */
    seq_state state;
    int32_t *tokens; /* (cap) prompt + generated */
    int n_tokens, cap;
    int n_computed;  /* tokens whose K/V are in the cache */
    int32_t *blocks; /* block table (cap_blocks) */
    int n_blocks, cap_blocks;
    uint64_t *hashes; /* (cap_blocks) chained hash of each full block */
    int n_hashed;     /* leading blocks hashed and published */
    kl_rng rng;
    stop_matcher stop;
    char utf8[8]; /* bytes of an incomplete UTF-8 character held back */
    int n_utf8;
    int n_generated;
    engine_finish finish;
    const char *error; /* why it finished with ENGINE_FINISH_ERROR */
    double t_first_token;
    gram_matcher *gm;          /* position in the request's grammar (made at first sample) */
    float *embd;               /* embedding requests: (dim) the pooled rows' running sum */
    int chunk;                 /* tokens scheduled this step (drafts included) */
    spec_seq spec;             /* speculative decoding (spec.c) */
    struct eng_seq *next_wait; /* waiting list link */
} eng_seq;

struct eng_req {
    uint64_t id;
    engine_request r; /* prompt, stop strings and logit bias point into owned copies */
    int32_t *prompt;
    int32_t *bias_ids;
    float *bias;
    char *stop_buf;
    uint64_t arrival; /* FCFS order within a priority class */
    eng_seq **seqs;   /* (r.n); seqs[1..] exist once seqs[0]'s prompt is computed */
    int n_live;       /* choices not finished */
    int n_forked;     /* choices created */
    int cached_tokens;
    bool aborted;
    double t_submit; /* kl_now_s() at engine_submit */
    double queued_s; /* until first scheduled; -1 before */
};

struct engine {
    engine_config cfg;
    int n_ctx, max_batch, max_seqs, bs;
    model *m;
    const tok *tk;
    kl_workers *workers;
    kv_store *store;
    kv_blocks *blocks;
    sample_scratch *sampler;
    gram_vocab *gvocab; /* the tokens' bytes for grammars, built at the first grammar use */
    uint32_t *gmask;    /* (gram_mask_words) one choice's allowed tokens */
    int max_rows;       /* logits rows per step (the model's max_logits, >= max_seqs) */
    float *logits;      /* (max_rows, n_vocab) */
    float *fork_row;    /* (n_vocab) a copy of a row for a forked choice to sample from */
    /* batch buffers, (max_batch) each */
    int32_t *b_token, *b_pos, *b_seq;
    bool *b_want;
    bool *b_want_embd;                /* tokens whose hidden rows an embedding request pools */
    float *b_embd;                    /* (max_batch, dim) those rows */
    int pooling;                      /* ENGINE_POOL_* the embedding requests use (never _MODEL) */
    model_seq *b_seqs;                /* (max_seqs) */
    const struct model_lora **b_lora; /* (max_seqs) adapter of each b_seqs entry */
    eng_seq **b_owner;                /* (max_seqs) sequence of each b_seqs entry */
    eng_seq **running;                /* (max_seqs) sorted by (priority desc, arrival asc) */
    int n_running;
    eng_seq *waiting; /* singly linked, sorted the same way */
    spec_state spec;  /* speculative decoding (spec.c) */
    int n_waiting_reqs;
    /* shared with other threads, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv, idle_cv;
    eng_req **inbox; /* submitted, not yet taken by the thread */
    int n_inbox, cap_inbox;
    uint64_t *aborts;
    int n_aborts, cap_aborts;
    uint64_t next_id, next_arrival;
    bool stopping, idle;
    uint64_t file_faults; /* model_file_faults seen so far (engine thread) */
    const char *failed;   /* why the model can no longer serve (set under mu), or NULL */
    engine_stats stats;   /* the published snapshot (under mu) */
    engine_stats live;    /* the engine thread's own counters, published after each step */
    pthread_t thread;
};

/* seq.c */
eng_seq *seq_new(eng_req *rq, int index, const int32_t *tokens, int n, kl_err *err);
void seq_free(engine *e, eng_seq *s);
/* Drops the sequence's blocks (back to the pool, cached ones on the LRU). */
void seq_release_blocks(engine *e, eng_seq *s);
/* Makes the block table cover positions [0, upto). Returns false when the pool is out. */
bool seq_reserve(engine *e, eng_seq *s, int upto);
/* Takes cached blocks for the longest prefix of the tokens whose blocks are cached (always
 * leaving at least the last token to compute). Returns the tokens hit. */
int seq_prefix_lookup(engine *e, eng_seq *s);
/* Publishes the hashes of full, computed blocks so later requests can reuse them. */
void seq_publish(engine *e, eng_seq *s);
bool seq_push_token(eng_seq *s, int32_t t);
/* Gives back the blocks past the one holding position n_tokens - 1 (they held rejected
 * drafts: never hashed, never shared). */
void seq_trim_blocks(engine *e, eng_seq *s);
/* Copy of s for choice index sharing its computed blocks (the partial last one copied). */
eng_seq *seq_fork(engine *e, eng_seq *s, int index, kl_err *err);

/* sched.c: picks this step's work into e->running[i]->chunk; returns tokens scheduled. */
int sched_plan(engine *e);
void sched_enqueue_waiting(engine *e, eng_seq *s);
/* Adds s to the running list in its place (the caller checked there is room). */
void sched_running_add(engine *e, eng_seq *s);
/* Takes s off the running or waiting list, wherever it is. */
void sched_remove(engine *e, eng_seq *s);

/* constrain.c: grammars (the request's r.grammar) */
enum { CONSTRAIN_OK = 0, CONSTRAIN_END = 1, CONSTRAIN_FAIL = -1 };
/* Masks row (n_vocab logits) to the tokens s's grammar allows next. CONSTRAIN_END: the
 * output is complete and no end token exists to sample (finish with STOP); CONSTRAIN_FAIL:
 * nothing is allowed or out of memory (finish with ERROR). */
int constrain_mask(engine *e, eng_seq *s, float *row, int n_vocab);
/* Advances s's grammar by the sampled token t. False: t is not allowed (finish with ERROR). */
bool constrain_accept(engine *e, eng_seq *s, int32_t t);

/* step.c */
void step_run(engine *e);
/* Samples s's next token from row (modified), with its log probabilities. */
int32_t step_sample(engine *e, eng_seq *s, float *row, float *lp, engine_logprob *top, int *n_top);
/* s takes token t: appended, its text emitted. Returns false when that finished s (s may be
 * freed by then: the caller must not touch it again). */
bool step_accept(engine *e, eng_seq *s, int32_t t, float lp, const engine_logprob *top, int n_top);
/* Finishes s with reason f: emits its last event, releases its blocks. */
void step_finish(engine *e, eng_seq *s, engine_finish f);

/* spec.c (see spec.h) */
int spec_create(engine *e, kl_err *err);
void spec_destroy(engine *e);
/* Gives back s's draft-model blocks (preemption, finish). */
void spec_seq_release(engine *e, eng_seq *s);
/* spec_ngram.c: looks up an n-gram continuation for each of the nc candidates (into its
 * tokens[n_tokens..], avail[] cut to its length); drops those without one. Returns how many
 * are left. */
int spec_ngram_propose(engine *e, int nc);
/* spec_model.c: the drafts of each candidate granted spec.n_draft (cut where a pass cannot
 * take it), written to its tokens[n_tokens..]; a layer-skipping or draft-model pass each. */
void spec_model_propose(engine *e, int nc);
/* After verification: s's draft cache is valid only up to its kept tokens. */
void spec_model_verified(eng_seq *s);
/* After planning n_sched tokens: draft tokens for decoders while they pay for themselves. */
void spec_plan(engine *e, int n_sched);
/* The step's forward pass of n tokens took secs. */
void spec_observe(engine *e, int n, double secs);
/* s's last token and its s->spec.n_draft drafts were computed, rows holding their logits:
 * keeps what the target agrees with, emits, rolls the rest back. Returns the rows used. */
int spec_verify(engine *e, eng_seq *s, float *rows);
#endif
