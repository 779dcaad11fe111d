/* cli/cmd_model_bench.c: `kiln model bench -m FILE [-p 512] [-n 128] [-t N] [-r REPEAT]
 * [-b 1,4,16,32] [--lora A.gguf ...]`: prompt processing (one sequence of P tokens in one
 * batch) and generation (N single-token steps) throughput like llama-bench, medians of the
 * repeats; with -b, B sequences decoding together, the aggregate generation rate the engine
 * can reach; with --lora, sequence s runs on adapter s % count, each repeat alternating with
 * one on the base model alone (the baseline of the same minute). */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/args.h"
#include "cli/bench_spec.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "model/lora.h"

#define MAX_LORAS 64
typedef struct bench {
    model *m;
    kl_workers *w;
    kv_store *kv;
    int32_t *blocks; /* (B, per) block tables, one row per sequence */
    int per;         /* blocks per sequence */
    float *logits;
    uint64_t rng;
    model_lora *loras[MAX_LORAS];
    int n_loras;
    bool use_lora; /* this run's sequences on the adapters */
} bench;

static int32_t rand_token(bench *b, int nv)
{
    b->rng ^= b->rng << 13, b->rng ^= b->rng >> 7, b->rng ^= b->rng << 17;
    return (int32_t)(b->rng % (uint64_t)nv);
}

/* Seconds of CPU time this process has used (all threads). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs B sequences: a prefill of p tokens each (all at once when B = 1), then n decode steps
 * of B tokens from position tg0 (p: after the prompt, as llama-batched-bench; 0: from an
 * empty context, as llama-bench's tgN). Returns the seconds of each phase. */
static int run_once(bench *b, int B, int p, int n, int tg0, double *t_pp, double *t_tg,
                    double *c_pp, double *c_tg, kl_err *err)
{
    const model_hparams *hp = model_hparams_of(b->m);
    int maxb = model_opts_of(b->m)->max_batch_tokens;
    model_seq seqs[64];
    const model_lora *seq_lora[64];
    for (int s = 0; s < B; s++) {
        seqs[s] = (model_seq){b->blocks + (size_t)s * b->per, b->per};
        seq_lora[s] = b->use_lora ? b->loras[s % b->n_loras] : NULL;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)maxb),
            *pos = malloc(sizeof(int32_t) * (size_t)maxb);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)maxb);
    bool *want = calloc((size_t)maxb, sizeof(bool));
    int rc = 0;
    double t0 = kl_now_s(), c0 = cpu_s();
    for (int s = 0; s < B && !rc; s++)
        for (int at = 0; at < p && !rc; at += maxb) {
            int k = p - at < maxb ? p - at : maxb;
            for (int i = 0; i < k; i++) {
                ids[i] = rand_token(b, hp->n_vocab), pos[i] = at + i, seq[i] = s;
                want[i] = at + i == p - 1;
            }
            model_batch mb = {.n = k,
                              .token = ids,
                              .pos = pos,
                              .seq = seq,
                              .want_logits = want,
                              .n_seqs = B,
                              .seqs = seqs,
                              .lora = seq_lora};
            rc = model_forward(b->m, b->w, b->kv, &mb, b->logits, err);
        }
    double t1 = kl_now_s(), c1 = cpu_s();
    for (int step = 0; step < n && !rc; step++) {
        for (int s = 0; s < B; s++)
            ids[s] = rand_token(b, hp->n_vocab), pos[s] = tg0 + step, seq[s] = s, want[s] = true;
        model_batch mb = {.n = B,
                          .token = ids,
                          .pos = pos,
                          .seq = seq,
                          .want_logits = want,
                          .n_seqs = B,
                          .seqs = seqs,
                          .lora = seq_lora};
        rc = model_forward(b->m, b->w, b->kv, &mb, b->logits, err);
    }
    *t_pp = t1 - t0;
    *c_pp = c1 - c0;
    *t_tg = kl_now_s() - t1;
    *c_tg = cpu_s() - c1;
    free(ids), free(pos), free(seq), free(want);
    return rc;
}

enum { O_SPEC = CLI_LONG + 1, O_DOC, O_DRAFT }; /* CLI_LONG: --lora */

