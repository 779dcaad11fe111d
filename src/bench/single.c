/* bench/single.c: `kiln bench` without --sweep: one run, its table and results.json. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/probe.h"
#include "bench/report.h"
#include "bench/sweep.h"
#include "bench/vocab.h"

static double ratio(double b, double a)
{
    return a > 0 ? b / a : 0;
}

/* Prints target 1 / target 0 for the figures that matter and returns them as JSON. */
static json_t *print_ratios(FILE *f, const kb_summary *a, const kb_summary *b)
{
    const struct {
        const char *name;
        double va, vb;
    } rows[] = {
        {"req_per_s", a->req_per_s, b->req_per_s},
        {"output_tok_per_s", a->out_tok_per_s, b->out_tok_per_s},
        {"goodput_req_per_s", a->goodput_rps, b->goodput_rps},
        {"ttft_p50", a->ttft.p50, b->ttft.p50},
        {"ttft_p90", a->ttft.p90, b->ttft.p90},
        {"tpot_p50", a->tpot.p50, b->tpot.p50},
        {"tpot_p90", a->tpot.p90, b->tpot.p90},
        {"e2e_p50", a->e2e.p50, b->e2e.p50},
        {"e2e_p99", a->e2e.p99, b->e2e.p99},
    };
    json_t *j = json_object();
    fprintf(f, "== vs: second / first\n%-20s %12s %12s %8s\n", "", "first", "second", "ratio");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double r = ratio(rows[i].vb, rows[i].va);
        fprintf(f, "%-20s %12.2f %12.2f %8.3f\n", rows[i].name, rows[i].va, rows[i].vb, r);
        json_object_set_new(j, rows[i].name, json_real(r));
    }
    return j;
}

/* With a model mix: one line per model of target t (requests, errors, latencies) and the
 * same as JSON {model: summary} (ITL is not split by model). Returns NULL on OOM. */
static json_t *print_by_model(FILE *f, const kb_result *r, const kb_config *c, int t)
{
    kb_record *sub = malloc(sizeof *sub * (size_t)(r->n_rec + 1));
    json_t *j = json_object();
    if (!sub || !j) {
        free(sub);
        json_decref(j);
        return NULL;
    }
    fprintf(f, "%-24s %8s %6s %9s %9s %9s %9s %9s\n", "by model", "requests", "errors", "req/s",
            "ttft_p50", "ttft_p90", "tpot_p50", "e2e_p50");
    for (int m = 0; m < c->n_models; m++) {
        kb_result part = {.rec = sub, .duration_s = {r->duration_s[0], r->duration_s[1]}};
        for (int i = 0; i < r->n_rec; i++)
            if (r->rec[i].model == m) sub[part.n_rec++] = r->rec[i];
        kb_summary s;
        if (kb_summarize(&part, t, c->slo_ttft_ms, c->slo_tpot_ms, &s)) continue;
        fprintf(f, "%-24.24s %8d %6d %9.2f %9.1f %9.1f %9.2f %9.1f\n", r->model_names[t][m], s.n,
                s.n - s.n_ok, s.req_per_s, s.ttft.p50, s.ttft.p90, s.tpot.p50, s.e2e.p50);
        json_object_set_new(j, r->model_names[t][m], kb_summary_json(&s));
    }
    free(sub);
    return j;
}

/* Each target's speculative decoding counters (from its /metrics; none: not present). */
static void probe_spec(const kb_config *c, kb_spec *out)
{
    struct event_base *base = event_base_new();
    for (int t = 0; t < c->n_targets; t++) {
        memset(&out[t], 0, sizeof out[t]);
        if (base) kb_probe_spec(base, &c->target[t], c->api_key, &out[t]);
    }
    if (base) event_base_free(base);
}

/* What a speculating server did over the run (its counters' growth; they count every
 * client's requests, so the figures are the run's only on a server no one else uses): printed
 * and returned as JSON, or JSON null when the server has no such counters. */
