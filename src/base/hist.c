/* base/hist.c: fixed-bound histograms (base/hist.h). */
#include "base/hist.h"

#include <string.h>

void kl_hist_init(kl_hist *h, const double *le, int n_le)
{
    memset(h, 0, sizeof *h);
    h->le = le;
    h->n_le = n_le < KL_HIST_MAX_LE ? n_le : KL_HIST_MAX_LE;
}

void kl_hist_observe(kl_hist *h, double v)
{
    if (!(v >= 0)) v = 0;
    int i = 0;
    while (i < h->n_le && v > h->le[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}