static const cli_opt opts[] = {
    {'m', "model", "FILE", "the GGUF model (required)"},
    {'p', NULL, "P",
     "prompt tokens: one sequence of P tokens in one batch (default 512; with -b, 128 per "
     "sequence)"},
    {'n', NULL, "N", "generated tokens: N single-token steps (default 128)"},
    {'t', "threads", "N", "compute threads (default 2)"},
    {'r', NULL, "R", "repeats; the median is printed (default 3)"},
    {'b', NULL, "LIST",
     "batch sizes, e.g. 1,4,16: B sequences decoding together after a prompt each, the aggregate "
     "rate (default: none, single-sequence pp and tg as llama-bench)"},
    {CLI_LONG, "lora", "FILE",
     "a LoRA adapter (repeatable, up to 64): sequence s runs on adapter s % count, each repeat "
     "alternating with a run on the base model; prints both and their ratio"},
    {O_SPEC, "spec", "KIND[:k=N,...]",
     "generation through the engine with this speculative decoding (as kiln serve --spec) "
     "and without, alternated -r times, B streams for each -b (default 1): tok/s, spread, mean "
     "accepted length; prompts hold a document and then its start again"},
    {O_DOC, "doc", "FILE", "--spec: the document's text (default: a built-in paragraph)"},
    {O_DRAFT, "draft-model", "FILE",
     "--spec draft: the draft model (same vocabulary; default: the model itself)"},
    {0},
};

static const cli_cmd cmd = {
    "model bench", "-m FILE [options]",
    "Prompt processing (ppP) and generation (tgN) throughput of the model, like llama-bench;\n"
    "with -b, the aggregate generation rate of B sequences, like llama-batched-bench.\n",
    opts, NULL};

