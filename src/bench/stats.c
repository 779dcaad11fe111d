/* bench/stats.c: percentiles, SLO checks and the per-target summary (see bench.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "net/prom_scan.h"

const char *kb_status_name(kb_status s)
{
    static const char *const names[KB_N_STATUS] = {"ok",       "connect", "http_4xx",
                                                   "http_5xx", "timeout", "stream_error"};
    return (unsigned)s < KB_N_STATUS ? names[s] : "?";
}

double kb_percentile(const double *sorted, int n, double p)
{
    if (n <= 0) return 0;
    if (p <= 0) return sorted[0];
    if (p >= 100) return sorted[n - 1];
    double pos = p / 100.0 * (double)(n - 1);
    int i = (int)pos;
    double frac = pos - (double)i;
    if (i + 1 >= n) return sorted[n - 1];
    return sorted[i] + (sorted[i + 1] - sorted[i]) * frac;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void kb_pct_of(double *v, int n, kb_pct *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n <= 0) return;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    out->mean = sum / n;
    out->p50 = kb_percentile(v, n, 50);
    out->p90 = kb_percentile(v, n, 90);
    out->p99 = kb_percentile(v, n, 99);
    out->max = v[n - 1];
}

bool kb_meets_slo(const kb_record *r, double slo_ttft_ms, double slo_tpot_ms)
{
    if (r->status != KB_OK) return false;
    if (slo_ttft_ms > 0 && !(r->ttft_ms >= 0 && r->ttft_ms <= slo_ttft_ms)) return false;
    if (slo_tpot_ms > 0 && r->tpot_ms >= 0 && r->tpot_ms > slo_tpot_ms) return false;
    return true;
}

void kb_result_free(kb_result *r)
{
    free(r->rec);
    free(r->itl);
    free(r->itl_target);
    memset(r, 0, sizeof *r);
}

int kb_summarize(const kb_result *r, int target, double slo_ttft_ms, double slo_tpot_ms,
                 kb_summary *s)
{
    memset(s, 0, sizeof *s);
    int n = r->n_rec;
    /* [4][n]: ttft, tpot, e2e scratch; itl separately */
    double *buf = malloc(sizeof(double) * (size_t)(3 * n + 1));
    double *itl = malloc(sizeof(double) * (size_t)(r->n_itl + 1));
    if (!buf || !itl) {
        free(buf);
        free(itl);
        return KL_ENOMEM;
    }
    double *ttft = buf, *tpot = buf + n, *e2e = buf + 2 * n;
    int n_ttft = 0, n_tpot = 0, n_e2e = 0, n_itl = 0;
    for (int i = 0; i < n; i++) {
        const kb_record *q = &r->rec[i];
        if (q->target != target) continue;
        s->n++;
        s->errors[q->status]++;
        if (q->status != KB_OK) continue;
        s->n_ok++;
        if (kb_meets_slo(q, slo_ttft_ms, slo_tpot_ms)) s->n_good++;
        if (q->ttft_ms >= 0) ttft[n_ttft++] = q->ttft_ms;
        if (q->tpot_ms >= 0) tpot[n_tpot++] = q->tpot_ms;
        e2e[n_e2e++] = q->e2e_ms;
        int in = q->usage ? q->in_tokens : q->in_expected;
        int out = q->usage ? q->out_tokens : q->chunks;
        if (!q->usage) s->usage_missing++;
        s->in_tokens += in > 0 ? in : 0;
        s->out_tokens += out > 0 ? out : 0;
        s->chunks += q->chunks;
    }
    for (int i = 0; i < r->n_itl; i++)
        if (r->itl_target[i] == target) itl[n_itl++] = r->itl[i];
    kb_pct_of(ttft, n_ttft, &s->ttft);
    kb_pct_of(tpot, n_tpot, &s->tpot);
    kb_pct_of(e2e, n_e2e, &s->e2e);
    kb_pct_of(itl, n_itl, &s->itl);
    free(buf);
    free(itl);
    s->duration_s = r->duration_s[target];
    if (s->duration_s > 0) {
        s->req_per_s = s->n_ok / s->duration_s;
        s->out_tok_per_s = (double)s->out_tokens / s->duration_s;
        s->in_tok_per_s = (double)s->in_tokens / s->duration_s;
        s->goodput_rps = s->n_good / s->duration_s;
    }
    s->good_fraction = s->n ? (double)s->n_good / s->n : 0;
    return 0;
}

static const char *const spec_names[3] = {"vllm:spec_decode_num_drafts_total",
                                          "vllm:spec_decode_num_draft_tokens_total",
                                          "vllm:spec_decode_num_accepted_tokens_total"};

typedef struct {
    double sum[3];
    bool seen[3];
} spec_sums;

static void add_spec(const net_prom_sample *x, void *ctx)
{
    spec_sums *t = ctx;
    for (int i = 0; i < 3; i++) /* counters: not negative, and not absurd */
        if (net_prom_is(x, spec_names[i]) && x->value >= 0 && x->value <= 1e18)
            t->sum[i] += x->value, t->seen[i] = true;
}

bool kb_spec_parse(const char *text, kb_spec *out)
{
    spec_sums t = {{0}, {false}};
    net_prom_each(text, strlen(text), add_spec, &t);
    memset(out, 0, sizeof *out);
    out->present = t.seen[0] && t.seen[1] && t.seen[2];
    if (out->present)
        out->drafts = t.sum[0], out->draft_tokens = t.sum[1], out->accepted = t.sum[2];
    return out->present;
}
