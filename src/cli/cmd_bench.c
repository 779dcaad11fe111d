/* cli/cmd_bench.c: `kiln bench --url URL ...`: argument parsing, then bench/ does the work. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/report.h"
#include "bench/sweep.h"
#include "cli/args.h"
#include "cli/cli.h"

enum {
    O_URL = CLI_LONG,
    O_VS,
    O_OUT,
    O_API_KEY,
    O_DATASET,
    O_QUIET,
    O_RECOMMEND,
    O_API,
    O_MODEL,
    O_INPUT_LEN,
    O_OUTPUT_LEN,
    O_SWEEP,
    O_CONCURRENCY,
    O_RATE,
    O_REQUESTS,
    O_DURATION,
    O_SEED,
    O_SHARED_PREFIX,
    O_GROUPS,
    O_TURNS,
    O_TIMEOUT,
    O_WAIT_READY,
    O_SLO_TTFT,
    O_SLO_TPOT,
    O_STEP_REQUESTS,
    O_STEP_DURATION,
    O_MAX_STEPS,
    O_TARGET_RATE,
};

static const cli_opt opts[] = {
    {O_URL, "url", "URL", "the endpoint, http://HOST:PORT[/prefix] (required)"},
    {O_CONCURRENCY, "concurrency", "C", "closed loop: C requests in flight (default 1)"},
    {O_RATE, "rate", "R", "open loop: Poisson arrivals, R requests/s (default: closed loop)"},
    {O_REQUESTS, "requests", "N",
     "requests to send (default 100; with --duration alone: no bound)"},
    {O_DURATION, "duration", "S", "stop sending after S seconds (default: no time bound)"},
    {O_API, "api", "API", "completions or chat (default completions)"},
    {O_MODEL, "model", "M",
     "the model, or a weighted mix a=3,b=1 (default: the first of GET /v1/models)"},
    {O_API_KEY, "api-key", "KEY", "sent as 'Authorization: Bearer KEY' (default: none)"},
    {O_TIMEOUT, "timeout", "S",
     "a request without a byte for S seconds is a timeout (default 300)"},
    {O_SEED, "seed", "N",
     "the workload's random seed: the same seed, the same prompts (default 0)"},
    {O_QUIET, "quiet", NULL, "no live progress line on stderr (default: shown on a terminal)"},
    {O_WAIT_READY, "wait-ready", "S",
     "first poll GET /v1/models until it answers 200, for at most S seconds (default: no wait)"},
    {O_INPUT_LEN, "input-len", "DIST",
     "prompt tokens: 128, uniform:64:256 or normal:128:32 (default 128)"},
    {O_OUTPUT_LEN, "output-len", "DIST",
     "max_tokens of each request, as --input-len (default 128)"},
    {O_SHARED_PREFIX, "shared-prefix", "T",
     "start each prompt with one of --groups shared T-token prefixes (default 0: none)"},
    {O_GROUPS, "groups", "G", "the number of shared prefixes (default 1)"},
    {O_TURNS, "turns", "T", "multi-turn conversations of T chat turns (default 1)"},
    {O_DATASET, "dataset", "FILE",
     "ShareGPT JSON: first human turn as the prompt, the reply's length as max_tokens (default: "
     "synthetic prompts)"},
    {O_SLO_TTFT, "slo-ttft", "MS", "time-to-first-token SLO for goodput (default 0: none)"},
    {O_SLO_TPOT, "slo-tpot", "MS", "time-per-output-token SLO for goodput (default 0: none)"},
    {O_OUT, "out", "DIR",
     "write results.json, the charts and report.html there (default: the table on stdout only)"},
    {O_SWEEP, "sweep", "[LIST]",
     "rising load until the SLO fails or throughput stops rising: LIST (e.g. 1,2,4,8), else "
     "doubling from --concurrency or --rate"},
    {O_STEP_REQUESTS, "step-requests", "N",
     "sweep: requests per step (default --requests if given, else max(20, 4 x concurrency) or 5 s "
     "of arrivals)"},
    {O_STEP_DURATION, "step-duration", "S",
     "sweep: seconds per step (default --duration, if given)"},
    {O_MAX_STEPS, "max-steps", "K", "sweep: steps at most when doubling (default 10)"},
    {O_RECOMMEND, "recommend", NULL,
     "sweep: write the serving advice (recommend.md, hpa.yaml, gateway.json; needs --out)"},
    {O_TARGET_RATE, "target-rate", "R", "--recommend: requests/s the deployment must serve"},
    {O_VS, "vs", "URL",
     "compare with a second endpoint: the same prompts, requests alternating between the two"},
    {0},
};

static const cli_cmd cmd = {
    "bench", "--url http://HOST:PORT [options]",
    "A load generator for any OpenAI-compatible endpoint (kiln serve, kiln gateway, vLLM,\n"
    "llama-server): TTFT, TPOT, inter-token and end-to-end latencies, throughput and goodput.\n",
    opts,
    "Exit status 0, or 1 when no request succeeded (the results are still written). See README\n"
    "'kiln bench'.\n"};

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* "M" or "a=3,b=1" into c->models. Returns 0 or -1. */
static int parse_models(kb_config *c, const char *s)
{
    c->n_models = 0;
    while (*s) {
        if (c->n_models == KB_MAX_MODELS) return -1;
        kb_model_weight *m = &c->models[c->n_models++];
        const char *comma = strchr(s, ','), *end = comma ? comma : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        size_t nl = (size_t)((eq ? eq : end) - s);
        if (!nl || nl >= sizeof m->name) return -1;
        memcpy(m->name, s, nl);
        m->name[nl] = 0;
        m->weight = 1;
        if (eq) {
            char w[64];
            size_t wl = (size_t)(end - eq - 1);
            if (wl >= sizeof w) return -1;
            memcpy(w, eq + 1, wl);
            w[wl] = 0;
            if (num(w, 1e-9, 1e9, &m->weight)) return -1;
        }
        s = comma ? comma + 1 : end;
    }
    return c->n_models ? 0 : -1;
}

