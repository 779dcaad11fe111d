/* bench/plots.c: the sweep's SVG charts and report.html (see sweep.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/markdown.h"
#include "bench/report.h"
#include "bench/svg.h"
#include "bench/sweep.h"
#include "bench/vocab.h"

/* Per target, one column per step: the figures the charts draw. */
typedef struct cols {
    double load[KB_MAX_STEPS], rps[KB_MAX_STEPS], tps[KB_MAX_STEPS];
    double ttft[3][KB_MAX_STEPS], tpot[3][KB_MAX_STEPS], e2e[3][KB_MAX_STEPS];
} cols;

static void fill(cols *k, const kb_sweep *w, int t)
{
    for (int i = 0; i < w->n_steps; i++) {
        const kb_summary *s = &w->steps[i].s[t];
        k->load[i] = w->steps[i].load;
        k->rps[i] = s->req_per_s;
        k->tps[i] = s->out_tok_per_s;
        /* a step with no successful request has no latency: skipped by the chart */
        double none = s->n_ok ? 0 : -1;
        const kb_pct *p[3] = {&s->ttft, &s->tpot, &s->e2e};
        double(*dst[3])[KB_MAX_STEPS] = {k->ttft, k->tpot, k->e2e};
        for (int m = 0; m < 3; m++) {
            dst[m][0][i] = none < 0 || !p[m]->n ? -1 : p[m]->p50;
            dst[m][1][i] = none < 0 || !p[m]->n ? -1 : p[m]->p90;
            dst[m][2][i] = none < 0 || !p[m]->n ? -1 : p[m]->p99;
        }
    }
}

static int write_svg(const char *out, const char *name, const kb_chart *ch, const kb_series *s,
                     int n, char **keep, kl_err *err)
{
    char *svg = kb_svg_chart(ch, s, n);
    if (!svg) return kl_errf(err, KL_ENOMEM, "out of memory drawing %s", name);
    int rc = kb_write_file(out, name, svg, err);
    if (rc)
        free(svg);
    else
        *keep = svg;
    return rc;
}

static void html_esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

static void html_table(FILE *f, const kb_sweep *w, const kb_config *c, int t)
{
    fprintf(f, "<h2>");
    html_esc(f, c->target[t].url);
    fprintf(
        f,
        "</h2>\n<table>\n<tr><th>%s</th><th>req/s</th><th>output tok/s</th><th>goodput req/s</th>"
        "<th>TTFT p50</th><th>TTFT p90</th><th>TTFT p99</th><th>TPOT p50</th><th>TPOT p90</th>"
        "<th>TPOT p99</th><th>E2E p50</th><th>E2E p99</th><th>errors</th><th>SLO</th></tr>\n",
        w->by_rate ? "rate (req/s)" : "concurrency");
    for (int i = 0; i < w->n_steps; i++) {
        const kb_summary *s = &w->steps[i].s[t];
        fprintf(f,
                "<tr%s><td>%g</td><td>%.2f</td><td>%.1f</td><td>%.2f</td><td>%.1f</td><td>%.1f</td>"
                "<td>%.1f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.1f</td><td>%.1f</"
                "td><td>%d</td>"
                "<td>%s</td></tr>\n",
                i == w->saturation[t] ? " class=\"sat\"" : "", w->steps[i].load, s->req_per_s,
                s->out_tok_per_s, s->goodput_rps, s->ttft.p50, s->ttft.p90, s->ttft.p99,
                s->tpot.p50, s->tpot.p90, s->tpot.p99, s->e2e.p50, s->e2e.p99, s->n - s->n_ok,
                w->steps[i].meets[t] ? "ok" : "fail");
    }
    fprintf(f, "</table>\n");
    int k = w->saturation[t];
    if (k < 0)
        fprintf(f, "<p><b>Saturation:</b> no step met the SLO.</p>\n");
    else
        fprintf(f,
                "<p><b>Saturation:</b> %s %g: %.2f req/s, %.1f output tok/s, TTFT p90 %.1f ms, "
                "TPOT p90 %.2f ms, E2E p90 %.1f ms (highlighted).</p>\n",
                w->by_rate ? "rate" : "concurrency", w->steps[k].load, w->steps[k].s[t].req_per_s,
                w->steps[k].s[t].out_tok_per_s, w->steps[k].s[t].ttft.p90,
                w->steps[k].s[t].tpot.p90, w->steps[k].s[t].e2e.p90);
}

