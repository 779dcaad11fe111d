/* gateway/stats.c: the gateway's own /metrics (Prometheus text) and its error replies.
 * Counters are series strings (name{labels}) with a value, found by linear search: their
 * number is bounded by models x endpoints x statuses x tenants, all from the config. */
#include "gateway/internal.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/procmetrics.h"

#define MAX_SERIES 8192

static const double bucket_le[GW_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,    2.5,   5,    10,  30};

int64_t gw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gw_count(gw *g, const char *fmt, ...)
{
    char series[sizeof g->counters[0].labels];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(series, sizeof series, fmt, ap);
    va_end(ap);
    for (int i = 0; i < g->n_counters; i++)
        if (!strcmp(g->counters[i].labels, series)) {
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
    snprintf(g->counters[g->n_counters].labels, sizeof series, "%s", series);
    g->counters[g->n_counters++].value = 1;
}

void gw_observe_latency(gw *g, double s)
{
    int i = 0;
    while (i < GW_N_BUCKETS && s > bucket_le[i])
        i++;
    g->hist[i]++;
    g->hist_sum += s;
    g->hist_n++;
}

void gw_stats_handle(struct evhttp_request *req, gw *g)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    evbuffer_add_printf(b, "# TYPE kiln_gateway_queue_depth gauge\nkiln_gateway_queue_depth %d\n",
                        g->queue_len);
    evbuffer_add_printf(b, "# TYPE kiln_gateway_inflight gauge\nkiln_gateway_inflight %d\n",
                        g->inflight);
    /* The vLLM names, aggregated over this gateway's endpoints, so that a gateway in front of
     * gateways (a global tier over regional ones) routes by the load of whole regions. */
    double waiting = g->queue_len, running = 0, kv = 0;
    int fresh = 0;
    for (int i = 0; i < g->n_eps; i++) {
        const gw_endpoint *e = &g->eps[i]->e;
        if (!g->eps[i]->live || !gw_endpoint_available(e, gw_now_ns())) continue;
        waiting += e->waiting;
        running += e->running > e->inflight ? e->running : e->inflight;
        kv += e->kv_usage;
        fresh++;
    }
    evbuffer_add_printf(b,
                        "# TYPE vllm:num_requests_waiting gauge\n"
                        "vllm:num_requests_waiting{model_name=\"kiln-gateway\"} %g\n"
                        "# TYPE vllm:num_requests_running gauge\n"
                        "vllm:num_requests_running{model_name=\"kiln-gateway\"} %g\n"
                        "# TYPE vllm:kv_cache_usage_perc gauge\n"
                        "vllm:kv_cache_usage_perc{model_name=\"kiln-gateway\"} %g\n",
                        waiting, running, fresh ? kv / fresh : 1.0);
    evbuffer_add_printf(b, "# TYPE kiln_gateway_endpoint_up gauge\n");
    for (int i = 0; i < g->n_eps; i++)
        if (g->eps[i]->live)
            evbuffer_add_printf(b,
                                "kiln_gateway_endpoint_up{endpoint=\"%s\"} %d\n"
                                "kiln_gateway_endpoint_inflight{endpoint=\"%s\"} %d\n"
                                "kiln_gateway_endpoint_metrics_fresh{endpoint=\"%s\"} %d\n",
                                g->eps[i]->e.cfg->url,
                                gw_endpoint_available(&g->eps[i]->e, gw_now_ns()),
                                g->eps[i]->e.cfg->url, g->eps[i]->e.inflight, g->eps[i]->e.cfg->url,
                                gw_endpoint_fresh(g->cfg, &g->eps[i]->e, gw_now_ns()));
    for (int i = 0; i < g->n_counters; i++)
        evbuffer_add_printf(b, "%s %llu\n", g->counters[i].labels,
                            (unsigned long long)g->counters[i].value);
    evbuffer_add_printf(b, "# TYPE kiln_gateway_upstream_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < GW_N_BUCKETS; i++) {
        cum += g->hist[i];
        evbuffer_add_printf(b, "kiln_gateway_upstream_latency_seconds_bucket{le=\"%g\"} %llu\n",
                            bucket_le[i], (unsigned long long)cum);
    }
    cum += g->hist[GW_N_BUCKETS];
    evbuffer_add_printf(b,
                        "kiln_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "kiln_gateway_upstream_latency_seconds_sum %.6f\n"
                        "kiln_gateway_upstream_latency_seconds_count %llu\n",
                        (unsigned long long)cum, g->hist_sum, (unsigned long long)g->hist_n);
    char proc[2048]; /* process_* as kiln serve has them (net/procmetrics.c) */
    evbuffer_add(b, proc, kl_proc_metrics(proc, sizeof proc));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

void gw_send_error(struct evhttp_request *req, int status, const char *type, const char *msg,
                   int retry_after_s)
{
    gw_send_error_param(req, status, type, msg, retry_after_s, NULL);
}

void gw_send_error_param(struct evhttp_request *req, int status, const char *type, const char *msg,
                         int retry_after_s, const char *param)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:o, s:i}}", "error", "message", msg, "type", type,
                             "param", param ? json_string(param) : json_null(), "code", status);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after_s);
        evhttp_add_header(h, "Retry-After", ra);
    }
    if (b && text) evbuffer_add(b, text, strlen(text));
    evhttp_send_reply(req, status, NULL, b);
    if (b) evbuffer_free(b);
    free(text);
    json_decref(body);
}