int cmd_bench(int argc, char **argv)
{
    kb_config c;
    kb_config_defaults(&c);
    kb_sweep_opts sw;
    kb_sweep_opts_defaults(&sw);
    const char *url = NULL, *vs = NULL, *out = NULL;
    double wait_ready = 0;
    bool quiet = false, requests_given = false, sweep = false, recommend = false;
    kl_err err = {0};
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *v;
    double d;
    for (int k; (k = cli_args_next(&a, &v)) != CLI_END;) {
        /* a number option: its value must be in lo..hi */
#define NUM(lo, hi)                                                                                \
    do {                                                                                           \
        if (num(v, lo, hi, &d)) {                                                                  \
            fprintf(stderr, "kiln: %s: expected a number in %g..%g, got '%s'\n", a.opt,            \
                    (double)(lo), (double)(hi), v);                                                \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&cmd, "unexpected argument '%s'", v);
        case O_URL:
            url = v;
            break;
        case O_VS:
            vs = v;
            break;
        case O_OUT:
            out = v;
            break;
        case O_API_KEY:
            c.api_key = v;
            break;
        case O_DATASET:
            c.dataset = v;
            break;
        case O_QUIET:
            quiet = true;
            break;
        case O_RECOMMEND:
            recommend = true;
            break;
        case O_API:
            if (strcmp(v, "chat") && strcmp(v, "completions"))
                return cli_usage_error(&cmd, "--api: expected completions or chat, got '%s'", v);
            c.chat = !strcmp(v, "chat");
            break;
        case O_MODEL:
            if (parse_models(&c, v))
                return cli_usage_error(&cmd, "--model: expected NAME or NAME=W,NAME=W..., got '%s'",
                                       v);
            break;
        case O_INPUT_LEN:
        case O_OUTPUT_LEN:
            if (kb_dist_parse(k == O_INPUT_LEN ? &c.input_len : &c.output_len, v, &err))
                return cli_fail(&err);
            if (k == O_OUTPUT_LEN) c.output_len_given = true;
            break;
        case O_SWEEP:
            sweep = true;
            if (v && kb_sweep_parse_list(&sw, v, &err)) return cli_fail(&err);
            break;
        case O_CONCURRENCY:
            NUM(1, 100000);
            c.concurrency = (int)d, c.rate = 0;
            break;
        case O_RATE:
            NUM(1e-6, 1e6);
            c.rate = d, c.concurrency = 0;
            break;
        case O_REQUESTS:
            NUM(1, 1e8);
            c.requests = (int)d, requests_given = true;
            break;
        case O_DURATION:
            NUM(0.001, 1e7);
            c.duration = d;
            break;
        case O_SEED:
            NUM(0, 9e15);
            c.seed = (uint64_t)d;
            break;
        case O_SHARED_PREFIX:
            NUM(0, 1e6);
            c.shared_prefix = (int)d;
            break;
        case O_GROUPS:
            NUM(1, 1e6);
            c.groups = (int)d;
            break;
        case O_TURNS:
            NUM(1, 1000);
            c.turns = (int)d;
            break;
        case O_TIMEOUT:
            NUM(0.001, 1e6);
            c.timeout = d;
            break;
        case O_WAIT_READY:
            NUM(0, 1e6);
            wait_ready = d;
            break;
        case O_SLO_TTFT:
            NUM(0, 1e9);
            c.slo_ttft_ms = d;
            break;
        case O_SLO_TPOT:
            NUM(0, 1e9);
            c.slo_tpot_ms = d;
            break;
        case O_STEP_REQUESTS:
            NUM(1, 1e8);
            sw.step_requests = (int)d;
            break;
        case O_STEP_DURATION:
            NUM(0.001, 1e7);
            sw.step_duration = d;
            break;
        case O_MAX_STEPS:
            NUM(1, 64);
            sw.max_steps = (int)d;
            break;
        case O_TARGET_RATE:
            NUM(1e-9, 1e9);
            sw.target_rate = d;
            break;
        }
#undef NUM
    }
    if (!url) return cli_usage_error(&cmd, "--url URL is required");
    if (kb_target_parse(&c.target[0], url, &err)) return cli_fail(&err);
    c.n_targets = 1;
    if (vs) {
        if (kb_target_parse(&c.target[1], vs, &err)) return cli_fail(&err);
        c.n_targets = 2;
    }
    if (c.duration > 0 && !requests_given) c.requests = 0; /* --duration alone: time-bound */
    c.progress = !quiet && isatty(2);
    if (recommend && (!sweep || !out)) {
        fprintf(stderr, "kiln: --recommend needs --sweep and --out DIR\n");
        return 2;
    }
    if (out && kb_mkdir_p(out, &err)) return cli_fail(&err);
    if (wait_ready > 0 && kb_wait_ready(&c, wait_ready, &err)) return cli_fail(&err);
    if (sweep) {
        sw.recommend = recommend;
        /* --requests / --duration bound each step unless the step options say otherwise */
        if (!sw.step_requests && requests_given) sw.step_requests = c.requests;
        if (!(sw.step_duration > 0) && c.duration > 0) sw.step_duration = c.duration;
        return kb_sweep_main(&c, &sw, out, &err) ? cli_fail(&err) : 0;
    }
    return kb_bench_main(&c, out, &err) ? cli_fail(&err) : 0;
}
