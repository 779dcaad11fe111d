/* bench/sweep.c: `kiln bench --sweep`: rising load until the SLO fails or throughput stops
 * rising, then the saturation point (see sweep.h). */
#include "bench/sweep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/report.h"
#include "bench/vocab.h"

void kb_sweep_opts_defaults(kb_sweep_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_steps = 10;
    o->attainment = 0.9;
    o->min_gain = 0.05;
}

int kb_sweep_parse_list(kb_sweep_opts *o, const char *s, kl_err *err)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v > 0 && v <= 1e6) || (*end && *end != ',') ||
            n == KB_MAX_STEPS || (n && v <= o->loads[n - 1]))
            return kl_errf(err, KL_EINVAL,
                           "--sweep %s: expected rising numbers like 1,2,4,8 (at most %d)", s,
                           KB_MAX_STEPS);
        o->loads[n++] = v;
        p = *end ? end + 1 : end;
    }
    if (!n) return kl_errf(err, KL_EINVAL, "--sweep %s: empty list", s);
    o->n_loads = n;
    return 0;
}

double kb_step_throughput(const kb_summary *s)
{
    return s->out_tokens > 0 ? s->out_tok_per_s : s->req_per_s;
}

int kb_sweep_saturation(const kb_sweep *w, int t, bool has_slo)
{
    int best = -1;
    double top = 0;
    for (int i = 0; i < w->n_steps; i++)
        if (w->steps[i].meets[t] && kb_step_throughput(&w->steps[i].s[t]) > top)
            top = kb_step_throughput(&w->steps[i].s[t]);
    for (int i = 0; i < w->n_steps; i++) {
        if (!w->steps[i].meets[t] || kb_step_throughput(&w->steps[i].s[t]) < 0.95 * top) continue;
        if (!has_slo) return i; /* the knee: the lowest load near the best throughput */
        best = i;               /* the highest load that meets the SLO, not past the peak */
    }
    return best;
}

static void print_steps(FILE *f, const kb_sweep *w, const kb_config *c, int t)
{
    fprintf(f, "== sweep of %s by %s\n", c->target[t].url,
            w->by_rate ? "rate (req/s)" : "concurrency");
    fprintf(f, "%8s %8s %9s %8s %9s %9s %9s %8s %8s %9s %9s %6s %4s\n", "load", "req/s", "tok/s",
            "goodput", "ttft_p50", "ttft_p90", "ttft_p99", "tpot_p50", "tpot_p90", "e2e_p50",
            "e2e_p99", "errors", "slo");
    for (int i = 0; i < w->n_steps; i++) {
        const kb_summary *s = &w->steps[i].s[t];
        fprintf(f, "%8g %8.2f %9.1f %8.2f %9.1f %9.1f %9.1f %8.2f %8.2f %9.1f %9.1f %6d %4s\n",
                w->steps[i].load, s->req_per_s, s->out_tok_per_s, s->goodput_rps, s->ttft.p50,
                s->ttft.p90, s->ttft.p99, s->tpot.p50, s->tpot.p90, s->e2e.p50, s->e2e.p99,
                s->n - s->n_ok, w->steps[i].meets[t] ? "ok" : "FAIL");
    }
    int k = w->saturation[t];
    if (k < 0) {
        fprintf(f, "saturation: no step met the SLO\n");
    } else {
        const kb_summary *s = &w->steps[k].s[t];
        fprintf(f,
                "saturation: %s %g: %.2f req/s, %.1f output tok/s, TTFT p90 %.1f ms, TPOT p90 %.2f "
                "ms, E2E p90 %.1f ms\n",
                w->by_rate ? "rate" : "concurrency", w->steps[k].load, s->req_per_s,
                s->out_tok_per_s, s->ttft.p90, s->tpot.p90, s->e2e.p90);
    }
}

static json_t *sweep_json(const kb_sweep *w, const kb_config *c)
{
    json_t *steps = json_array();
    for (int i = 0; i < w->n_steps; i++) {
        json_t *o =
            json_pack("{s:f, s:o, s:b}", "load", w->steps[i].load, "summary",
                      kb_summary_json(&w->steps[i].s[0]), "meets_slo", w->steps[i].meets[0]);
        if (c->n_targets == 2) {
            json_object_set_new(o, "summary_vs", kb_summary_json(&w->steps[i].s[1]));
            json_object_set_new(o, "meets_slo_vs", json_boolean(w->steps[i].meets[1]));
        }
        json_array_append_new(steps, o);
    }
    json_t *j = json_pack("{s:s, s:o, s:s}", "by", w->by_rate ? "rate" : "concurrency", "steps",
                          steps, "stop_reason", w->stop_reason);
    for (int t = 0; t < c->n_targets; t++) {
        int k = w->saturation[t];
        json_t *sat = json_null();
        if (k >= 0)
            sat = json_pack("{s:f, s:i, s:o}", "load", w->steps[k].load, "step", k, "summary",
                            kb_summary_json(&w->steps[k].s[t]));
        json_object_set_new(j, t ? "saturation_vs" : "saturation", sat);
    }
    return j;
}

