/* gateway/gateway.c: the gateway's life: listen, apply a config (and reload it on SIGHUP
 * without dropping requests), tick health checks, drain on SIGTERM. Requests are handled in
 * gateway/proxy.c. */
#include "gateway/internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/version.h"
#include "net/status_page.h"

static gw_ep *ep_for(gw *g, const gw_endpoint_cfg *cfg)
{
    for (int i = 0; i < g->n_eps; i++)
        if (!strcmp(g->eps[i]->key, cfg->url)) return g->eps[i];
    if (g->n_eps == GW_MAX_ENDPOINTS) return NULL;
    gw_ep *ep = calloc(1, sizeof *ep);
    gw_ep **n = realloc(g->eps, (size_t)(g->n_eps + 1) * sizeof *n);
    if (!ep || !n) {
        free(ep);
        if (n) g->eps = n;
        return NULL;
    }
    g->eps = n;
    snprintf(ep->key, sizeof ep->key, "%s", cfg->url);
    /* One added by a reload is trusted until a check or a request fails (a probe goes out at
     * once): requests must not get 503 for a replica that was just added and is serving. At
     * start, /health stays 503 until a replica has really answered. */
    ep->e.healthy = ep->was_up = g->cfg != NULL;
    ep->e.prefix = gw_lru_set_create(16384);
    g->eps[g->n_eps++] = ep;
    return ep;
}

/* Makes cfg current: endpoints are matched by URL so their health, metrics, prefix sets and
 * in-flight counts carry over; requests in flight keep pointing at valid memory because
 * neither endpoints nor older configs are freed before the gateway is. */
static int apply_config(gw *g, gw_config *cfg, kl_err *err)
{
    gw_model *models = calloc((size_t)cfg->n_models, sizeof *models);
    gw_tenant_state *tenants =
        cfg->n_tenants ? calloc((size_t)cfg->n_tenants, sizeof *tenants) : NULL;
    if (!models || (cfg->n_tenants && !tenants)) {
        free(models);
        free(tenants);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < g->n_eps; i++)
        g->eps[i]->live = false;
    for (int m = 0; m < cfg->n_models; m++) {
        const gw_model_cfg *mc = &cfg->models[m];
        int n = 0;
        for (int p = 0; p < mc->n_pools; p++)
            n += mc->pools[p].n_endpoints;
        models[m].cfg = mc;
        models[m].eps = calloc((size_t)n, sizeof *models[m].eps);
        for (int p = 0; p < mc->n_pools && models[m].eps; p++)
            for (int e = 0; e < mc->pools[p].n_endpoints; e++) {
                gw_ep *ep = ep_for(g, &mc->pools[p].endpoints[e]);
                if (!ep) continue;
                ep->e.cfg = &mc->pools[p].endpoints[e];
                ep->e.model = mc;
                ep->e.pool = &mc->pools[p];
                ep->live = true;
                models[m].eps[models[m].n_eps++] = &ep->e;
            }
    }
    for (int t = 0; t < cfg->n_tenants; t++) {
        gw_tenant_init(&tenants[t], &cfg->tenants[t], kl_now_ns());
        for (int o = 0; g->cfg && o < g->cfg->n_tenants; o++) /* keep buckets across reloads */
            if (!strcmp(g->tenants[o].cfg->name, cfg->tenants[t].name)) {
                tenants[t].requests.tokens = g->tenants[o].requests.tokens;
                tenants[t].tokens.tokens = g->tenants[o].tokens.tokens;
            }
    }
    if (g->cfg) { /* the old state may be in use by requests in flight: keep it */
        gw_retired *r = realloc(g->retired, (size_t)(g->n_retired + 1) * sizeof *r);
        if (!r) {
            for (int m = 0; m < cfg->n_models; m++)
                free(models[m].eps);
            free(models);
            free(tenants);
            return kl_errf(err, KL_ENOMEM, "out of memory");
        }
        g->retired = r;
        g->retired[g->n_retired++] = (gw_retired){g->cfg, g->models, g->tenants};
    }
    g->cfg = cfg;
    g->models = models;
    g->tenants = tenants;
    return 0;
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw *g = arg;
    if (!g->config_path) return;
    gw_config *cfg;
    kl_err err = {0};
    if (gw_config_load(&cfg, g->config_path, &err) || apply_config(g, cfg, &err)) {
        kl_error("gateway: reload failed, keeping the old config: %s", err.msg);
        return;
    }
    kl_info("gateway: reloaded %s (%d models)", g->config_path, cfg->n_models);
    g->last_health_ns = g->last_scrape_ns = 0; /* check and scrape every endpoint now */
    gw_health_tick(g);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gw *g = arg;
    if (g->draining && fd == SIGINT) {
        event_base_loopbreak(g->base); /* second Ctrl-C: now */
        return;
    }
    if (g->draining) return;
    kl_info("gateway: draining %d requests in flight", g->inflight);
    g->draining = true;
    g->drain_deadline_ns = kl_now_ns() + (int64_t)30 * 1000000000;
    net_conns_close_listeners(g->conns);
    gw_queue_fail_all(g, 503, "the gateway is shutting down");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw *g = arg;
    net_conns_sweep(g->conns, g->cfg->client_timeout_ms / 1000.0);
    if (g->admin_conns) net_conns_sweep(g->admin_conns, g->cfg->client_timeout_ms / 1000.0);
    /* exits once every answer's last bytes are sent, not merely handed to libevent */
    if (g->draining &&
        ((g->inflight == 0 && !net_conns_unsent(g->conns)) || kl_now_ns() > g->drain_deadline_ns)) {
        event_base_loopbreak(g->base);
        return;
    }
    gw_health_tick(g);
    gw_poll_disconnects(g);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_queue_pump(arg);
}