static json_t *print_spec(FILE *f, const kb_spec *a, const kb_spec *b, const kb_summary *s)
{
    if (!a->present || !b->present) return json_null();
    double drafts = b->drafts - a->drafts, tokens = b->draft_tokens - a->draft_tokens,
           accepted = b->accepted - a->accepted;
    double rate = tokens > 0 ? accepted / tokens : 0, mal = drafts > 0 ? 1 + accepted / drafts : 1;
    double per_chunk = s->chunks > 0 ? (double)s->out_tokens / (double)s->chunks : 0;
    fprintf(f,
            "speculation (server counters over the run): drafts %.0f, draft tokens %.0f, "
            "accepted %.0f (%.1f%%), mean accepted length %.2f; %.2f tokens per chunk\n",
            drafts, tokens, accepted, 100 * rate, mal, per_chunk);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "drafts", drafts, "draft_tokens", tokens,
                     "accepted_tokens", accepted, "acceptance_rate", rate, "mean_accepted_length",
                     mal, "tokens_per_chunk", per_chunk);
}

/* Not one request of target t succeeded: an error naming how they failed (err filled). */
int kb_no_success(const kb_config *c, int t, const kb_summary *s, kl_err *err)
{
    char kinds[160] = "";
    size_t n = 0;
    for (int k = 1; k < KB_N_STATUS && n < sizeof kinds; k++)
        if (s->errors[k])
            n += (size_t)snprintf(kinds + n, sizeof kinds - n, "%s%s %d", n ? ", " : "",
                                  kb_status_name((kb_status)k), s->errors[k]);
    return kl_errf(err, KL_EIO, "%s: no request succeeded (%d of %d failed: %s)", c->target[t].url,
                   s->n, s->n, n ? kinds : "none sent");
}

int kb_bench_main(const kb_config *cfg, const char *out, kl_err *err)
{
    kb_config run = *cfg, *c = &run;
    kb_vocab vocab;
    kb_vocab_setup(c, &vocab);
    kb_spec spec0[2], spec[2];
    probe_spec(c, spec0);
    kb_result r;
    int rc = kb_run(c, &r, err);
    if (rc) return rc;
    probe_spec(c, spec);
    kb_summary s[2];
    json_t *root = json_object();
    json_object_set_new(root, "config", kb_config_json(c));
    for (int t = 0; t < c->n_targets && !rc; t++) {
        if ((rc = kb_summarize(&r, t, c->slo_ttft_ms, c->slo_tpot_ms, &s[t]))) {
            kl_errf(err, rc, "out of memory");
            break;
        }
        char title[600];
        snprintf(title, sizeof title, "%s (model %s, %s)", c->target[t].url, r.model_names[t][0],
                 c->concurrency > 0 ? "closed loop" : "Poisson arrivals");
        kb_print_summary(stdout, title, &s[t], c);
        json_t *sj = kb_summary_json(&s[t]);
        json_object_set_new(sj, "spec_decode", print_spec(stdout, &spec0[t], &spec[t], &s[t]));
        json_object_set_new(root, t ? "summary_vs" : "summary", sj);
        if (c->n_models > 1) {
            json_t *bm = print_by_model(stdout, &r, c, t);
            if (bm) json_object_set_new(root, t ? "by_model_vs" : "by_model", bm);
        }
    }
    if (!rc && c->n_targets == 2)
        json_object_set_new(root, "ratios", print_ratios(stdout, &s[0], &s[1]));
    fflush(stdout);
    if (!rc && out) {
        json_object_set_new(root, "records", kb_records_json(&r));
        rc = kb_write_json(out, "results.json", root, err);
        if (!rc) rc = kb_run_report(&r, s, c, out, err);
    }
    json_decref(root);
    kb_result_free(&r);
    for (int t = 0; !rc && t < c->n_targets; t++) /* after the results are written */
        if (!s[t].n_ok) rc = kb_no_success(c, t, &s[t], err);
    return rc;
}