/* Runs the steps into w; the sweep stops early (not an error) on SLO failure or a plateau. */
static int run_steps(const kb_config *c, const kb_sweep_opts *o, kb_sweep *w, json_t *records,
                     kl_err *err)
{
    bool has_slo = c->slo_ttft_ms > 0 || c->slo_tpot_ms > 0;
    double best[2] = {0, 0};
    int n = o->n_loads ? o->n_loads : o->max_steps, item_base = 0;
    int turns = c->turns > 1 ? c->turns : 1;
    snprintf(w->stop_reason, sizeof w->stop_reason, "all %d steps ran", n);
    for (int i = 0; i < n && i < KB_MAX_STEPS; i++) {
        double load =
            o->n_loads ? o->loads[i] : (w->by_rate ? c->rate : c->concurrency) * pow(2, i);
        kb_config sc = *c;
        char label[64];
        snprintf(label, sizeof label, "step %d, %s %g", i + 1, w->by_rate ? "rate" : "concurrency",
                 load);
        sc.label = label;
        if (w->by_rate)
            sc.rate = load;
        else
            sc.concurrency = (int)load;
        sc.duration = o->step_duration;
        sc.requests = o->step_requests;
        /* fresh prompts each step: a step that replayed the last one's would find them in
         * the server's prefix cache and measure cached TTFTs */
        sc.item_base = item_base;
        sc.epoch = i;
        if (!sc.requests && !(sc.duration > 0))
            sc.requests = w->by_rate ? (int)fmax(20, ceil(load * 5)) : (int)fmax(20, 4 * load);
        kb_result r;
        int rc = kb_run(&sc, &r, err);
        if (rc) return rc;
        for (int k = 0; k < r.n_rec; k++)
            if (r.rec[k].item >= item_base) item_base = (r.rec[k].item / turns + 1) * turns;
        kb_step *st = &w->steps[w->n_steps];
        st->load = load;
        bool any_going = false;
        for (int t = 0; t < c->n_targets && !rc; t++) {
            rc = kb_summarize(&r, t, c->slo_ttft_ms, c->slo_tpot_ms, &st->s[t]);
            st->meets[t] = st->s[t].n > 0 && st->s[t].good_fraction >= o->attainment;
            double thr = kb_step_throughput(&st->s[t]);
            bool gains = w->n_steps == 0 || thr >= best[t] * (1 + o->min_gain);
            if (thr > best[t]) best[t] = thr;
            any_going |= st->meets[t] && gains;
        }
        if (!w->n_steps) snprintf(w->model, sizeof w->model, "%s", r.model_names[0][0]);
        bool interrupted = r.interrupted;
        if (!rc && records) {
            json_t *rj = kb_records_json(&r);
            rc = !rj || json_array_append_new(records, rj)
                     ? kl_errf(err, KL_ENOMEM, "out of memory")
                     : 0;
        }
        kb_result_free(&r);
        if (rc) return kl_errf(err, rc, "out of memory");
        w->n_steps++;
        if (interrupted) {
            snprintf(w->stop_reason, sizeof w->stop_reason, "interrupted during %s %g",
                     w->by_rate ? "rate" : "concurrency", load);
            break;
        }
        if (!any_going) {
            bool slo_failed = !st->meets[0] && (c->n_targets == 1 || !st->meets[1]);
            snprintf(w->stop_reason, sizeof w->stop_reason, "%s at %s %g",
                     slo_failed ? (has_slo ? "SLO failed" : "errors over 10%")
                                : "throughput gain under 5%",
                     w->by_rate ? "rate" : "concurrency", load);
            break;
        }
    }
    for (int t = 0; t < c->n_targets; t++)
        w->saturation[t] = kb_sweep_saturation(w, t, has_slo);
    return 0;
}

int kb_sweep_main(const kb_config *cfg, const kb_sweep_opts *o, const char *out, kl_err *err)
{
    kb_config run = *cfg, *c = &run;
    kb_vocab vocab;
    kb_vocab_setup(c, &vocab);
    kb_sweep *w = calloc(1, sizeof *w);
    json_t *records = json_array();
    if (!w || !records) {
        free(w);
        json_decref(records);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    w->by_rate = c->concurrency <= 0;
    int rc = run_steps(c, o, w, out ? records : NULL, err);
    if (!rc) {
        for (int t = 0; t < c->n_targets; t++)
            print_steps(stdout, w, c, t);
        printf("stopped: %s\n", w->stop_reason);
        fflush(stdout);
    }
    char *advice = NULL;
    if (!rc && out && o->recommend) {
        rc = kb_recommend(w, c, o, w->model, out, &advice, err);
        if (!rc)
            printf("recommendation: %s/recommend.md, %s/hpa.yaml, %s/gateway.json\n", out, out,
                   out);
        if (rc == KL_ENOTFOUND) { /* a result, not a failure: the report says so */
            printf("recommendation: none: %s\n", err->msg);
            advice = strdup(err->msg);
            rc = 0;
        }
    }
    if (!rc && out) {
        rc = kb_sweep_report(w, c, advice, out, err);
        if (!rc) printf("report: %s/report.html\n", out);
    }
    free(advice);
    if (!rc && out) {
        json_t *root = json_pack("{s:o, s:o, s:O}", "config", kb_config_json(c), "sweep",
                                 sweep_json(w, c), "records", records);
        rc = root ? kb_write_json(out, "results.json", root, err)
                  : kl_errf(err, KL_ENOMEM, "out of memory");
        json_decref(root);
    }
    json_decref(records);
    for (int t = 0; !rc && t < c->n_targets; t++) { /* after the results are written */
        kb_summary all = {0};
        for (int i = 0; i < w->n_steps; i++) {
            all.n += w->steps[i].s[t].n;
            all.n_ok += w->steps[i].s[t].n_ok;
            for (int k = 0; k < KB_N_STATUS; k++)
                all.errors[k] += w->steps[i].s[t].errors[k];
        }
        if (!all.n_ok) rc = kb_no_success(c, t, &all, err);
    }
    free(w);
    return rc;
}
