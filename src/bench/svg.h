/* bench/svg.h: line charts as standalone SVG text, written by hand (no plotting library):
 * axes from zero with "nice" 1-2-5 ticks, tick labels, axis labels, a title, a legend, an
 * optional horizontal limit line (an SLO) and an optional vertical marker (saturation). The
 * legend sits right of the plot, so it never hides a point. */
#ifndef KILN_BENCH_SVG_H
#define KILN_BENCH_SVG_H
#include <stdbool.h>

#define KB_SVG_W          780
#define KB_SVG_H          400
#define KB_SVG_HLINE_SPAN 3 /* a limit line above 3x the data's top is named, not drawn */

typedef struct kb_series {
    const char *name;
    const double *x, *y; /* [n]; points with a non-finite or negative coordinate are skipped */
    int n;
    bool dashed; /* e.g. the second endpoint of --vs */
} kb_series;

typedef struct kb_chart {
    const char *title, *xlabel, *ylabel;
    double hline; /* > 0: a dashed horizontal line at this y (or, far above the data, a note
                     at the top: the axis follows the data) */
    const char *hline_label;
    double vline; /* > 0: a dotted vertical line at this x */
    const char *vline_label;
    double ytop; /* > 0: the top of the y axis (e.g. 1 for shares), else from the data */
} kb_chart;

/* A tick step of 1, 2 or 5 x 10^k giving about `ticks` intervals over [0, range]. */
double kb_nice_step(double range, int ticks);
/* The SVG document of the chart (caller frees), or NULL on OOM. Text is XML-escaped. */
char *kb_svg_chart(const kb_chart *c, const kb_series *s, int n_series);
#endif
