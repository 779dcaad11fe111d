/* gateway/picker.h: choosing an endpoint for a request.
 *
 * Filters first (healthy and not ejected; serves the model's adapter; not saturated), then
 * for a request on an adapter, the endpoints holding it with room first, then
 * a weighted sum of scorers, each in [0, 1], higher is better (an ops table, one entry per
 * scorer, haproxy's lbprm idea): queue depth, KV-cache use, prefix affinity, adapter
 * affinity, in-flight load. The result is every eligible endpoint, best first: the first is
 * the pick, the rest are the retry targets. */
#ifndef KILN_GATEWAY_PICKER_H
#define KILN_GATEWAY_PICKER_H
#include <stdbool.h>
#include <stdint.h>
#include "gateway/affinity.h"
#include "gateway/config.h"
#include "gateway/scrape.h" /* GW_MAX_ADAPTERS */

/* What the gateway knows of one endpoint. Metrics come from scraping its /metrics; inflight
 * is the gateway's own count, always current. */
typedef struct gw_endpoint {
    const gw_endpoint_cfg *cfg;
    const gw_model_cfg *model;
    const gw_pool_cfg *pool;
    /* health */
    bool healthy;             /* last active check passed */
    int64_t ejected_until_ns; /* passive ejection (errors, timeouts) with backoff */
    int consecutive_failures;
    /* scraped metrics; trusted only while fresh */
    int64_t scraped_ns; /* 0: never */
    double waiting, running, kv_usage;
    char adapters[GW_MAX_ADAPTERS][64]; /* adapters the replica reports running, waiting or
                                           resident, and those routed to it since its last
                                           scrape (it is loading them) */
    int n_adapters;
    int64_t adapter_used_ns[GW_MAX_ADAPTERS]; /* when the gateway last routed each there */
    int max_lora; /* adapters it holds at most (vllm:lora_requests_info's max_lora; 0: unknown) */
    /* gateway's own */
    int inflight;
    uint64_t requests, failures;
    gw_lru_set *prefix; /* block hashes recently routed here */
} gw_endpoint;

typedef struct gw_pick_request {
    const char *adapter;    /* NULL: base model */
    const uint64_t *blocks; /* the prompt's chained block hashes */
    int n_blocks;
    bool has_session; /* session affinity: same session → same endpoint while eligible */
    uint64_t session;
    int64_t now_ns;
    uint64_t seq; /* the gateway's request counter (round-robin policy) */
} gw_pick_request;

typedef enum gw_pick_status {
    GW_PICK_OK = 0,
    GW_PICK_SATURATED,   /* endpoints are up but all saturated: queue, shed or fall back */
    GW_PICK_UNAVAILABLE, /* no healthy endpoint serves it */
} gw_pick_status;

typedef struct gw_scorer {
    const char *name;
    /* [0, 1], higher is better. fresh: the endpoint's metrics may be trusted. */
    double (*score)(const gw_pick_request *r, const gw_endpoint *e, bool fresh, const gw_config *c);
} gw_scorer;

/* Ranks eps[0..n) for r into order (best first) and returns how many are eligible (at most
 * n). *status says why there are none. Endpoints of the preferred region (c->region) are
 * ranked before others whenever one of them is eligible. */
int gw_pick(const gw_config *c, gw_endpoint *const *eps, int n, const gw_pick_request *r,
            gw_endpoint **order, gw_pick_status *status);

/* Remembers that adapter was routed to e at now_ns (e loads it there, evicting, when full, the
 * adapter the gateway routed there longest ago: its guess of e's LRU): until e's next scrape
 * says otherwise, e counts as holding it. NULL adapter: nothing. */
void gw_endpoint_note_adapter(gw_endpoint *e, const char *adapter, int64_t now_ns);
/* A scrape's adapter list (names[0..n), what e holds) and max_lora replace e's; the
 * gateway's last-routed times carry over by name. */
void gw_endpoint_set_adapters(gw_endpoint *e, const char (*names)[64], int n, int max_lora);
/* True if e's metrics are fresh and over the saturation thresholds, or e's in-flight count is. */
bool gw_endpoint_saturated(const gw_config *c, const gw_endpoint *e, int64_t now_ns);
bool gw_endpoint_available(const gw_endpoint *e, int64_t now_ns);
/* Its metrics were scraped within scrape_stale_ms: the load scorers trust them. */
bool gw_endpoint_fresh(const gw_config *c, const gw_endpoint *e, int64_t now_ns);
#endif
