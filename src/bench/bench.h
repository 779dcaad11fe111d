/* bench/bench.h: `kiln bench`, a load generator for any OpenAI-compatible endpoint.
 *
 *   kb_config (what to send, how hard) → kb_run (one event loop drives every stream)
 *     → kb_record per request → kb_summarize → report (JSON, table, SVG, HTML)
 *   kb_sweep repeats kb_run at rising load until the SLO fails or throughput stops rising.
 *
 * Talks HTTP only: never links engine or model code. */
#ifndef KILN_BENCH_BENCH_H
#define KILN_BENCH_BENCH_H
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "bench/dist.h"

#define KB_MAX_MODELS 64     /* a mix over many LoRA adapters (a gateway benchmark: 32) */
#ifndef KB_ITL_MAX           /* (a test build sets it small) */
#define KB_ITL_MAX (1 << 21) /* inter-token gaps kept per run; a uniform sample past that */
#endif

/* How a request ended. KB_OK first; the rest are error kinds, counted separately. */
typedef enum {
    KB_OK,
    KB_ERR_CONNECT, /* no HTTP response at all (refused, reset before the headers) */
    KB_ERR_HTTP_4XX,
    KB_ERR_HTTP_5XX, /* also any other non-2xx status */
    KB_ERR_TIMEOUT,  /* no byte for --timeout seconds */
    KB_ERR_STREAM,   /* 200 but cut, garbled, an SSE error event, or no [DONE] */
    KB_N_STATUS
} kb_status;

/* "ok", "connect", "http_4xx", "http_5xx", "timeout", "stream_error". */
const char *kb_status_name(kb_status s);

typedef struct kb_target {
    char url[512]; /* http://HOST:PORT (a path prefix is kept: http://h:p/prefix) */
    char host[256];
    char prefix[256]; /* "" or "/prefix" */
    int port;
} kb_target;

/* Parses "http://HOST[:PORT][/prefix]" into t. Returns 0 or KL_EINVAL (https is not
 * supported: the message says so). */
int kb_target_parse(kb_target *t, const char *url, kl_err *err);

/* The server's one-token words, for prompts of an exact length (bench/vocab.h). */
typedef struct kb_vocab kb_vocab;

typedef struct kb_model_weight {
    char name[128];
    double weight;
} kb_model_weight;

typedef struct kb_config {
    kb_target target[2]; /* [1] only with --vs */
    int n_targets;
    bool chat;                             /* /v1/chat/completions, else /v1/completions */
    kb_model_weight models[KB_MAX_MODELS]; /* empty name: ask GET /v1/models */
    int n_models;
    int concurrency; /* closed loop: requests in flight per target (0: open loop) */
    double rate;     /* open loop: Poisson arrivals per second per target */
    int requests;    /* per target; 0: until duration */
    double duration; /* seconds; 0: until requests */
    kb_dist input_len, output_len;
    bool output_len_given; /* with --dataset: else the dataset's reply lengths */
    uint64_t seed;
    int shared_prefix, groups; /* every prompt starts with one of `groups` prefixes */
    int turns;                 /* >1: multi-turn conversations (chat history grows) */
    const char *dataset;       /* ShareGPT JSON, else synthetic prompts */
    const char *api_key;
    double timeout;                  /* seconds without a byte before a request is a timeout */
    double slo_ttft_ms, slo_tpot_ms; /* 0: no SLO on that */
    bool progress;                   /* the live line on stderr */
    const char *label;               /* e.g. "c=8" in the progress line */
    const kb_vocab *vocab; /* exact prompt lengths in tokens (NULL: about one token a word) */
    int item_base;         /* the run's first workload item: a sweep step starts past the last
                              step's, so no step replays another's prompts */
    int epoch;             /* picks the shared prefixes (--shared-prefix): one set per step */
} kb_config;

/* Sets the defaults (concurrency 1, 100 requests, input 128, output 128, seed 0, timeout
 * 300 s, the completions API). */
