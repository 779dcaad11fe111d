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
#include "cli/cli.h"

static int usage(void)
{
    fprintf(
        stderr,
        "usage: kiln bench --url http://HOST:PORT [options]\n"
        "  load:     --concurrency C | --rate R (Poisson, requests/s)   [--requests N] [--duration "
        "S]\n"
        "            [--api completions|chat] [--model M | --model a=3,b=1] [--api-key K]\n"
        "            [--timeout S] [--seed N] [--quiet] [--wait-ready S (poll /v1/models first)]\n"
        "  workload: [--input-len DIST] [--output-len DIST]  DIST = 128 | uniform:64:256 | "
        "normal:128:32\n"
        "            [--shared-prefix TOKENS --groups G] [--turns T] [--dataset sharegpt.json]\n"
        "  SLO:      [--slo-ttft MS] [--slo-tpot MS]\n"
        "  output:   [--out DIR]  (results.json; with --sweep also report.html and SVG plots)\n"
        "  sweep:    --sweep [LIST] [--step-requests N] [--step-duration S] [--max-steps K]\n"
        "            [--recommend [--target-rate R]]\n"
        "  compare:  --vs URL2   (same seed and prompts, requests alternate between the two)\n"
        "See README 'kiln bench'.\n");
    return 2;
}

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
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
/* takes the option's value, or fails with the usage */
#define NEXT()                                                                                     \
    do {                                                                                           \
        if (!v) return usage();                                                                    \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--url")) {
            NEXT();
            url = v;
        } else if (!strcmp(a, "--vs")) {
            NEXT();
            vs = v;
        } else if (!strcmp(a, "--out")) {
            NEXT();
            out = v;
        } else if (!strcmp(a, "--api-key")) {
            NEXT();
            c.api_key = v;
        } else if (!strcmp(a, "--dataset")) {
            NEXT();
            c.dataset = v;
        } else if (!strcmp(a, "--quiet"))
            quiet = true;
        else if (!strcmp(a, "--recommend"))
            recommend = true;
        else if (!strcmp(a, "--api")) {
            NEXT();
            if (!strcmp(v, "chat"))
                c.chat = true;
            else if (!strcmp(v, "completions"))
                c.chat = false;
            else
                return usage();
        } else if (!strcmp(a, "--model")) {
            NEXT();
            if (parse_models(&c, v)) return usage();
        } else if (!strcmp(a, "--input-len") || !strcmp(a, "--output-len")) {
            NEXT();
            bool in = a[2] == 'i';
            if (kb_dist_parse(in ? &c.input_len : &c.output_len, v, &err)) return cli_fail(&err);
            if (!in) c.output_len_given = true;
        } else if (!strcmp(a, "--sweep")) {
            sweep = true;
            if (v && v[0] >= '0' && v[0] <= '9') {
                i++;
                if (kb_sweep_parse_list(&sw, v, &err)) return cli_fail(&err);
            }
        } else {
            NEXT();
            if (!strcmp(a, "--concurrency") && !num(v, 1, 100000, &d))
                c.concurrency = (int)d, c.rate = 0;
            else if (!strcmp(a, "--rate") && !num(v, 1e-6, 1e6, &d))
                c.rate = d, c.concurrency = 0;
            else if (!strcmp(a, "--requests") && !num(v, 1, 1e8, &d))
                c.requests = (int)d, requests_given = true;
            else if (!strcmp(a, "--duration") && !num(v, 0.001, 1e7, &d))
                c.duration = d;
            else if (!strcmp(a, "--seed") && !num(v, 0, 9e15, &d))
                c.seed = (uint64_t)d;
            else if (!strcmp(a, "--shared-prefix") && !num(v, 0, 1e6, &d))
                c.shared_prefix = (int)d;
            else if (!strcmp(a, "--groups") && !num(v, 1, 1e6, &d))
                c.groups = (int)d;
            else if (!strcmp(a, "--turns") && !num(v, 1, 1000, &d))
                c.turns = (int)d;
            else if (!strcmp(a, "--timeout") && !num(v, 0.001, 1e6, &d))
                c.timeout = d;
            else if (!strcmp(a, "--wait-ready") && !num(v, 0, 1e6, &d))
                wait_ready = d;
            else if (!strcmp(a, "--slo-ttft") && !num(v, 0, 1e9, &d))
                c.slo_ttft_ms = d;
            else if (!strcmp(a, "--slo-tpot") && !num(v, 0, 1e9, &d))
                c.slo_tpot_ms = d;
            else if (!strcmp(a, "--step-requests") && !num(v, 1, 1e8, &d))
                sw.step_requests = (int)d;
            else if (!strcmp(a, "--step-duration") && !num(v, 0.001, 1e7, &d))
                sw.step_duration = d;
            else if (!strcmp(a, "--max-steps") && !num(v, 1, 64, &d))
                sw.max_steps = (int)d;
            else if (!strcmp(a, "--target-rate") && !num(v, 1e-9, 1e9, &d))
                sw.target_rate = d;
            else
                return usage();
        }
#undef NEXT
    }
    if (!url) return usage();
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
