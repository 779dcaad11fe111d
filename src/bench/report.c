/* bench/report.c: JSON and table output of a run (see report.h). */
#include "bench/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/vocab.h"

json_t *kb_config_json(const kb_config *c)
{
    char in[64], out[64];
    kb_dist_format(&c->input_len, in, sizeof in);
    kb_dist_format(&c->output_len, out, sizeof out);
    json_t *urls = json_array();
    for (int t = 0; t < c->n_targets; t++)
        json_array_append_new(urls, json_string(c->target[t].url));
    json_t *models = json_array();
    for (int i = 0; i < c->n_models; i++)
        json_array_append_new(models, json_pack("{s:s, s:f}", "name", c->models[i].name, "weight",
                                                c->models[i].weight));
    json_t *j = json_pack("{s:o, s:s, s:o, s:i, s:f, s:i, s:f, s:s, s:s, s:b, s:I, s:i, s:i, "
                          "s:i, s:s?, s:f, s:f, s:f}",
                          "urls", urls, "api", c->chat ? "chat" : "completions", "models", models,
                          "concurrency", c->concurrency, "rate", c->rate, "requests", c->requests,
                          "duration_s", c->duration, "input_len", in, "output_len", out,
                          "output_len_given", c->output_len_given, "seed", (json_int_t)c->seed,
                          "shared_prefix", c->shared_prefix, "groups", c->groups, "turns", c->turns,
                          "dataset", c->dataset, "timeout_s", c->timeout, "slo_ttft_ms",
                          c->slo_ttft_ms, "slo_tpot_ms", c->slo_tpot_ms);
    if (j && c->vocab) { /* how the input lengths were made (bench/vocab.h) */
        json_object_set_new(j, "input_len_exact", json_boolean(c->vocab->exact));
        json_object_set_new(j, "input_len_note", json_string(c->vocab->note));
    }
    return j;
}

static json_t *pct_json(const kb_pct *p)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "n", p->n, "mean", p->mean, "p50", p->p50,
                     "p90", p->p90, "p99", p->p99, "max", p->max);
}

json_t *kb_summary_json(const kb_summary *s)
{
    json_t *errs = json_object();
    for (int k = 1; k < KB_N_STATUS; k++)
        json_object_set_new(errs, kb_status_name((kb_status)k), json_integer(s->errors[k]));
    return json_pack("{s:i, s:i, s:i, s:o, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:i, s:I, "
                     "s:o, s:o, s:o, s:o}",
                     "requests", s->n, "ok", s->n_ok, "good", s->n_good, "errors", errs,
                     "duration_s", s->duration_s, "req_per_s", s->req_per_s, "output_tok_per_s",
                     s->out_tok_per_s, "input_tok_per_s", s->in_tok_per_s, "goodput_req_per_s",
                     s->goodput_rps, "good_fraction", s->good_fraction, "input_tokens",
                     (json_int_t)s->in_tokens, "output_tokens", (json_int_t)s->out_tokens,
                     "usage_missing", s->usage_missing, "chunks", (json_int_t)s->chunks, "ttft_ms",
                     pct_json(&s->ttft), "tpot_ms", pct_json(&s->tpot), "itl_ms", pct_json(&s->itl),
                     "e2e_ms", pct_json(&s->e2e));
}

