/* gateway/stats.c: the gateway's own /metrics (Prometheus text format 0.0.4). Counters are series
 * (a family and its rendered labels) with a value, found by linear search: their number is bounded
 * by models x endpoints x statuses x tenants, all from the config (a client's model name counts as
 * "(unknown)" until it resolves). */
#include "gateway/internal.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "net/procmetrics.h"
#include "net/prom.h"

#define MAX_SERIES 8192

static const double bucket_le[GW_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,    2.5,   5,    10,  30};

static const struct {
    const char *name, *help;
} families[GW_N_METRICS] = {
    [GW_REQUESTS] = {"kiln_gateway_requests_total",
                     "Requests answered, by model asked for ((unknown): not served here), "
                     "endpoint, status and tenant."},
    [GW_PICKS] = {"kiln_gateway_picks_total",
                  "Endpoint picks, by reason (session, scored_prefix, scored)."},
    [GW_RETRIES] = {"kiln_gateway_retries_total",
                    "Attempts that failed before the client's first byte and moved on, by the "
                    "endpoint that failed."},
    [GW_EJECTIONS] = {"kiln_gateway_ejections_total",
                      "Passive ejections of an endpoint after a failed request."},
    [GW_SHED] = {"kiln_gateway_shed_total",
                 "Requests refused with 429 by the gateway's queue, by reason and tenant."},
    [GW_FALLBACKS] = {"kiln_gateway_fallbacks_total",
                      "Requests sent to a fallback model, by model asked for and fallback."},
    [GW_CLIENT_CANCELS] = {"kiln_gateway_client_cancels_total",
                           "Requests whose client went away before the answer ended."},
    [GW_RATE_LIMITED] = {"kiln_gateway_rate_limited_total",
                         "Requests refused by their tenant's rate limits."},
};

/* Appends v to out[*n..cap) escaped as a label value must be (backslash, double quote and
 * newline; nothing else is special). Returns false when it does not fit. */
static bool put_escaped(char *out, size_t cap, size_t *n, const char *v)
{
    for (; *v; v++) {
        const char *rep = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        size_t k = rep ? 2 : 1;
        if (*n + k >= cap) return false;
        if (rep)
            memcpy(out + *n, rep, 2);
        else
            out[*n] = *v;
        *n += k;
    }
    out[*n] = 0;
    return true;
}

/* Renders name="value" pairs from ap (ending with NULL) into out. False if it does not fit. */
static bool render_labels(char *out, size_t cap, va_list ap)
{
    size_t n = 0;
    out[0] = 0;
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        int w = snprintf(out + n, cap - n, "%s%s=\"", n ? "," : "", k);
        if (w < 0 || (size_t)w >= cap - n) return false;
        n += (size_t)w;
        if (!put_escaped(out, cap, &n, v ? v : "") || n + 2 > cap) return false;
        out[n++] = '"';
        out[n] = 0;
    }
    return true;
}

void gw_count(gw *g, gw_metric m, ...)
{
    char labels[4096]; /* four values of at most 255 bytes, each doubled by escaping */
    va_list ap;
    va_start(ap, m);
    bool ok = render_labels(labels, sizeof labels, ap);
    va_end(ap);
    if (!ok) return; /* never a truncated, unparseable series */
    for (int i = 0; i < g->n_counters; i++)
        if (g->counters[i].metric == m && !strcmp(g->counters[i].labels, labels)) {
            g->counters[i].value++;
            return;
        }
    if (g->n_counters == MAX_SERIES) return; /* bounded: drop new series past the cap */
    if (g->n_counters == g->cap_counters) {
        int cap = g->cap_counters ? g->cap_counters * 2 : 64;
        gw_counter *n = realloc(g->counters, (size_t)cap * sizeof *n);
        if (!n) return;
        g->counters = n;
        g->cap_counters = cap;
    }
    char *dup = strdup(labels);
    if (!dup) return;
    g->counters[g->n_counters++] = (gw_counter){m, dup, 1};
}

void gw_stats_free(gw *g)
{
    for (int i = 0; i < g->n_counters; i++)
        free(g->counters[i].labels);
    free(g->counters);
    g->counters = NULL;
    g->n_counters = g->cap_counters = 0;
}

void gw_stats_init(gw *g)
{
    kl_hist_init(&g->latency, bucket_le, GW_N_BUCKETS);
}

