/* engine/spec.h: speculative decoding inside the step (engine.h, engine_spec), the state it
 * keeps per sequence and per engine. Included by internal.h only.
 *
 * A step with speculation: plan (sched.c) → spec_plan: the decoders that may draft get draft
 * tokens, written after their last token (tokens[n_tokens..]) and covered by blocks → the batch
 * holds each such decoder's last token and its drafts, logits for all of them → spec_verify per
 * decoder: the target samples row by row, keeping each draft it agrees with, and stops at the
 * first it does not (its own token replaces it); the K/V slots of the rejected drafts are left
 * behind (n_computed only counts kept tokens, blocks past them go back to the pool, and only
 * blocks of kept tokens are ever hashed into the prefix cache). */
#ifndef KILN_ENGINE_SPEC_H
#define KILN_ENGINE_SPEC_H
#include <stdint.h>

#include "engine/engine.h"
#include "kv/blocks.h"
#include "kv/store.h"
#include "model/model.h"

#define SPEC_MAX_DRAFTS ENGINE_SPEC_STEP_ROWS /* draft tokens in one step at most */

/* One sequence's speculation. */
typedef struct spec_seq {
    int n_draft;           /* draft tokens in this step's batch, at tokens[n_tokens..] */
    float rate;            /* recent acceptance of its draft tokens (moving average) */
    int idle;              /* tokens since it last drafted */
    int pause;             /* after this many idle tokens it gets a fresh start */
    int drafted, accepted; /* over its life, for the request's usage */
    /* ENGINE_SPEC_DRAFT: the draft model's block table for this sequence */
    int32_t *blocks;
    int n_blocks, cap_blocks;
    int n_computed; /* tokens whose draft K/V are in the draft cache */
} spec_seq;

/* Step time as a + b * tokens, fitted to the engine's own steps (least squares with
 * forgetting, b pulled toward a prior): what one more token in the batch costs. */
typedef struct spec_cost {
    double s0, s1, s2, sy, sny; /* weighted sums of 1, n, n^2, t, n*t */
} spec_cost;

#define SPEC_RATE_MIN 0.15f /* a decoder whose acceptance fell below this drafts nothing */

/* spec_policy.c: the fit (forgets old steps; time in seconds; before any step, the prior in
 * units of a step's fixed part). */
void spec_cost_observe(spec_cost *c, int n, double secs);
/* Predicted time of a decode step of n tokens. */
double spec_cost_at(const spec_cost *c, int n);

/* Folds a drafting pass of n tokens over ns sequences, secs long, into the moving average
 * *pass_s (0: none yet). Only decode-shaped passes count (at most 2 tokens a sequence): a
 * first pass that feeds a new sequence's whole prompt to a draft model is that prompt's
 * one-time prefill; priced as a pass, it made every later pass look so dear that drafting
 * stopped for good (a draft model never drafted after one warm-up request). */
void spec_pass_observe(double *pass_s, int n, int ns, double secs);

typedef struct spec_grant_in {
    const spec_cost *cost;
    double draft_pass_s; /* time of one drafting pass (0: n-gram, or not measured yet) */
    bool fixed;          /* grant every candidate its avail, spare permitting */
    int n;               /* tokens already in the step (one per decoder) */
    int spare;           /* draft tokens the step may still take */
    int nc;              /* candidates */
    const float *rate;   /* (nc) their acceptance rates */
    const int *avail;    /* (nc) their limits */
} spec_grant_in;
/* Writes each candidate's draft tokens to nd (nc); returns their sum. */
int spec_grant(const spec_grant_in *in, int *nd);

typedef struct spec_state {
    engine_spec cfg;
    spec_cost cost;        /* the target's decode steps */
    double draft_pass_s;   /* one drafting forward pass (moving average) */
    bool observe;          /* this step only decodes: its forward time feeds cost */
    struct eng_seq **cand; /* (max_seqs) decoders that may draft this step */
    int *avail;            /* (max_seqs) drafts each could take */
    float *rates;          /* (max_seqs) their acceptance rates */
    int *grant;            /* (max_seqs) drafts each gets */
    /* ENGINE_SPEC_DRAFT and _SKIP: the drafting passes */
    kv_store *store; /* the draft model's cache (DRAFT only) */
    kv_blocks *blocks;
    float *logits;                    /* (max_seqs, n_vocab) one row per drafting sequence */
    int32_t *b_token, *b_pos, *b_seq; /* (max_batch) a drafting pass's batch */
    bool *b_want;
    model_seq *b_seqs;                /* (max_seqs) */
    const struct model_lora **b_lora; /* (max_seqs) */
    struct eng_seq **fed;             /* (max_seqs) the sequences of a drafting pass */
} spec_state;
/* Prompt lookup (spec_ngram.c): finds the latest earlier occurrence of the longest suffix of
 * t (n tokens) that is n_min..n_max tokens long, and writes the k tokens that follow it to out
 * (a continuation that reaches the end of t repeats its cycle: "a b a b" continues "a b").
 * Returns k, or 0 when no suffix of n_min tokens occurred before. O(n * n_max). */
int spec_ngram_lookup(const int32_t *t, int n, int n_min, int n_max, int k, int32_t *out);
#endif
