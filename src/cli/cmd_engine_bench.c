/* cli/cmd_engine_bench.c: `kiln model bench-engine -m FILE --prefix | --chunked | --grammar`:
 * the engine's scheduling benchmarks.
 *   --prefix:  32 requests sharing a 1,000-token system prompt, run with the prefix cache on
 *              and off: tokens computed, time, and whether the outputs are identical.
 *   --chunked: 8 sequences decoding while one 4,000-token prompt is prefilled in chunks:
 *              the largest gap between two tokens of the decoders, against the step budget.
 *   --grammar: constrained decoding's masking cost against the decode step (see below). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "engine/engine.h"
#include "grammar/grammar.h"

#define MAXOUT 64

typedef struct req_out {
    int32_t ids[MAXOUT];
    int n;
    double t_last, max_gap;
    bool done;
} req_out;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ctx, const engine_event *ev)
{
    req_out *r = ctx;
    double now = kl_now_s();
    pthread_mutex_lock(&mu);
    if (ev->token >= 0) {
        if (r->n && now - r->t_last > r->max_gap) r->max_gap = now - r->t_last;
        r->t_last = now;
        if (r->n < MAXOUT) r->ids[r->n] = ev->token;
        r->n++;
    }
    if (ev->last) r->done = true;
    pthread_mutex_unlock(&mu);
}

static engine *make_engine(engine_stack *L, int threads, bool prefix, int budget, kl_err *err)
{
    engine_config c;
    engine_config_defaults(&c);
    c.model = L->model;
    c.tok = L->tok;
    c.n_threads = threads;
    c.prefix_cache = prefix;
    c.max_batch_tokens = budget;
    c.max_seqs = 32;
    c.kv_mem_bytes = 0;
    engine *e = NULL;
    if (engine_create(&e, &c, err)) return NULL;
    return e;
}

static void fill(int32_t *p, int n, int nv, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = 3 + (int32_t)((seed >> 33) % (uint64_t)(nv - 3));
    }
}

static int submit(engine *e, const int32_t *p, int n, int max_tokens, req_out *out, kl_err *err)
{
    engine_request r = {.prompt = p, .n_prompt = n, .n = 1, .on_event = on_event, .ctx = out};
    engine_sampling_defaults(&r.sp);
    r.sp.temperature = 0;
    r.sp.max_tokens = max_tokens;
    r.sp.ignore_eos = true;
    uint64_t id;
    return engine_submit(e, &r, &id, err);
}

static int bench_prefix(engine_stack *L, int threads)
{
    int nv = model_hparams_of(L->model)->n_vocab, sys = 1000, nreq = 32, tail = 24, gen = 16;
    int32_t *p = malloc(sizeof(int32_t) * (size_t)(sys + tail));
    req_out *out[2];
    engine_stats st[2];
    double secs[2];
    kl_err err;
    for (int on = 1; on >= 0; on--) {
        engine *e = make_engine(L, threads, on, 512, &err);
        if (!e) return cli_fail(&err);
        out[on] = calloc((size_t)nreq, sizeof(req_out));
        double t0 = kl_now_s();
        for (int k = 0; k < nreq; k++) {
            fill(p, sys, nv, 42);                        /* the shared system prompt */
            fill(p + sys, tail, nv, 1000 + (uint64_t)k); /* each request's own question */
            if (submit(e, p, sys + tail, gen, &out[on][k], &err)) return cli_fail(&err);
        }
        engine_wait_idle(e, 600000);
        secs[on] = kl_now_s() - t0;
        engine_stats_get(e, &st[on]);
        engine_destroy(e);
    }
    bool same = true;
    for (int k = 0; k < nreq; k++)
        same &= out[0][k].n == out[1][k].n &&
                !memcmp(out[0][k].ids, out[1][k].ids,
                        sizeof(int32_t) * (size_t)(out[0][k].n < MAXOUT ? out[0][k].n : MAXOUT));
    printf("prefix cache: %d requests, %d-token shared prompt + %d own, %d generated each\n", nreq,
           sys, tail, gen);
    printf("  cache off: %llu tokens computed, %.2f s\n", (unsigned long long)st[0].computed_tokens,
           secs[0]);
    printf("  cache on:  %llu tokens computed, %.2f s (hits %llu of %llu prompt tokens)\n",
           (unsigned long long)st[1].computed_tokens, secs[1],
           (unsigned long long)st[1].prefix_hits, (unsigned long long)st[1].prefix_queries);
    uint64_t pre0 = st[0].computed_tokens - (uint64_t)(nreq * (gen - 1));
    uint64_t pre1 = st[1].computed_tokens - (uint64_t)(nreq * (gen - 1));
    printf("  prefill work: %.1f%% less; outputs identical: %s\n",
           100.0 * (1.0 - (double)pre1 / (double)pre0), same ? "yes" : "NO");
    free(out[0]), free(out[1]), free(p);
    return same ? 0 : 1;
}

