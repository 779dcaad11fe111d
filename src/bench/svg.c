/* bench/svg.c: hand-written SVG line charts (see svg.h). */
#include "bench/svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* plot area inside the KB_SVG_W x KB_SVG_H canvas */
#define PL 78
#define PR 164 /* the legend's column */
#define PT 44
#define PB 58

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

double kb_nice_step(double range, int ticks)
{
    if (!(range > 0) || ticks < 1) return 1;
    double raw = range / ticks;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nice * mag;
}

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* A tick label: integers plainly, fractions with as few digits as the step needs; one unit
 * (k, M) for the whole axis, chosen by its top value. */
static void tick_label(char *buf, size_t cap, double v, double step, double top)
{
    if (top >= 1e6)
        snprintf(buf, cap, "%.4gM", v / 1e6);
    else if (top >= 1e4)
        snprintf(buf, cap, "%.4gk", v / 1e3);
    else if (step >= 1)
        snprintf(buf, cap, "%.0f", v);
    else {
        int d = (int)ceil(-log10(step));
        snprintf(buf, cap, "%.*f", d > 6 ? 6 : d, v);
    }
}

static bool usable(double x, double y)
{
    return isfinite(x) && isfinite(y) && x >= 0 && y >= 0;
}

char *kb_svg_chart(const kb_chart *c, const kb_series *s, int n_series)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    if (!f) return NULL;
    double xmax = 0, ymax = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++)
            if (usable(s[k].x[i], s[k].y[i])) {
                xmax = fmax(xmax, s[k].x[i]);
                ymax = fmax(ymax, s[k].y[i]);
            }
    /* The limit line joins the axis only when it is near the data: an SLO far above them
     * would squash them flat at the bottom; it is then named at the top instead. */
    bool hline_above = c->hline > 0 && ymax > 0 && c->hline > KB_SVG_HLINE_SPAN * ymax;
    if (c->hline > 0 && !hline_above) ymax = fmax(ymax, c->hline);
    if (c->vline > 0) xmax = fmax(xmax, c->vline);
    double xs = kb_nice_step(xmax > 0 ? xmax : 1, 6), ys = kb_nice_step(ymax > 0 ? ymax : 1, 5);
    double xtop = xs * ceil((xmax > 0 ? xmax : 1) / xs),
           ytop = ys * ceil((ymax > 0 ? ymax * 1.05 : 1) / ys);
    if (c->ytop > 0) {
        ys = kb_nice_step(c->ytop, 5);
        ytop = ys * ceil(c->ytop / ys);
    }
    const double w = KB_SVG_W - PL - PR, h = KB_SVG_H - PT - PB;
#define X(v) (PL + (v) / xtop * w)
#define Y(v) (PT + h - (v) / ytop * h)
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d "
            "%d\" "
            "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
            KB_SVG_W, KB_SVG_H, KB_SVG_W, KB_SVG_H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    fprintf(
        f,
        "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">",
        PL + w / 2);
    esc(f, c->title);
    fprintf(f, "</text>\n<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">\n");
    int nx = (int)lround(xtop / xs), ny = (int)lround(ytop / ys);
    for (int i = 0; i <= nx; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\"/>\n", X(i * xs), PT,
                X(i * xs), PT + h);
    for (int i = 0; i <= ny; i++)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PL, Y(i * ys), PL + w,
                Y(i * ys));
    fprintf(f,
            "</g>\n<g class=\"axes\" stroke=\"#333\" stroke-width=\"1.2\">\n"
            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%.1f\"/>\n",
            PL, PT + h, PL + w, PT + h, PL, PT, PL, PT + h);
    for (int i = 0; i <= nx; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", X(i * xs), PT + h,
                X(i * xs), PT + h + 5);
    for (int i = 0; i <= ny; i++)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", PL - 5, Y(i * ys), PL,
                Y(i * ys));
    fprintf(f, "</g>\n<g class=\"ticks\" fill=\"#333\">\n");
    char buf[64];
    for (int i = 0; i <= nx; i++) {
        tick_label(buf, sizeof buf, i * xs, xs, xtop);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X(i * xs),
                PT + h + 19, buf);
    }
    for (int i = 0; i <= ny; i++) {
        tick_label(buf, sizeof buf, i * ys, ys, ytop);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", PL - 8,
                Y(i * ys) + 4, buf);
    }
    fprintf(
        f,
        "</g>\n<text class=\"xlabel\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">",
        PL + w / 2, KB_SVG_H - 14);
    esc(f, c->xlabel);
    fprintf(f,
            "</text>\n<text class=\"ylabel\" transform=\"translate(18 %.1f) rotate(-90)\" "
            "text-anchor=\"middle\" font-size=\"13\">",
            PT + h / 2);
    esc(f, c->ylabel);
    fprintf(f, "</text>\n");
    if (hline_above) {
        fprintf(f,
                "<text class=\"hline-above\" x=\"%.1f\" y=\"%d\" text-anchor=\"end\" "
                "fill=\"#b00\">",
                PL + w - 4, PT - 6);
        esc(f, c->hline_label);
        fprintf(f, " (above the chart)</text>\n");
    } else if (c->hline > 0) {
        fprintf(
            f,
            "<line class=\"hline\" x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#b00\" "
            "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"end\" fill=\"#b00\">",
            PL, Y(c->hline), PL + w, Y(c->hline), PL + w - 4, Y(c->hline) - 5);
        esc(f, c->hline_label);
        fprintf(f, "</text>\n");
    }
    if (c->vline > 0) {
        fprintf(
            f,
            "<line class=\"vline\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" "
            "stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
            "fill=\"#555\">",
            X(c->vline), PT, X(c->vline), PT + h, X(c->vline) + 4, PT + h - 6);
        esc(f, c->vline_label);
        fprintf(f, "</text>\n");
    }
    for (int k = 0; k < n_series; k++) {
        const char *col = palette[k % (int)(sizeof palette / sizeof palette[0])];
        fprintf(f,
                "<g class=\"series\" stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" "
                "stroke-width=\"2\"%s points=\"",
                col, col, s[k].dashed ? " stroke-dasharray=\"7 4\"" : "");
        for (int i = 0; i < s[k].n; i++)
            if (usable(s[k].x[i], s[k].y[i])) fprintf(f, "%.1f,%.1f ", X(s[k].x[i]), Y(s[k].y[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < s[k].n; i++)
            if (usable(s[k].x[i], s[k].y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", X(s[k].x[i]),
                        Y(s[k].y[i]));
        fprintf(f, "</g>\n");
    }
    /* legend: a column right of the plot area */
    if (n_series > 0) {
        fprintf(f, "<g class=\"legend\">\n");
        for (int k = 0; k < n_series; k++) {
            const char *col = palette[k % (int)(sizeof palette / sizeof palette[0])];
            int x = KB_SVG_W - PR + 14, y = PT + 10 + 20 * k;
            fprintf(
                f,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                "<circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">",
                x, y - 4, x + 24, y - 4, col, s[k].dashed ? " stroke-dasharray=\"7 4\"" : "",
                x + 12, y - 4, col, x + 30, y);
            esc(f, s[k].name);
            fprintf(f, "</text>\n");
        }
        fprintf(f, "</g>\n");
    }
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    if (fclose(f)) {
        free(doc);
        return NULL;
    }
    return doc;
}
