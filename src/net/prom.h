/* net/prom.h: Prometheus text-format (0.0.4) pieces shared by kiln serve's and kiln gateway's
 * /metrics. */
#ifndef KILN_NET_PROM_H
#define KILN_NET_PROM_H
#include <event2/buffer.h>

#include "base/hist.h"

/* h as the histogram family name: # HELP, # TYPE, cumulative _bucket lines (le="..." first,
 * then labels), _sum and _count. labels: rendered pairs (`model_name="x"`), "" for none. */
void net_prom_hist(struct evbuffer *b, const char *name, const char *help, const char *labels,
                   const kl_hist *h);
#endif
