/* hub/progress.c: a download's progress on stderr: a bar redrawn in place on a terminal,
 * a plain line every 10% in a log. */
#include "hub/internal.h"

#include <stdio.h>

#include "base/clock.h"

static double mb(long long b)
{
    return (double)b / 1e6;
}

void hub_progress_start(hub_progress *p, int mode, const char *label, long long total,
                        long long already)
{
    *p = (hub_progress){.mode = mode,
                        .label = label,
                        .total = total,
                        .done = already,
                        .start_at = already,
                        .t0 = kl_now_s(),
                        .last_decile = -1};
    if (mode == HUB_PROGRESS_NONE) return;
    if (already > 0)
        fprintf(stderr, "kiln: pull: %s: resuming at %.1f of %.1f MB\n", label, mb(already),
                mb(total));
    else
        fprintf(stderr, "kiln: pull: %s: downloading %.1f MB\n", label, mb(total));
}

static double rate(const hub_progress *p, double t)
{
    return t > p->t0 ? mb(p->done - p->start_at) / (t - p->t0) : 0;
}

void hub_progress_update(hub_progress *p, long long done)
{
    p->done = done;
    if (p->mode == HUB_PROGRESS_NONE || p->total <= 0) return;
    double t = kl_now_s();
    int pct = (int)(100 * done / p->total);
    if (p->mode == HUB_PROGRESS_LINES) {
        if (pct / 10 == p->last_decile || pct >= 100) return;
        p->last_decile = pct / 10;
        if (pct < 10) return;
        fprintf(stderr, "kiln: pull: %s: %d%% (%.1f of %.1f MB, %.1f MB/s)\n", p->label, pct,
                mb(done), mb(p->total), rate(p, t));
        return;
    }
    if (t - p->last < 0.1) return;
    p->last = t;
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r%.40s [%s] %3d%% %.1f/%.1f MB %.1f MB/s ", p->label, bar, pct, mb(done),
            mb(p->total), rate(p, t));
}

void hub_progress_end(hub_progress *p, bool ok)
{
    if (p->mode == HUB_PROGRESS_NONE) return;
    if (p->mode == HUB_PROGRESS_BAR) { /* the bar as it ended, then a new line */
        p->last = -1e9;
        hub_progress_update(p, p->done);
        fprintf(stderr, "\n");
    }
    if (ok)
        fprintf(stderr, "kiln: pull: %s: done, %.1f MB in %.1f s, checksum verified\n", p->label,
                mb(p->done), kl_now_s() - p->t0);
}