void kb_config_defaults(kb_config *c);

/* One request, as measured. Times are milliseconds; -1 when not reached. */
typedef struct kb_record {
    int id;            /* order of issue, per target */
    int target;        /* 0, or 1 for --vs */
    int item;          /* workload item (the same item goes to both targets with --vs) */
    int model;         /* index into kb_config.models */
    double t_start_ms; /* when it was sent, from the start of the run */
    double ttft_ms, e2e_ms, tpot_ms;
    double itl_mean_ms, itl_max_ms; /* inter-token latencies of this request (-1: none) */
    int in_expected, out_expected;  /* what was asked */
    int in_tokens, out_tokens;      /* from usage (-1 if the server sent none) */
    int chunks;                     /* SSE chunks with content */
    bool usage;                     /* the server sent a usage object */
    int http_status;
    kb_status status;
    char error[160];
} kb_record;

/* The results of one run: records plus every inter-token gap (ms) of successful requests. */
typedef struct kb_result {
    kb_record *rec;
    int n_rec;
    double *itl; /* all inter-token latencies, target 0 then target 1 */
    int *itl_target;
    int n_itl, cap_itl;
    double duration_s[2];                    /* first send to last completion, per target */
    bool interrupted;                        /* Ctrl-C ended it early */
    char model_names[2][KB_MAX_MODELS][128]; /* per target: an unnamed model is asked of each */
} kb_result;

void kb_result_free(kb_result *r);

typedef struct kb_pct {
    int n;
    double mean, p50, p90, p99, max;
} kb_pct;

typedef struct kb_summary {
    int n, n_ok, n_good;
    int errors[KB_N_STATUS];
    double duration_s;
    double req_per_s, out_tok_per_s, in_tok_per_s, goodput_rps, good_fraction;
    int64_t in_tokens, out_tokens;
    int usage_missing; /* successful requests without a usage object */
    int64_t chunks;    /* SSE chunks with text of the successful requests */
    kb_pct ttft, tpot, itl, e2e;
} kb_summary;

/* A speculating server's vLLM counters (vllm:spec_decode_num_drafts_total, _num_draft_tokens_
 * total, _num_accepted_tokens_total, summed over their label sets), or their growth over a run. */
typedef struct kb_spec {
    bool present; /* the endpoint's /metrics has them (a server without speculation has not) */
    double drafts, draft_tokens, accepted;
} kb_spec;

/* Reads the counters from a Prometheus text exposition (hostile: any line that does not parse
 * is skipped). Returns true when all three were found. */
bool kb_spec_parse(const char *text, kb_spec *out);

/* Runs the load described by c to the end (requests, duration, or both). Returns 0 with r
 * filled (caller frees with kb_result_free), or a negative code for a setup failure (bad
 * dataset, no event base); request failures are never errors here, they are records. */
int kb_run(const kb_config *c, kb_result *r, kl_err *err);

/* Polls GET /v1/models on every target until it answers 200, for at most `seconds`.
 * Returns 0, or KL_EBUSY "<url>: not ready after S s (...)". */
int kb_wait_ready(const kb_config *c, double seconds, kl_err *err);

/* p in [0, 100]: linear interpolation between closest ranks of sorted[0..n). n == 0 gives 0. */
double kb_percentile(const double *sorted, int n, double p);
/* Sorts v in place and fills out (n, mean, p50, p90, p99, max). */
void kb_pct_of(double *v, int n, kb_pct *out);
/* True if a successful record meets the SLOs (0 means none). A request with one output
 * token has no TPOT and meets any TPOT SLO. */
bool kb_meets_slo(const kb_record *r, double slo_ttft_ms, double slo_tpot_ms);
/* Summarizes r's records for one target. Returns 0 or KL_ENOMEM. */
int kb_summarize(const kb_result *r, int target, double slo_ttft_ms, double slo_tpot_ms,
                 kb_summary *s);
#endif