void gw_observe_latency(gw *g, double s)
{
    kl_hist_observe(&g->latency, s);
}

/* A family's # HELP and # TYPE lines, which come before its samples. */
static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per live endpoint of a per-endpoint gauge. */
static void endpoint_gauge(struct evbuffer *b, gw *g, const char *name, const char *help,
                           double (*value)(const gw *g, const gw_ep *ep))
{
    family(b, name, "gauge", help);
    for (int i = 0; i < g->n_eps; i++) {
        char url[600];
        size_t n = 0;
        if (!g->eps[i]->live || !put_escaped(url, sizeof url, &n, g->eps[i]->e.cfg->url)) continue;
        evbuffer_add_printf(b, "%s{endpoint=\"%s\"} %g\n", name, url, value(g, g->eps[i]));
    }
}

static double ep_up(const gw *g, const gw_ep *ep)
{
    (void)g;
    return gw_endpoint_available(&ep->e, kl_now_ns());
}

static double ep_inflight(const gw *g, const gw_ep *ep)
{
    (void)g;
    return ep->e.inflight;
}

static double ep_fresh(const gw *g, const gw_ep *ep)
{
    return gw_endpoint_fresh(g->cfg, &ep->e, kl_now_ns());
}

void gw_stats_handle(struct evhttp_request *req, gw *g)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    family(b, "kiln_gateway_queue_depth", "gauge",
           "Requests waiting in the gateway's queue for an endpoint with room.");
    evbuffer_add_printf(b, "kiln_gateway_queue_depth %d\n", g->queue_len);
    family(b, "kiln_gateway_inflight", "gauge", "Requests in flight to endpoints.");
    evbuffer_add_printf(b, "kiln_gateway_inflight %d\n", g->inflight);
    /* The vLLM names, aggregated over this gateway's endpoints, so that a gateway in front of
     * gateways (a global tier over regional ones) routes by the load of whole regions. */
    double waiting = g->queue_len, running = 0, kv = 0;
    int fresh = 0;
    for (int i = 0; i < g->n_eps; i++) {
        const gw_endpoint *e = &g->eps[i]->e;
        if (!g->eps[i]->live || !gw_endpoint_available(e, kl_now_ns())) continue;
        waiting += e->waiting;
        running += e->running > e->inflight ? e->running : e->inflight;
        kv += e->kv_usage;
        fresh++;
    }
    family(b, "vllm:num_requests_waiting", "gauge",
           "Requests waiting: the gateway's queue plus its endpoints' queues.");
    evbuffer_add_printf(b, "vllm:num_requests_waiting{model_name=\"kiln-gateway\"} %g\n", waiting);
    family(b, "vllm:num_requests_running", "gauge", "Requests running on the endpoints.");
    evbuffer_add_printf(b, "vllm:num_requests_running{model_name=\"kiln-gateway\"} %g\n", running);
    family(b, "vllm:kv_cache_usage_perc", "gauge",
           "Mean KV-cache use of the endpoints up (1 when none is).");
    evbuffer_add_printf(b, "vllm:kv_cache_usage_perc{model_name=\"kiln-gateway\"} %g\n",
                        fresh ? kv / fresh : 1.0);
    endpoint_gauge(b, g, "kiln_gateway_endpoint_up",
                   "1 if the endpoint is healthy and not ejected.", ep_up);
    endpoint_gauge(b, g, "kiln_gateway_endpoint_inflight",
                   "Requests in flight from this gateway to the endpoint.", ep_inflight);
    endpoint_gauge(b, g, "kiln_gateway_endpoint_metrics_fresh",
                   "1 if the endpoint's scraped metrics are recent enough to route by.", ep_fresh);
    for (int m = 0; m < GW_N_METRICS; m++) {
        family(b, families[m].name, "counter", families[m].help);
        for (int i = 0; i < g->n_counters; i++)
            if (g->counters[i].metric == (gw_metric)m)
                evbuffer_add_printf(b, "%s{%s} %llu\n", families[m].name, g->counters[i].labels,
                                    (unsigned long long)g->counters[i].value);
    }
    net_prom_hist(b, "kiln_gateway_upstream_latency_seconds",
                  "Time from a request's arrival to the end of its upstream exchange.", "",
                  &g->latency);
    char proc[2048]; /* process_* as kiln serve has them (net/procmetrics.c) */
    evbuffer_add(b, proc, kl_proc_metrics(proc, sizeof proc));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}
