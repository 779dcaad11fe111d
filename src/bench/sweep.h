/* bench/sweep.h: the two entry points of `kiln bench`, one run or a sweep, plus the sweep's
 * steps for the plots and the advice. */
#ifndef KILN_BENCH_SWEEP_H
#define KILN_BENCH_SWEEP_H
#include "bench/bench.h"

#define KB_MAX_STEPS 64

typedef struct kb_sweep_opts {
    double loads[KB_MAX_STEPS]; /* an explicit list (concurrencies or rates) */
    int n_loads;
    int step_requests; /* per step and target; 0: auto (max(20, 4 x concurrency) or 5 s of arrivals)
                        */
    double step_duration; /* seconds per step; 0: none */
    int max_steps;        /* when doubling: default 10 */
    double attainment;    /* fraction of requests that must meet the SLO: default 0.9 */
    double min_gain;      /* throughput gain below which the sweep stops: default 0.05 */
    bool recommend;
    double target_rate; /* requests/s the deployment must serve (--recommend) */
} kb_sweep_opts;

typedef struct kb_step {
    double load; /* concurrency or rate */
    kb_summary s[2];
    bool meets[2]; /* meets the SLO (good fraction >= attainment) */
} kb_step;

typedef struct kb_sweep {
    bool by_rate;
    kb_step steps[KB_MAX_STEPS];
    int n_steps;
    int saturation[2]; /* step index, -1 if no step met the SLO */
    char stop_reason[128];
    char model[128]; /* the model of target 0 (as resolved by the first step) */
} kb_sweep;

void kb_sweep_opts_defaults(kb_sweep_opts *o);
/* "1,2,4,8" into o->loads. Returns 0 or KL_EINVAL. */
int kb_sweep_parse_list(kb_sweep_opts *o, const char *s, kl_err *err);

/* The throughput a sweep compares: output tokens/s, or requests/s if no tokens came. */
double kb_step_throughput(const kb_summary *s);
/* The saturation step of target t, among the steps that meet the SLO and reach 95% of the
 * best throughput of those: with an SLO the highest load, without one the lowest (the knee).
 * A load past the throughput peak is never the answer. -1 if no step qualifies. */
int kb_sweep_saturation(const kb_sweep *w, int t, bool has_slo);

/* KL_EIO "<url>: no request succeeded (N of N failed: <kinds>)" for target t of c. */
int kb_no_success(const kb_config *c, int t, const kb_summary *s, kl_err *err);
/* One run: runs c, prints the table (and ratios with --vs) on stdout, writes
 * out/results.json when out is set. Returns 0 or a negative code with err filled. */
int kb_bench_main(const kb_config *c, const char *out, kl_err *err);
/* A sweep (see README): runs the steps, prints the step table and the saturation point,
 * writes results.json, the SVG plots, report.html and, with o->recommend, the advice. */
int kb_sweep_main(const kb_config *c, const kb_sweep_opts *o, const char *out, kl_err *err);

/* Writes out/{latency,ttft,tpot,throughput}.svg and out/report.html (the step table, the
 * saturation point, the charts inline, and advice_md verbatim when not NULL). Returns 0, or
 * KL_EIO / KL_ENOMEM with err filled. */
int kb_sweep_report(const kb_sweep *w, const kb_config *c, const char *advice_md, const char *out,
                    kl_err *err);
/* A single run's charts: out/{ttft,tpot,e2e}_cdf.svg (the share of requests at or under each
 * latency, per endpoint) and out/report.html with the summary tables. Returns 0, KL_EIO or
 * KL_ENOMEM. */
int kb_run_report(const kb_result *r, const kb_summary *s, const kb_config *c, const char *out,
                  kl_err *err);
/* With --recommend: writes out/recommend.md, out/hpa.yaml and out/gateway.json from the
 * saturation point of target 0, and returns the markdown in *md (caller frees; NULL on
 * failure). Returns 0, KL_ENOTFOUND when no step met the SLO (nothing to recommend), or
 * KL_EIO / KL_ENOMEM. */
int kb_recommend(const kb_sweep *w, const kb_config *c, const kb_sweep_opts *o, const char *model,
                 const char *out, char **md, kl_err *err);
#endif
