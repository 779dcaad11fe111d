/* bench/runreport.c: a single run's latency CDF charts and report.html (see sweep.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/report.h"
#include "bench/svg.h"
#include "bench/sweep.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The sorted values of one latency (0 TTFT, 1 TPOT, 2 E2E) of target t's successful
 * requests into x[] and their cumulative shares into y[]; returns the count. */
static int cdf(const kb_result *r, int t, int which, double *x, double *y)
{
    int n = 0;
    for (int i = 0; i < r->n_rec; i++) {
        const kb_record *q = &r->rec[i];
        if (q->target != t || q->status != KB_OK) continue;
        double v = which == 0 ? q->ttft_ms : which == 1 ? q->tpot_ms : q->e2e_ms;
        if (v >= 0) x[n++] = v;
    }
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    for (int i = 0; i < n; i++)
        y[i] = (double)(i + 1) / n;
    return n;
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

int kb_run_report(const kb_result *r, const kb_summary *s, const kb_config *c, const char *out,
                  kl_err *err)
{
    size_t n = (size_t)r->n_rec + 1;
    double *buf = malloc(sizeof(double) * n * 4);
    if (!buf) return kl_errf(err, KL_ENOMEM, "out of memory");
    static const char *const what[3] = {"TTFT", "TPOT", "E2E"};
    static const char *const file[3] = {"ttft_cdf.svg", "tpot_cdf.svg", "e2e_cdf.svg"};
    char *svg[3] = {0};
    int rc = 0;
    for (int m = 0; m < 3 && !rc; m++) {
        kb_series ser[2];
        char names[2][64], title[64], xlabel[64];
        for (int t = 0; t < c->n_targets; t++) {
            double *x = buf + (size_t)t * 2 * n, *y = x + n;
            int k = cdf(r, t, m, x, y);
            snprintf(names[t], sizeof names[t], "%s%s", c->n_targets == 2 ? (t ? "B " : "A ") : "",
                     what[m]);
            ser[t] = (kb_series){names[t], x, y, k, t == 1};
        }
        snprintf(title, sizeof title, "%s distribution (share of requests at or under)", what[m]);
        snprintf(xlabel, sizeof xlabel, "%s (ms)", what[m]);
        double slo = m == 0 ? c->slo_ttft_ms : m == 1 ? c->slo_tpot_ms : 0;
        kb_chart ch = {title, xlabel, "share of requests", 0, NULL, slo, slo > 0 ? "SLO" : NULL, 1};
        svg[m] = kb_svg_chart(&ch, ser, c->n_targets);
        if (!svg[m])
            rc = kl_errf(err, KL_ENOMEM, "out of memory");
        else
            rc = kb_write_file(out, file[m], svg[m], err);
    }
    free(buf);
    char *doc = NULL;
    size_t len = 0;
    FILE *f = rc ? NULL : open_memstream(&doc, &len);
    if (!rc && !f) rc = kl_errf(err, KL_ENOMEM, "out of memory");
    if (f) {
        fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kiln bench "
                   "report</title>\n"
                   "<style>body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}"
                   "pre{background:#f7f7f7;padding:10px}.charts svg{margin:6px;border:1px solid "
                   "#eee}</style>"
                   "</head><body>\n<h1>kiln bench report</h1>\n");
        for (int t = 0; t < c->n_targets; t++) {
            char *tab = NULL;
            size_t tl = 0;
            FILE *tf = open_memstream(&tab, &tl);
            if (!tf) continue;
            char title[600];
            snprintf(title, sizeof title, "%s%s (model %s)",
                     c->n_targets == 2 ? (t ? "B: " : "A: ") : "", c->target[t].url,
                     r->model_names[t][0]);
            kb_print_summary(tf, title, &s[t], c);
            fclose(tf);
            fprintf(f, "<pre>");
            html_esc(f, tab);
            fprintf(f, "</pre>\n");
            free(tab);
        }
        fprintf(f, "<div class=\"charts\">\n");
        for (int m = 0; m < 3; m++)
            fputs(svg[m], f);
        fprintf(f, "</div>\n<p>Raw data: results.json.</p>\n</body></html>\n");
        if (fclose(f))
            rc = kl_errf(err, KL_ENOMEM, "out of memory");
        else
            rc = kb_write_file(out, "report.html", doc, err);
        free(doc);
    }
    for (int m = 0; m < 3; m++)
        free(svg[m]);
    return rc;
}