int cmd_model_bench(int argc, char **argv)
{
    const char *path = NULL, *batches = NULL, *lora_paths[MAX_LORAS], *doc = NULL, *draft = NULL;
    int n_lora = 0;
    engine_spec spec = {0};
    kl_err err;
    int p = 512, n = 128, threads = 2, reps = 3;
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
        case 'p':
            if (!cli_int("-p", val, 1, 65536, &p)) return 1;
            break;
        case 'n':
            if (!cli_int("-n", val, 1, 65536, &n)) return 1;
            break;
        case 't':
            if (!cli_int("-t", val, 1, 256, &threads)) return 1;
            break;
        case 'r':
            if (!cli_int("-r", val, 1, 100, &reps)) return 1;
            break;
        case 'b':
            batches = val;
            break;
        case CLI_LONG:
            if (n_lora == MAX_LORAS) return cli_usage_error(&cmd, "at most %d --lora", MAX_LORAS);
            lora_paths[n_lora++] = val;
            break;
        case O_SPEC:
            if (engine_spec_parse(&spec, val, &err)) return cli_fail(&err);
            if (!spec.kind) return cli_usage_error(&cmd, "--spec: a kind other than off");
            break;
        case O_DOC:
            doc = val;
            break;
        case O_DRAFT:
            draft = val;
            break;
        }
    }
    if (!path) return cli_usage_error(&cmd, "-m FILE is required");
    int bs[16], nbs = 0;
    if (batches) {
        char *dup = strdup(batches), *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t && nbs < 16; t = strtok_r(NULL, ",", &save))
            if (!cli_int("-b", t, 1, 64, &bs[nbs++])) {
                free(dup);
                return 1;
            }
        free(dup);
    }
    if (spec.kind) {
        if (!nbs) bs[nbs++] = 1;
        bench_spec_opts so = {path, doc, draft, spec, bs, nbs, n, threads, reps};
        return bench_spec(&so, &err) ? cli_fail(&err) : 0;
    }
    int max_b = 1;
    for (int i = 0; i < nbs; i++)
        max_b = bs[i] > max_b ? bs[i] : max_b;
    int pp = batches ? 128 : p; /* batched mode: a short prompt per sequence, as batched-bench */
    if (batches && p != 512) pp = p;
    model_opts mo = {.max_batch_tokens = pp < 512 ? (pp > max_b ? pp : max_b) : 512,
                     .max_logits = max_b,
                     .max_ctx = pp + n + 1,
                     .n_workers = threads};
    engine_stack L;
    if (cli_open(&L, path, &mo, false, NULL)) return 1;
    const model_hparams *hp = model_hparams_of(L.model);
    bench b = {.m = L.model, .w = kl_workers_create(threads), .rng = 0x9E3779B97F4A7C15ull};
    int rc = 0;
    b.per = (pp + n + 16) / 16 + 1;
    for (; b.n_loras < n_lora; b.n_loras++)
        if (cli_load_lora(&L, lora_paths[b.n_loras], 1.f, &b.loras[b.n_loras])) {
            rc = 1;
            goto out;
        }
    int kv_dim = hp->n_kv_heads * hp->head_dim;
    kv_store_config kc = {hp->n_layers, kv_dim, 16, KL_F16,
                          (size_t)max_b * (size_t)b.per * 16 * 2 * (size_t)hp->n_layers *
                              (size_t)kv_dim * 2};
    if (kv_store_create(&b.kv, &kc, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    /* The cache's pages faulted in before the timed runs, as llama.cpp clears its cache buffer
     * when it creates it: decoding then writes K and V into mapped memory, as a server does
     * once its first requests have passed, rather than taking first-touch page faults (80% of
     * the page faults and 1-2% of the time of a B=16 tg128 run). */
    kv_store_fault_in(b.kv);
    b.blocks = malloc(sizeof(int32_t) * (size_t)max_b * (size_t)b.per);
    for (int i = 0; i < max_b * b.per; i++)
        b.blocks[i] = i % kv_store_n_blocks(b.kv);
    b.logits = malloc(sizeof(float) * (size_t)max_b * (size_t)hp->n_vocab);
    printf("model: %s (%s, dim %d, %d layers, vocab %d), threads %d\n", path, hp->arch, hp->dim,
           hp->n_layers, hp->n_vocab, threads);
    if (!batches) bs[nbs++] = 1;
    double warm_pp, warm_tg, warm_cp, warm_ct;
    if ((rc = run_once(&b, 1, pp < 32 ? pp : 32, 2, pp < 32 ? pp : 32, &warm_pp, &warm_tg, &warm_cp,
                       &warm_ct, &err)))
        goto fail;
    for (int k = 0; k < nbs; k++) {
        double tpp[100] = {0}, ttg[100] = {0}, cpp[100] = {0}, ctg[100] = {0};
        double base_tg[100] = {0}, base_ct[100] = {0}, ratio[100] = {0}, cratio[100] = {0};
        for (int r = 0; r < reps; r++) {
            b.use_lora = false;
            if (b.n_loras) { /* the baseline, right before */
                double x0, x1;
                if ((rc = run_once(&b, bs[k], pp, n, batches ? pp : 0, &x0, &base_tg[r], &x1,
                                   &base_ct[r], &err)))
                    goto fail;
                b.use_lora = true;
            }
            if ((rc = run_once(&b, bs[k], pp, n, batches ? pp : 0, &tpp[r], &ttg[r], &cpp[r],
                               &ctg[r], &err)))
                goto fail;
            ratio[r] = base_tg[r] / ttg[r];
            cratio[r] = base_ct[r] / ctg[r];
        }
        if (b.n_loras) {
            qsort(base_tg, (size_t)reps, sizeof(double), cmp_d);
            qsort(base_ct, (size_t)reps, sizeof(double), cmp_d);
            qsort(ratio, (size_t)reps, sizeof(double), cmp_d);
            qsort(cratio, (size_t)reps, sizeof(double), cmp_d);
            printf("B=%d base: tg%d %.2f tok/s aggregate (%.2f per CPU-second x %d threads); with "
                   "%d adapters / base: %.3f by wall time (%.3f..%.3f), %.3f by CPU time "
                   "(%.3f..%.3f), medians and ranges of %d alternated repeats\n",
                   bs[k], n, bs[k] * n / base_tg[reps / 2], bs[k] * n / base_ct[reps / 2] * threads,
                   threads, b.n_loras, ratio[reps / 2], ratio[0], ratio[reps - 1], cratio[reps / 2],
                   cratio[0], cratio[reps - 1], reps);
        }
        qsort(tpp, (size_t)reps, sizeof(double), cmp_d);
        qsort(ttg, (size_t)reps, sizeof(double), cmp_d);
        qsort(cpp, (size_t)reps, sizeof(double), cmp_d);
        qsort(ctg, (size_t)reps, sizeof(double), cmp_d);
        double mpp = tpp[reps / 2], mtg = ttg[reps / 2];
        /* on a shared machine: the rate if each thread had had its core for the whole phase */
        double cpu_rate = bs[k] * n / ctg[reps / 2] * threads,
               cpu_pp = bs[k] * pp / cpp[reps / 2] * threads;
        if (!batches) {
            printf("pp%d: %.2f tok/s (%.2f per CPU-second x %d threads)\n", pp, pp / mpp, cpu_pp,
                   threads);
            printf("tg%d: %.2f tok/s (%.2f per CPU-second x %d threads)\n", n, n / mtg, cpu_rate,
                   threads);
        } else {
            printf("B=%d: pp%d %.2f tok/s, tg%d %.2f tok/s aggregate (%.2f per sequence; %.2f per "
                   "CPU-second x %d threads)\n",
                   bs[k], pp, bs[k] * pp / mpp, n, bs[k] * n / mtg, n / mtg, cpu_rate, threads);
        }
        fflush(stdout);
    }
fail:
    if (rc) rc = cli_fail(&err);
out:
    for (int i = 0; i < b.n_loras; i++)
        model_lora_free(b.loras[i]);
    free(b.logits);
    free(b.blocks);
    kv_store_destroy(b.kv);
    kl_workers_destroy(b.w);
    engine_close(&L);
    return rc;
}
