/* net/prom.c: Prometheus text-format pieces (net/prom.h). */
#include "net/prom.h"

void net_prom_hist(struct evbuffer *b, const char *name, const char *help, const char *labels,
                   const kl_hist *h)
{
    const char *sep = labels[0] ? "," : "";
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_le; i++) {
        cum += h->count[i];
        evbuffer_add_printf(b, "%s_bucket{le=\"%g\"%s%s} %llu\n", name, h->le[i], sep, labels,
                            (unsigned long long)cum);
    }
    cum += h->count[h->n_le];
    evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"%s%s} %llu\n", name, sep, labels,
                        (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    evbuffer_add_printf(b, "%s_sum%s%s%s %.6f\n", name, open, labels, close, h->sum);
    evbuffer_add_printf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
                        (unsigned long long)h->n);
}