static int bench_chunked(engine_stack *L, int threads, int budget)
{
    int nv = model_hparams_of(L->model)->n_vocab, ctx = model_opts_of(L->model)->max_ctx;
    int big = 4000 < ctx - 8 ? 4000 : ctx - 8;
    kl_err err;
    engine *e = make_engine(L, threads, false, budget, &err);
    if (!e) return cli_fail(&err);
    req_out dec[8] = {0}, longp = {0};
    int32_t p[64];
    for (int k = 0; k < 8; k++) {
        fill(p, 16, nv, 7 + (uint64_t)k);
        if (submit(e, p, 16, 1000000, &dec[k], &err)) return cli_fail(&err);
    }
    /* let them reach steady decoding, then measure gaps only while the long prompt runs */
    double t0 = kl_now_s();
    while (kl_now_s() - t0 < 1.0) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&mu);
    for (int k = 0; k < 8; k++)
        dec[k].max_gap = 0;
    int before = dec[0].n;
    pthread_mutex_unlock(&mu);
    int32_t *lp = malloc(sizeof(int32_t) * (size_t)big);
    fill(lp, big, nv, 99);
    double t1 = kl_now_s();
    if (submit(e, lp, big, 1, &longp, &err)) return cli_fail(&err);
    for (;;) {
        pthread_mutex_lock(&mu);
        bool d = longp.done;
        pthread_mutex_unlock(&mu);
        if (d) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double prefill = kl_now_s() - t1, gap = 0;
    pthread_mutex_lock(&mu);
    for (int k = 0; k < 8; k++)
        gap = dec[k].max_gap > gap ? dec[k].max_gap : gap;
    int during = dec[0].n - before;
    pthread_mutex_unlock(&mu);
    engine_stats st;
    engine_stats_get(e, &st);
    engine_destroy(e);
    printf("chunked prefill: %d-token prompt prefilled in %.2f s under a %d-token step budget\n",
           big, prefill, budget);
    printf("  8 decoders: %d tokens each during the prefill, max inter-token gap %.1f ms\n", during,
           gap * 1e3);
    free(lp);
    return 0;
}

/* --grammar: a nested JSON Schema (an array of at least 40 objects) against the same
 * requests unconstrained, 1 and 16 streams, sampled (temperature 1) so the output walks the
 * whole language. The engine counts its time masking and advancing grammars
 * (engine_stats.grammar_ns); the first constrained round builds the token tables (cold) and
 * is reported apart. Then the compile time of 200 distinct schemas of that shape (p50, p99). */
static const char *bench_schema =
    "{\"type\":\"array\",\"minItems\":40,\"items\":{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\",\"maxLength\":16},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},\"maxItems\":3},"
    "\"kind\":{\"enum\":[\"a\",\"b\",\"c\"]},\"pos\":{\"type\":\"object\",\"properties\":{"
    "\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]}},"
    "\"required\":[\"id\",\"name\",\"pos\"],\"additionalProperties\":false}}";

typedef struct gb_run {
    double secs, step_s;
    uint64_t tokens, grammar_ns, grammar_tokens;
} gb_run;