static json_t *model_entry(const char *name, json_int_t created)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", name, "object", "model", "created", created,
                     "owned_by", "kiln");
}

/* Every name a client may ask for: the models, then the splits. "created" is when this
 * gateway started (a model has no creation time of its own here; OpenAI's clients read it). */
static void list_models(gw *g, struct evhttp_request *req)
{
    json_t *data = json_array();
    for (int i = 0; i < g->cfg->n_models; i++)
        json_array_append_new(data, model_entry(g->cfg->models[i].name, g->started_s));
    for (int i = 0; i < g->cfg->n_splits; i++)
        json_array_append_new(data, model_entry(g->cfg->splits[i].model, g->started_s));
    net_reply_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void on_request(struct evhttp_request *req, void *arg)
{
    gw *g = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    net_conns_touch(g->conns, evhttp_request_get_connection(req));
    if (net_cors_handle(g->cors ? g->cors : g->cfg->cors, req)) return; /* a preflight */
    bool metrics = path && !strcmp(path, "/metrics") && !g->admin_http; /* else its own port */
    bool status = path && !strcmp(path, "/") && !g->admin_http; /* the page, where /metrics is */
    bool get_path = path && (!strcmp(path, "/health") || metrics || status ||
                             !strcmp(path, "/v1/models") || !strcmp(path, "/version"));
    if (get_path && !get) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        net_reply_fail(req, 405, NULL, "use GET");
    } else if (path && get && !strcmp(path, "/version")) {
        net_reply_json(req, 200, json_pack("{s:s}", "version", "kiln " KILN_VERSION));
    } else if (status && get) {
        net_status_page_send(req);
    } else if (path && get && !strcmp(path, "/health")) {
        int up = 0;
        for (int i = 0; i < g->n_eps; i++)
            up += g->eps[i]->live && gw_endpoint_available(&g->eps[i]->e, kl_now_ns());
        /* not ready with no endpoint up, so a gateway in front of this one fails over */
        net_reply_json(req, g->draining || !up ? 503 : 200,
                       json_pack("{s:s, s:i}", "status",
                                 g->draining ? "draining"
                                 : up        ? "ok"
                                             : "no endpoint up",
                                 "endpoints_up", up));
    } else if (metrics && get) {
        gw_stats_handle(req, g);
    } else if (path && get && !strcmp(path, "/v1/models")) {
        list_models(g, req);
    } else {
        gw_proxy_handle(req, g);
    }
}

/* The listen.metrics_port listener: /metrics and nothing else. */
static void on_admin_request(struct evhttp_request *req, void *arg)
{
    gw *g = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    net_conns_touch(g->admin_conns, evhttp_request_get_connection(req));
    bool page = path && !strcmp(path, "/");
    if (!path || (strcmp(path, "/metrics") && !page))
        net_reply_fail(req, 404, NULL, "no such path (this port serves /metrics and the page /)");
    else if (evhttp_request_get_command(req) != EVHTTP_REQ_GET)
        net_reply_fail(req, 405, NULL, "use GET");
    else if (page)
        net_status_page_send(req);
    else
        gw_stats_handle(req, g);
}