int kb_sweep_report(const kb_sweep *w, const kb_config *c, const char *advice_md, const char *out,
                    kl_err *err)
{
    cols *k = calloc((size_t)c->n_targets, sizeof *k);
    if (!k) return kl_errf(err, KL_ENOMEM, "out of memory");
    for (int t = 0; t < c->n_targets; t++)
        fill(&k[t], w, t);
    const char *load_label =
        w->by_rate ? "offered load (requests/s)" : "concurrency (requests in flight)";
    const char *pct[3] = {"p50", "p90", "p99"};
    char names[4][8][96];
    kb_series s[8];
    int n;
    char *svg[4] = {0};
    int rc = 0;
    double sat_load = w->saturation[0] >= 0 ? w->steps[w->saturation[0]].load : 0;
    char slo_ttft[64], slo_tpot[64];
    snprintf(slo_ttft, sizeof slo_ttft, "SLO %g ms", c->slo_ttft_ms);
    snprintf(slo_tpot, sizeof slo_tpot, "SLO %g ms", c->slo_tpot_ms);
    /* names: "E2E p90" or "A E2E p90" / "B E2E p90" with --vs */
#define NAME(chart, i, fmt, ...)                                                                   \
    (snprintf(names[chart][i], sizeof names[chart][i], fmt, __VA_ARGS__), names[chart][i])
    /* 1: latency percentiles against throughput */
    n = 0;
    for (int t = 0; t < c->n_targets; t++)
        for (int p = 0; p < 3; p++)
            s[n] = (kb_series){NAME(0, n, "%sE2E %s", c->n_targets == 2 ? (t ? "B " : "A ") : "",
                                    pct[p]),
                               k[t].tps, k[t].e2e[p], w->n_steps, t == 1},
            n++;
    kb_chart ch = {
        "End-to-end latency vs throughput", "output tokens/s", "latency (ms)", 0, NULL, 0, NULL, 0};
    rc = write_svg(out, "latency.svg", &ch, s, n, &svg[0], err);
    /* 2, 3: TTFT and TPOT against load, with the SLO line */
    for (int m = 0; m < 2 && !rc; m++) {
        n = 0;
        for (int t = 0; t < c->n_targets; t++)
            for (int p = 0; p < 3; p++)
                s[n] = (kb_series){NAME(1 + m, n, "%s%s %s",
                                        c->n_targets == 2 ? (t ? "B " : "A ") : "",
                                        m ? "TPOT" : "TTFT", pct[p]),
                                   k[t].load, m ? k[t].tpot[p] : k[t].ttft[p], w->n_steps, t == 1},
                n++;
        kb_chart cm = {m ? "Time per output token vs load" : "Time to first token vs load",
                       load_label,
                       m ? "TPOT (ms)" : "TTFT (ms)",
                       m ? c->slo_tpot_ms : c->slo_ttft_ms,
                       m ? slo_tpot : slo_ttft,
                       sat_load,
                       "saturation",
                       0};
        rc = write_svg(out, m ? "tpot.svg" : "ttft.svg", &cm, s, n, &svg[1 + m], err);
    }
    /* 4: throughput against load */
    if (!rc) {
        n = 0;
        for (int t = 0; t < c->n_targets; t++)
            s[n] = (kb_series){NAME(3, n, "%soutput tok/s",
                                    c->n_targets == 2 ? (t ? "B " : "A ") : ""),
                               k[t].load, k[t].tps, w->n_steps, t == 1},
            n++;
        kb_chart ct = {w->by_rate ? "Throughput vs offered load" : "Throughput vs concurrency",
                       load_label,
                       "output tokens/s",
                       0,
                       NULL,
                       sat_load,
                       "saturation",
                       0};
        rc = write_svg(out, "throughput.svg", &ct, s, n, &svg[3], err);
    }
#undef NAME
    if (!rc) {
        char *doc = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&doc, &len);
        if (!f)
            rc = kl_errf(err, KL_ENOMEM, "out of memory");
        else {
            char in[64], outl[64];
            kb_dist_format(&c->input_len, in, sizeof in);
            kb_dist_format(&c->output_len, outl, sizeof outl);
            fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kiln bench "
                       "report</title>\n"
                       "<style>body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}"
                       "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid "
                       "#ccc;padding:3px 8px;"
                       "text-align:right}th{background:#f3f3f3}tr.sat "
                       "td{background:#e8f4e8;font-weight:bold}"
                       ".charts svg{margin:6px;border:1px solid "
                       "#eee}.advice{background:#f7f7f7;padding:4px "
                       "14px}code{background:#eee;padding:0 3px}</style>"
                       "</head><body>\n<h1>kiln bench report</h1>\n<p>");
            for (int t = 0; t < c->n_targets; t++) {
                fprintf(f, "%s", t ? " vs " : "Endpoint ");
                html_esc(f, c->target[t].url);
                if (c->n_targets == 2) fprintf(f, " (%s)", t ? "B" : "A");
            }
            fprintf(f, "; %s API; input %s tokens (", c->chat ? "chat" : "completions", in);
            if (c->dataset)
                html_esc(f, "a dataset's prompts");
            else if (c->vocab && c->vocab->exact)
                html_esc(f, "exact: the server's tokenizer");
            else
                html_esc(f, "approximate: about one token a word");
            fprintf(f, "), output %s tokens; seed %llu; sweep by %s; stopped: ", outl,
                    (unsigned long long)c->seed, w->by_rate ? "rate" : "concurrency");
            html_esc(f, w->stop_reason);
            fprintf(f, ".");
            if (c->slo_ttft_ms > 0 || c->slo_tpot_ms > 0)
                fprintf(f, " SLO: TTFT &le; %g ms, TPOT &le; %g ms (0: none).", c->slo_ttft_ms,
                        c->slo_tpot_ms);
            fprintf(f, " Latencies in ms.</p>\n");
            for (int t = 0; t < c->n_targets; t++)
                html_table(f, w, c, t);
            fprintf(f, "<div class=\"charts\">\n");
            for (int i = 0; i < 4; i++)
                fputs(svg[i], f);
            fprintf(f, "</div>\n");
            if (advice_md) {
                fprintf(f, "<div class=\"advice\">\n");
                kb_markdown_html(f, advice_md);
                fprintf(f, "<p>Files: recommend.md, hpa.yaml, prometheus-adapter-rule.yaml, "
                           "gateway.json.</p>\n</div>\n");
            }
            fprintf(f, "<p>Raw data: results.json.</p>\n</body></html>\n");
            if (fclose(f))
                rc = kl_errf(err, KL_ENOMEM, "out of memory");
            else
                rc = kb_write_file(out, "report.html", doc, err);
            free(doc);
        }
    }
    for (int i = 0; i < 4; i++)
        free(svg[i]);
    free(k);
    return rc;
}
