/* gateway/health.c: what the gateway learns of its endpoints on its own.
 *
 * Every tick, for each live endpoint: GET /metrics when the scrape interval has passed (the
 * waiting/running/KV gauges the picker scores), GET /health when the health interval has.
 * One request of each kind in flight per endpoint, each on its own kept-alive connection,
 * with timeouts. Failed or non-200 health checks mark the endpoint down, passing ones bring
 * it back (with hysteresis, set_health) and clear passive ejection (gateway/proxy.c), because
 * they are the ground truth that the replica answers again. */
#include "gateway/internal.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/scrape.h"

static struct evhttp_connection *conn_for(gw *g, gw_ep *ep, struct evhttp_connection **slot,
                                          int timeout_ms)
{
    if (!*slot) {
        *slot = evhttp_connection_base_new(g->base, NULL, ep->e.cfg->host,
                                           (unsigned short)ep->e.cfg->port);
        if (!*slot) return NULL;
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evhttp_connection_set_timeout_tv(*slot, &tv);
        evhttp_connection_set_retries(*slot, 0);
    }
    return *slot;
}

/* Hysteresis: an endpoint goes down after health.unhealthy_threshold failed checks in a row
 * and comes back after health.healthy_threshold passing ones, so a replica that fails every
 * other check does not flip in and out of rotation. One that has never been up (at start) is
 * admitted on its first pass: there is nothing to flap yet. A passing check of an endpoint
 * that is up clears passive ejection (proxy.c): the replica answers again. */
static void set_health(gw *g, gw_ep *ep, bool ok)
{
    const gw_config *cfg = g->cfg;
    if (ok) {
        ep->health_failures = 0;
        if (ep->health_passes < 100) ep->health_passes++; /* thresholds are at most 100 */
        if (!ep->e.healthy && ep->was_up && ep->health_passes < cfg->healthy_threshold) return;
        if (!ep->e.healthy) kl_info("gateway: endpoint %s is up", ep->e.cfg->url);
        ep->e.healthy = ep->was_up = true;
        ep->e.ejected_until_ns = 0;
        ep->e.consecutive_failures = 0;
        event_active(g->pump, 0, 0);
    } else {
        ep->health_passes = 0;
        if (ep->health_failures < 100) ep->health_failures++;
        if (!ep->e.healthy || ep->health_failures < cfg->unhealthy_threshold) return;
        kl_warn("gateway: endpoint %s is down", ep->e.cfg->url);
        ep->e.healthy = false;
        ep->e.scraped_ns = 0; /* its metrics are no longer current */
    }
}

static void on_probe_done(struct evhttp_request *req, void *arg)
{
    gw_probe *p = arg;
    gw_ep *ep = p->ep;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (p->health) {
        ep->health_busy = false;
        set_health(p->g, ep, code == 200);
    } else {
        ep->scrape_busy = false;
        gw_scrape s;
        struct evbuffer *b = req ? evhttp_request_get_input_buffer(req) : NULL;
        size_t n = b ? evbuffer_get_length(b) : 0;
        if (code == 200 && n <= (4u << 20) &&
            gw_scrape_parse((const char *)evbuffer_pullup(b, -1), n, &s)) {
            ep->e.waiting = s.waiting;
            ep->e.running = s.running;
            ep->e.kv_usage = s.has_kv ? s.kv_usage : 0;
            gw_endpoint_set_adapters(&ep->e, s.adapters, s.n_adapters, s.max_lora);
            ep->e.scraped_ns = kl_now_ns();
            event_active(p->g->pump, 0, 0);
        }
    }
}

static void send_probe(gw *g, gw_ep *ep, bool health)
{
    struct evhttp_connection *conn =
        conn_for(g, ep, health ? &ep->health_conn : &ep->scrape_conn,
                 health ? g->cfg->health_timeout_ms : g->cfg->scrape_timeout_ms);
    if (!conn) return;
    gw_probe *p = health ? &ep->health_probe : &ep->scrape_probe;
    *p = (gw_probe){g, ep, health};
    struct evhttp_request *req = evhttp_request_new(on_probe_done, p);
    if (!req) return;
    if (gw_upstream_headers(req, ep->e.cfg)) {
        evhttp_request_free(req);
        return;
    }
    if (evhttp_make_request(conn, req, EVHTTP_REQ_GET, health ? "/health" : "/metrics") != 0)
        return; /* libevent freed req */
    if (health)
        ep->health_busy = true;
    else
        ep->scrape_busy = true;
}

void gw_health_tick(gw *g)
{
    int64_t now = kl_now_ns();
    bool scrape = now - g->last_scrape_ns >= (int64_t)g->cfg->scrape_interval_ms * 1000000;
    bool health = now - g->last_health_ns >= (int64_t)g->cfg->health_interval_ms * 1000000;
    if (scrape) g->last_scrape_ns = now;
    if (health) g->last_health_ns = now;
    for (int i = 0; i < g->n_eps; i++) {
        gw_ep *ep = g->eps[i];
        if (!ep->live) continue;
        if (health && !ep->health_busy) send_probe(g, ep, true);
        if (scrape && !ep->scrape_busy && ep->e.healthy) send_probe(g, ep, false);
    }
}

void gw_ep_close_conns(gw_ep *ep)
{
    if (ep->scrape_conn) evhttp_connection_free(ep->scrape_conn);
    if (ep->health_conn) evhttp_connection_free(ep->health_conn);
    ep->scrape_conn = ep->health_conn = NULL;
}