/* A latency as JSON: null when it was never reached (-1). */
static json_t *ms(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

json_t *kb_records_json(const kb_result *r)
{
    json_t *a = json_array();
    for (int i = 0; a && i < r->n_rec; i++) {
        const kb_record *q = &r->rec[i];
        json_t *o = json_pack(
            "{s:i, s:i, s:i, s:s, s:f, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:o, s:o, s:i, s:b, s:i, "
            "s:s}",
            "id", q->id, "target", q->target, "item", q->item, "model",
            r->model_names[q->target][q->model], "start_ms", q->t_start_ms, "ttft_ms",
            ms(q->ttft_ms), "tpot_ms", ms(q->tpot_ms), "e2e_ms", ms(q->e2e_ms), "itl_mean_ms",
            ms(q->itl_mean_ms), "itl_max_ms", ms(q->itl_max_ms), "input_expected", q->in_expected,
            "output_expected", q->out_expected, "input_tokens",
            q->in_tokens < 0 ? json_null() : json_integer(q->in_tokens), "output_tokens",
            q->out_tokens < 0 ? json_null() : json_integer(q->out_tokens), "chunks", q->chunks,
            "usage", q->usage, "http_status", q->http_status, "status", kb_status_name(q->status));
        if (o && q->error[0]) json_object_set_new(o, "error", json_string(q->error));
        if (!o || json_array_append_new(a, o)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

void kb_print_summary(FILE *f, const char *title, const kb_summary *s, const kb_config *c)
{
    fprintf(f, "== %s\n", title);
    fprintf(f, "requests %d  ok %d  errors %d", s->n, s->n_ok, s->n - s->n_ok);
    if (s->n - s->n_ok) {
        fprintf(f, " (");
        const char *sep = "";
        for (int k = 1; k < KB_N_STATUS; k++)
            if (s->errors[k]) {
                fprintf(f, "%s%s %d", sep, kb_status_name((kb_status)k), s->errors[k]);
                sep = ", ";
            }
        fprintf(f, ")");
    }
    fprintf(f, "  duration %.2f s\n", s->duration_s);
    fprintf(
        f,
        "throughput %.2f req/s  %.1f output tok/s  %.1f input tok/s  (tokens in %lld, out %lld)\n",
        s->req_per_s, s->out_tok_per_s, s->in_tok_per_s, (long long)s->in_tokens,
        (long long)s->out_tokens);
    if (c->slo_ttft_ms > 0 || c->slo_tpot_ms > 0)
        fprintf(f, "goodput    %.2f req/s  (%d of %d meet TTFT <= %g ms, TPOT <= %g ms)\n",
                s->goodput_rps, s->n_good, s->n, c->slo_ttft_ms, c->slo_tpot_ms);
    if (s->usage_missing)
        fprintf(f, "note: %d responses had no usage; their tokens are counted as chunks\n",
                s->usage_missing);
    fprintf(f, "%-10s %9s %9s %9s %9s %9s\n", "ms", "mean", "p50", "p90", "p99", "max");
    const struct {
        const char *name;
        const kb_pct *p;
    } rows[] = {{"TTFT", &s->ttft}, {"TPOT", &s->tpot}, {"ITL", &s->itl}, {"E2E", &s->e2e}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (!rows[i].p->n) { /* nothing measured (every request failed, or one token each) */
            fprintf(f, "%-10s %9s %9s %9s %9s %9s\n", rows[i].name, "-", "-", "-", "-", "-");
            continue;
        }
        fprintf(f, "%-10s %9.2f %9.2f %9.2f %9.2f %9.2f\n", rows[i].name, rows[i].p->mean,
                rows[i].p->p50, rows[i].p->p90, rows[i].p->p99, rows[i].p->max);
    }
}

int kb_mkdir_p(const char *dir, kl_err *err)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return kl_errf(err, KL_EIO, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char save = *p;
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return kl_errf(err, KL_EIO, "%s: %s", buf, strerror(errno));
            *p = save;
            if (!save) break;
        }
    }
    return 0;
}

int kb_write_file(const char *dir, const char *name, const char *text, kl_err *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return kl_errf(err, KL_EIO, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok) return kl_errf(err, KL_EIO, "%s: write failed", path);
    return 0;
}

int kb_write_json(const char *dir, const char *name, const json_t *j, kl_err *err)
{
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
    if (!s) return kl_errf(err, KL_ENOMEM, "out of memory writing %s", name);
    int rc = kb_write_file(dir, name, s, err);
    free(s);
    return rc;
}