int gw_create(gw **out, gw_config *cfg, const char *config_path, kl_err *err)
{
    *out = NULL;
    gw *g = calloc(1, sizeof *g);
    if (!g) {
        gw_config_free(cfg);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    int rc = apply_config(g, cfg, err);
    if (rc) {
        gw_config_free(cfg);
        free(g);
        return rc;
    }
    g->config_path = config_path ? strdup(config_path) : NULL;
    g->started_s = time(NULL);
    g->base = event_base_new();
    gw_stats_init(g);
    /* a client may hold two descriptors (its own and its upstream's); 64 kept for the rest */
    int max_conns = net_fd_budget("gateway", cfg->max_conns, 2, 64);
    if (max_conns < 1) {
        gw_destroy(g);
        return kl_errf(err, KL_EIO,
                       "the open-file limit leaves no room for client connections "
                       "(raise it with ulimit -n)");
    }
    g->conns = net_conns_new("gateway", max_conns);
    g->calls.conns = g->conns;
    if (g->conns) net_conns_limit_unsent(g->conns, (size_t)cfg->max_unsent);
    int timeout_s = (cfg->client_timeout_ms + 999) / 1000;
    g->http = g->conns ? net_http_new(g->base, GW_MAX_BODY, timeout_s, on_request, g) : NULL;
    if (cfg->metrics_port >= 0) { /* /metrics on its own listener */
        g->admin_conns = net_conns_new("gateway", 64);
        g->admin_http =
            g->admin_conns ? net_http_new(g->base, 1024, timeout_s, on_admin_request, g) : NULL;
    }
    if (!g->http || (cfg->metrics_port >= 0 && !g->admin_http)) {
        gw_destroy(g);
        return kl_errf(err, KL_ENOMEM, "cannot create the event loop");
    }
    g->port = net_conns_listen(g->conns, g->http, cfg->listen_host, cfg->listen_port, err);
    if (g->port >= 0 && g->admin_http)
        g->metrics_port = net_conns_listen(g->admin_conns, g->admin_http, cfg->listen_host,
                                           cfg->metrics_port, err);
    if (g->port < 0 || g->metrics_port < 0) {
        rc = err->code;
        gw_destroy(g);
        return rc;
    }
    g->pump = event_new(g->base, -1, 0, on_pump, g);
    g->tick = event_new(g->base, -1, EV_PERSIST, on_tick, g);
    g->sighup = evsignal_new(g->base, SIGHUP, on_sighup, g);
    g->sigterm = evsignal_new(g->base, SIGTERM, on_stop, g);
    g->sigint = evsignal_new(g->base, SIGINT, on_stop, g);
    int tick_ms = cfg->scrape_interval_ms < cfg->health_interval_ms ? cfg->scrape_interval_ms
                                                                    : cfg->health_interval_ms;
    if (tick_ms > 50) tick_ms = 50;
    struct timeval tv = {0, tick_ms * 1000};
    if (!g->pump || !g->tick || !g->sighup || !g->sigterm || !g->sigint ||
        evtimer_add(g->tick, &tv) || evsignal_add(g->sighup, NULL) ||
        evsignal_add(g->sigterm, NULL) || evsignal_add(g->sigint, NULL)) {
        gw_destroy(g);
        return kl_errf(err, KL_ENOMEM, "cannot set up events");
    }
    *out = g;
    return 0;
}

int gw_port(const gw *g)
{
    return g->port;
}

int gw_run(gw *g)
{
    kl_info("gateway: listening on %s:%d, %d models, %d endpoints", g->cfg->listen_host, g->port,
            g->cfg->n_models, g->n_eps);
    if (g->admin_http)
        kl_info("gateway: /metrics on %s:%d only (metrics_port)", g->cfg->listen_host,
                g->metrics_port);
    gw_health_tick(g);
    event_base_dispatch(g->base);
    kl_info("gateway: stopped");
    return 0;
}

static void free_generation(gw_config *cfg, gw_model *models, gw_tenant_state *tenants)
{
    for (int m = 0; cfg && models && m < cfg->n_models; m++)
        free(models[m].eps);
    free(models);
    free(tenants);
    gw_config_free(cfg);
}

void gw_set_cors(gw *g, net_cors *c)
{
    net_cors_free(g->cors);
    g->cors = c;
}

void gw_destroy(gw *g)
{
    if (!g) return;
    net_cors_free(g->cors);
    if (g->http) evhttp_free(g->http);
    if (g->admin_http) evhttp_free(g->admin_http);
    net_conns_free(g->conns);
    net_conns_free(g->admin_conns);
    for (int i = 0; i < g->n_eps; i++) {
        gw_ep_close_conns(g->eps[i]);
        gw_lru_set_destroy(g->eps[i]->e.prefix);
        free(g->eps[i]);
    }
    free(g->eps);
    if (g->pump) event_free(g->pump);
    if (g->tick) event_free(g->tick);
    if (g->sighup) event_free(g->sighup);
    if (g->sigterm) event_free(g->sigterm);
    if (g->sigint) event_free(g->sigint);
    if (g->base) event_base_free(g->base);
    free_generation(g->cfg, g->models, g->tenants);
    for (int i = 0; i < g->n_retired; i++)
        free_generation(g->retired[i].cfg, g->retired[i].models, g->retired[i].tenants);
    free(g->retired);
    gw_stats_free(g);
    free(g->config_path);
    free(g);
}
