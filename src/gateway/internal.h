/* gateway/internal.h: state shared by the gateway's own files (gateway.c, proxy.c,
 * health.c, stats.c). Not for other layers. Everything here lives on the loop thread. */
#ifndef KILN_GATEWAY_INTERNAL_H
#define KILN_GATEWAY_INTERNAL_H
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/hist.h"
#include "net/calls.h"
#include "net/conns.h"
#include "net/reply.h"
#include "gateway/config.h"
#include "gateway/gateway.h"
#include "gateway/limits.h"
#include "gateway/picker.h"

#define GW_MAX_BLOCKS    512         /* prompt blocks hashed for affinity (512 x 64 B = 32 KiB) */
#define GW_MAX_BODY      (8u << 20)  /* a client's request */
#define GW_MAX_ANSWER    (64u << 20) /* a replica's non-streamed answer, collected whole */
#define GW_MAX_ENDPOINTS 1024

typedef struct gw_ep gw_ep;

/* The callback argument of a health check or a scrape. It lives in its endpoint, not on the
 * heap: freeing a connection with a request in flight (at shutdown) runs no callback, so a
 * malloc'd argument would leak. */
typedef struct gw_probe {
    gw *g;
    gw_ep *ep;
    bool health; /* else a scrape */
} gw_probe;

/* An endpoint plus what the loop needs to talk to it. Allocated once per URL and kept until
 * the gateway is destroyed, so requests in flight across a reload never see it freed. */
struct gw_ep {
    gw_endpoint e;
    char key[300]; /* url: identity across reloads */
    bool live;     /* in the current config */
    struct evhttp_connection *scrape_conn, *health_conn;
    gw_probe scrape_probe, health_probe;
    bool scrape_busy, health_busy;
    int health_failures, health_passes; /* consecutive checks of each kind */
    bool was_up;                        /* has passed a check (or was trusted) once */
    double latency_sum_s;
    uint64_t latency_n;
};

/* A model of the current config with its endpoints. */
typedef struct gw_model {
    const gw_model_cfg *cfg;
    gw_endpoint **eps; /* (n_eps) */
    int n_eps;
} gw_model;

typedef struct gw_call gw_call;

/* A config with the state built from it, kept after a reload until the gateway ends. */
typedef struct gw_retired {
    gw_config *cfg;
    gw_model *models;
    gw_tenant_state *tenants;
} gw_retired;

/* Upstream latency histogram buckets (seconds), shared by every endpoint. */
#define GW_N_BUCKETS 12

/* The counter families of the gateway's /metrics; stats.c names and describes them. */
typedef enum gw_metric {
    GW_REQUESTS,       /* model, endpoint, status, tenant */
    GW_PICKS,          /* reason */
    GW_RETRIES,        /* endpoint */
    GW_EJECTIONS,      /* endpoint */
    GW_SHED,           /* reason, tenant */
    GW_FALLBACKS,      /* model, fallback */
    GW_CLIENT_CANCELS, /* model */
    GW_RATE_LIMITED,   /* tenant */
    GW_N_METRICS
} gw_metric;

typedef struct gw_counter {
    gw_metric metric;
    char *labels; /* rendered, values escaped: k="v",... */
    uint64_t value;
} gw_counter;

struct gw {
    struct event_base *base;
    struct evhttp *http;
    net_conns *conns; /* the listener and client connections (net/conns.h) */
    net_cors *cors;   /* --allowed-origins, over the config's listen.allowed_origins (NULL) */
    int port;
    struct evhttp *admin_http; /* listen.metrics_port: /metrics alone; NULL without it */
    net_conns *admin_conns;
    int metrics_port;
    char *config_path;
    gw_config *cfg;      /* current */
    gw_retired *retired; /* earlier generations: requests may still point into them */
    int n_retired;
    gw_ep **eps; /* every endpoint ever configured */
    int n_eps;
    gw_model *models;         /* (cfg->n_models) */
    gw_tenant_state *tenants; /* (cfg->n_tenants) */
    struct event *tick, *sighup, *sigterm, *sigint, *pump;
    bool draining;
    uint64_t picks;    /* requests picked so far (round-robin policy) */
    int64_t started_s; /* Unix time of the start ("created" in /v1/models) */
    int64_t last_scrape_ns, last_health_ns, drain_deadline_ns;
    int inflight;
    uint64_t next_id;
    /* the priority queue of requests waiting for a non-saturated endpoint */
    net_calls calls; /* every call in progress (owner: gw_call), for the disconnect poll */
    gw_call *queue_head;
    int queue_len;
    /* counters for /metrics */
    gw_counter *counters;
    int n_counters, cap_counters;
    kl_hist latency; /* upstream latency (GW_N_BUCKETS bounds) */
};

/* proxy.c */
void gw_proxy_handle(struct evhttp_request *req, void *arg);
/* Tries to dispatch queued requests (after a request ends or metrics change). */
void gw_queue_pump(gw *g);
/* Finds clients that went away before their first byte and cancels their requests. */
void gw_poll_disconnects(gw *g);
/* Fails every queued request (shutdown). */
void gw_queue_fail_all(gw *g, int status, const char *msg);

/* Adds the headers every request to a replica carries: Host, and Authorization when its
 * endpoint has an upstream key. 0 or KL_ENOMEM. */
int gw_upstream_headers(struct evhttp_request *up, const gw_endpoint_cfg *e);

/* health.c: scrape /metrics and check /health of every live endpoint when due. */
void gw_health_tick(gw *g);
void gw_ep_close_conns(gw_ep *ep);

/* stats.c */
/* Adds 1 to the series of family m with the labels given as (name, value) string pairs and a
 * NULL: gw_count(g, GW_RETRIES, "endpoint", url, NULL). Values are escaped for the text
 * format; only values from the config (or a fixed set) may be passed, never a client's. */
void gw_count(gw *g, gw_metric m, ...) __attribute__((sentinel));
void gw_stats_free(gw *g);
void gw_stats_init(gw *g);
void gw_observe_latency(gw *g, double seconds);
void gw_stats_handle(struct evhttp_request *req, gw *g);
#endif