/* streams requests of gen tokens each, constrained by g or not; engine stats deltas. */
static int gb_round(engine *e, int nv, int streams, int gen, gram *g, uint64_t seed, gb_run *out,
                    kl_err *err)
{
    req_out *o = calloc((size_t)streams, sizeof *o);
    int32_t p[32];
    engine_stats a, b;
    engine_stats_get(e, &a);
    double t0 = kl_now_s();
    for (int k = 0; k < streams; k++) {
        fill(p, 32, nv, seed + (uint64_t)k);
        engine_request r = {
            .prompt = p, .n_prompt = 32, .n = 1, .grammar = g, .on_event = on_event, .ctx = &o[k]};
        engine_sampling_defaults(&r.sp);
        r.sp.temperature = 1;
        r.sp.seed = seed + (uint64_t)k;
        r.sp.max_tokens = gen;
        r.sp.ignore_eos = true;
        uint64_t id;
        if (engine_submit(e, &r, &id, err)) return free(o), -1;
    }
    engine_wait_idle(e, 600000);
    out->secs = kl_now_s() - t0;
    engine_stats_get(e, &b);
    out->tokens = b.generation_tokens - a.generation_tokens;
    out->step_s = b.step_s_sum - a.step_s_sum;
    out->grammar_ns = b.grammar_ns - a.grammar_ns;
    out->grammar_tokens = b.grammar_tokens - a.grammar_tokens;
    free(o);
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* Compiles src once (cold, default limits): wall and CPU milliseconds; false if refused. */
static bool compile_once(const char *src, size_t len, double *wall, double *cpu, kl_err *err)
{
    gram *g;
    double t0 = kl_now_s(), c0 = thread_cpu_ms();
    if (gram_compile_schema(&g, src, len, NULL, err)) return false;
    *cpu = thread_cpu_ms() - c0;
    *wall = 1e3 * (kl_now_s() - t0);
    gram_unref(g);
    return true;
}

static void print_times(const char *what, double *wall, double *cpu, int n, int refused)
{
    qsort(wall, (size_t)n, sizeof *wall, cmp_double);
    qsort(cpu, (size_t)n, sizeof *cpu, cmp_double);
    printf("schema compile (%s): %d compiled, %d refused; wall p50 %.3f ms, p99 %.3f ms, max "
           "%.3f ms; CPU p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
           what, n, refused, n ? wall[n / 2] : 0, n ? wall[n * 99 / 100] : 0, n ? wall[n - 1] : 0,
           n ? cpu[n / 2] : 0, n ? cpu[n * 99 / 100] : 0, n ? cpu[n - 1] : 0);
}

/* 200 distinct schemas of bench_schema's shape (a property added, minItems changed). */
static int compile_times_shape(void)
{
    enum { NC = 200 };
    double wall[NC], cpu[NC];
    kl_err err;
    char *src = malloc(strlen(bench_schema) + 64);
    if (!src) return 1;
    for (int i = 0; i < NC; i++) {
        sprintf(src,
                "{\"type\":\"array\",\"minItems\":%d,\"items\":{\"type\":\"object\","
                "\"properties\":{\"p%d\":{\"type\":\"integer\"},%s",
                i % 50, i, strstr(bench_schema, "\"id\""));
        if (!compile_once(src, strlen(src), &wall[i], &cpu[i], &err)) {
            free(src);
            return cli_fail(&err);
        }
    }
    free(src);
    print_times("200 distinct schemas of that shape", wall, cpu, NC, 0);
    return 0;
}

/* Every line of path a schema (tests/e2e/schemagen.mjs writes such files). */
static int compile_times_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln: %s: cannot open\n", path);
        return 1;
    }
    int cap = 1024, n = 0, refused = 0;
    double *wall = malloc(sizeof *wall * (size_t)cap), *cpu = malloc(sizeof *cpu * (size_t)cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while (wall && cpu && (len = getline(&line, &lcap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len) continue;
        if (n == cap) {
            cap *= 2;
            double *nw = realloc(wall, sizeof *wall * (size_t)cap);
            double *nc = nw ? realloc(cpu, sizeof *cpu * (size_t)cap) : NULL;
            if (nw) wall = nw;
            if (nc) cpu = nc;
            if (!nw || !nc) break;
        }
        kl_err err;
        if (compile_once(line, (size_t)len, &wall[n], &cpu[n], &err))
            n++;
        else
            refused++;
    }
    free(line);
    fclose(f);
    if (wall && cpu) print_times(path, wall, cpu, n, refused);
    free(wall);
    free(cpu);
    return 0;
}

static int bench_grammar(engine_stack *L, int threads, const char *schemas)
{
    int nv = model_hparams_of(L->model)->n_vocab, gen = 64;
    kl_err err;
    gram *g;
    if (gram_compile_schema(&g, bench_schema, strlen(bench_schema), NULL, &err))
        return cli_fail(&err);
    printf("grammar masking: nested schema (array of >= 40 objects), %d-token vocab, %d tokens "
           "per request, temperature 1\n",
           nv, gen);
    const int sizes[2] = {1, 16};
    for (int si = 0; si < 2; si++) {
        int streams = sizes[si];
        engine *e = make_engine(L, threads, false, 512, &err);
        if (!e) return cli_fail(&err);
        gb_run cold, plain[3], con[3];
        if (gb_round(e, nv, streams, gen, g, 1, &cold, &err)) return cli_fail(&err);
        for (int rep = 0; rep < 3; rep++) { /* alternate, so both see the same machine */
            if (gb_round(e, nv, streams, gen, NULL, 100 + (uint64_t)rep * 100, &plain[rep], &err) ||
                gb_round(e, nv, streams, gen, g, 100 + (uint64_t)rep * 100, &con[rep], &err))
                return cli_fail(&err);
        }
        engine_destroy(e);
        printf("  %2d stream%s: cold (tables built): %.1f us/token masking\n", streams,
               streams > 1 ? "s" : " ",
               1e-3 * (double)cold.grammar_ns /
                   (double)(cold.grammar_tokens ? cold.grammar_tokens : 1));
        for (int rep = 0; rep < 3; rep++) {
            double us = 1e-3 * (double)con[rep].grammar_ns /
                        (double)(con[rep].grammar_tokens ? con[rep].grammar_tokens : 1);
            double step_ms_plain =
                1e3 * plain[rep].step_s / (double)(plain[rep].tokens / (uint64_t)streams);
            double step_ms_con =
                1e3 * con[rep].step_s / (double)(con[rep].tokens / (uint64_t)streams);
            printf("    round %d: masking %.1f us/token = %.2f%% of the constrained decode steps; "
                   "decode step %.2f ms plain, %.2f ms constrained (%+.1f%%); tok/s %.1f plain, "
                   "%.1f constrained\n",
                   rep, us, 100.0 * 1e-9 * (double)con[rep].grammar_ns / con[rep].step_s,
                   step_ms_plain, step_ms_con, 100.0 * (step_ms_con / step_ms_plain - 1.0),
                   (double)plain[rep].tokens / plain[rep].secs,
                   (double)con[rep].tokens / con[rep].secs);
        }
    }
    gram_unref(g);
    /* compile time of distinct schemas: of that shape, or the file's */
    int rc = schemas ? compile_times_file(schemas) : compile_times_shape();
    return rc;
}

enum { O_PREFIX = CLI_LONG, O_CHUNKED, O_BUDGET, O_GRAMMAR, O_SCHEMAS };

static const cli_opt opts[] = {
    {'m', "model", "FILE", "the GGUF model (required)"},
    {O_PREFIX, "prefix", NULL,
     "32 requests sharing a 1,000-token system prompt, prefix cache on and off"},
    {O_CHUNKED, "chunked", NULL,
     "8 sequences decoding while a 4,000-token prompt is prefilled in chunks: their largest "
     "gap between tokens"},
    {O_GRAMMAR, "grammar", NULL,
     "1 and 16 sampled streams constrained by a nested JSON Schema and unconstrained: the "
     "masking time per token against the decode step; schema compile p50 / p99"},
    {O_SCHEMAS, "schemas", "FILE",
     "--grammar: the compile times of these schemas instead, one per line (e.g. from node "
     "tests/e2e/schemagen.mjs 200)"},
    {O_BUDGET, "budget", "N", "--chunked: tokens per engine step (default 256)"},
    {'t', "threads", "N", "compute threads (default 2)"},
    {0},
};

static const cli_cmd cmd = {
    "model bench-engine", "-m FILE --prefix | --chunked | --grammar [options]",
    "The engine's scheduling benchmarks (one of --prefix, --chunked, --grammar).\n", opts, NULL};

int cmd_engine_bench(int argc, char **argv)
{
    const char *path = NULL, *schemas = NULL;
    int threads = 2, mode = 0, budget = 256;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&cmd, "unexpected argument '%s'", val);
        case 'm':
            path = val;
            break;
        case 't':
            if (!cli_int("-t", val, 1, 256, &threads)) return 1;
            break;
        case O_PREFIX:
            mode = 'P';
            break;
        case O_CHUNKED:
            mode = 'C';
            break;
        case O_GRAMMAR:
            mode = 'G';
            break;
        case O_SCHEMAS:
            schemas = val;
            break;
        case O_BUDGET:
            if (!cli_int("--budget", val, 16, 8192, &budget)) return 1;
            break;
        }
    }
    if (!path || !mode)
        return cli_usage_error(&cmd, "-m FILE and --prefix, --chunked or --grammar are required");
    model_opts mo = {
        .max_batch_tokens = 512, .max_logits = 32, .max_ctx = 4096, .n_workers = threads};
    engine_stack L;
    if (cli_open(&L, path, &mo, true, NULL)) return 1;
    int rc = mode == 'P'   ? bench_prefix(&L, threads)
             : mode == 'G' ? bench_grammar(&L, threads, schemas)
                           : bench_chunked(&L, threads, budget);
    engine_close(&L);
    return rc;
}
