/* server/http.c: the server's life and its small endpoints: listen, load the model on a
 * thread, route requests (auth, method, readiness), /health, /v1/models, /tokenize,
 * /detokenize, and drain on SIGTERM. Generation requests are in server/gen.c, /metrics in
 * server/metrics.c. */
#include "server/internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/version.h"
#include "net/reply.h"
#include "net/status_page.h"

void srv_opts_defaults(srv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->block_size = 16;
    o->kv_type = KL_F16;
    o->drain_timeout_s = 30;
    o->max_body = 4u << 20;
    o->grammar_cache = (size_t)256 << 20;
    o->timeout_s = 60;
    o->max_conns = 4096;
    o->metrics_port = -1;
    o->max_unsent = NET_MAX_UNSENT;
}

void srv_count_status(srv *s, int status)
{
    int k = status / 100;
    if (k >= 1 && k <= 5) s->met.http[k]++;
}

void srv_send_json(srv *s, struct evhttp_request *req, int status, json_t *v)
{
    net_reply_json(req, status, v);
    srv_count_status(s, status);
}

void srv_send_error(srv *s, struct evhttp_request *req, const net_error *e)
{
    net_reply_error(req, e);
    srv_count_status(s, e->status);
}

/* A refusal without a parameter; the type follows from the status (net/error.h). */
static void send_err(srv *s, struct evhttp_request *req, int status, const char *msg)
{
    net_error e;
    net_fail(&e, status, "", "%s", msg);
    srv_send_error(s, req, &e);
}

static void handle_health(srv *s, struct evhttp_request *req)
{
    int st = atomic_load(&s->load_state);
    engine_stats es = {0};
    if (st == SRV_READY) engine_stats_get(s->eng, &es);
    bool ok = st == SRV_READY && !s->draining && !es.model_failed;
    const char *what = s->draining         ? "draining"
                       : es.model_failed   ? "failed" /* its file changed on disk */
                       : st == SRV_READY   ? "ok"
                       : st == SRV_LOADING ? "loading"
                                           : "failed";
    srv_send_json(s, req, ok ? 200 : 503, json_pack("{s:s}", "status", what));
}

/* root is the served name, as vLLM's with --served-model-name: the file's path on this
 * machine is nobody's business outside it. */
static void handle_models(srv *s, struct evhttp_request *req)
{
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:s, s:n, s:i}", "id", s->name, "object", "model",
                          "created", (json_int_t)0, "owned_by", "kiln", "root", s->name, "parent",
                          "max_model_len", s->n_ctx);
    json_t *data = json_pack("[o]", m);
    srv_lora_models(s, data); /* each adapter with its parent, as vLLM lists them */
    srv_send_json(s, req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static const char *body_of(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    return *len ? (const char *)evbuffer_pullup(in, -1) : "";
}

static void handle_tokenize(srv *s, struct evhttp_request *req)
{
    size_t len;
    const char *body = body_of(req, &len);
    srv_req r;
    net_error e = {0};
    if (srv_tokenize_parse(&r, body, len, s->n_vocab, &e)) {
        srv_send_error(s, req, &e);
        return;
    }
    if (r.model && !srv_serves(s, r.model)) {
        net_fail(&e, 404, "model", "The model `%.200s` does not exist.", r.model);
    } else if (!srv_req_tokenize(&r, s->tk, s->tmpl, 0, &e)) {
        json_t *ids = json_array();
        for (int i = 0; i < r.prompts[0].n_ids; i++)
            json_array_append_new(ids, json_integer(r.prompts[0].ids[i]));
        srv_send_json(s, req, 200,
                      json_pack("{s:o, s:i, s:i}", "tokens", ids, "count", r.prompts[0].n_ids,
                                "max_model_len", s->n_ctx));
        srv_req_free(&r);
        return;
    }
    srv_req_free(&r);
    srv_send_error(s, req, &e);
}

static void handle_detokenize(srv *s, struct evhttp_request *req)
{
    size_t len;
    const char *body = body_of(req, &len);
    srv_req r;
    net_error e = {0};
    if (srv_detokenize_parse(&r, body, len, s->n_vocab, &e)) {
        srv_send_error(s, req, &e);
        return;
    }
    if (r.model && !srv_serves(s, r.model)) {
        net_fail(&e, 404, "model", "The model `%.200s` does not exist.", r.model);
        srv_req_free(&r);
        srv_send_error(s, req, &e);
        return;
    }
    size_t n = tok_decode(s->tk, r.prompts[0].ids, r.prompts[0].n_ids, 0, NULL, 0);
    char *text = malloc(n + 1);
    if (!text) {
        srv_req_free(&r);
        send_err(s, req, 503, "out of memory");
        return;
    }
    tok_decode(s->tk, r.prompts[0].ids, r.prompts[0].n_ids, 0, text, n + 1);
    srv_send_json(s, req, 200, json_pack("{s:o}", "prompt", net_json_text(text, n)));
    free(text);
    srv_req_free(&r);
}

enum {
    R_STATUS,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_COMPL,
    R_CHAT,
    R_EMBED,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_VERSION,
    R_LORA_LOAD,
    R_LORA_UNLOAD
};
static const struct {
    const char *path;
    int methods, id;
    bool auth, needs_model;
} routes[] = {
    {"/", EVHTTP_REQ_GET, R_STATUS, false, false},
    {"/health", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, R_HEALTH, false, false},
    {"/metrics", EVHTTP_REQ_GET, R_METRICS, false, false},
    {"/version", EVHTTP_REQ_GET, R_VERSION, false, false},
    {"/v1/models", EVHTTP_REQ_GET, R_MODELS, true, true},
    {"/v1/completions", EVHTTP_REQ_POST, R_COMPL, true, true},
    {"/v1/chat/completions", EVHTTP_REQ_POST, R_CHAT, true, true},
    {"/v1/embeddings", EVHTTP_REQ_POST, R_EMBED, true, true},
    {"/tokenize", EVHTTP_REQ_POST, R_TOKENIZE, true, true},
    {"/detokenize", EVHTTP_REQ_POST, R_DETOKENIZE, true, true},
    {"/v1/load_lora_adapter", EVHTTP_REQ_POST, R_LORA_LOAD, true, true},
    {"/v1/unload_lora_adapter", EVHTTP_REQ_POST, R_LORA_UNLOAD, true, true},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    srv *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    int method = (int)evhttp_request_get_command(req);
    net_conns_touch(s->tracked, evhttp_request_get_connection(req));
    if (net_cors_handle(s->o.cors, req)) return; /* a preflight, answered */
    int r = -1;
    for (size_t i = 0; path && i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(path, routes[i].path)) r = (int)i;
    /* /metrics and the page that reads it live on the admin port when there is one */
    if (r >= 0 && (routes[r].id == R_METRICS || routes[r].id == R_STATUS) && s->admin_http) r = -1;
    if (r < 0) {
        send_err(s, req, 404, "no such path");
        return;
    }
    if (!(routes[r].methods & method)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          routes[r].methods & EVHTTP_REQ_POST ? "POST" : "GET");
        send_err(s, req, 405, "method not allowed on this path");
        return;
    }
    if (routes[r].auth && !net_bearer_ok(req, s->o.api_key)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        send_err(s, req, 401,
                 "a valid API key is required "
                 "(Authorization: Bearer KEY)");
        return;
    }
    int st = atomic_load(&s->load_state);
    if (routes[r].needs_model && (st != SRV_READY || s->draining)) {
        send_err(s, req, 503,
                 s->draining         ? "the server is shutting down"
                 : st == SRV_LOADING ? "the model is loading; try again shortly"
                                     : "the model failed to load");
        return;
    }
    switch (routes[r].id) {
    case R_STATUS:
        net_status_page_send(req);
        break;
    case R_HEALTH:
        handle_health(s, req);
        break;
    case R_METRICS:
        srv_metrics_handle(s, req);
        break;
    case R_VERSION:
        srv_send_json(s, req, 200, json_pack("{s:s}", "version", "kiln " KILN_VERSION));
        break;
    case R_MODELS:
        handle_models(s, req);
        break;
    case R_COMPL:
        srv_gen_handle(s, req, SRV_COMPLETIONS);
        break;
    case R_CHAT:
        srv_gen_handle(s, req, SRV_CHAT);
        break;
    case R_EMBED:
        srv_gen_handle(s, req, SRV_EMBEDDINGS);
        break;
    case R_TOKENIZE:
        handle_tokenize(s, req);
        break;
    case R_DETOKENIZE:
        handle_detokenize(s, req);
        break;
    case R_LORA_LOAD:
    case R_LORA_UNLOAD:
        srv_lora_handle(s, req, routes[r].id == R_LORA_LOAD);
        break;
    }
}

/* The --metrics-port listener: /metrics and nothing else. */
static void on_admin_request(struct evhttp_request *req, void *arg)
{
    srv *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    net_conns_touch(s->admin_conns, evhttp_request_get_connection(req));
    bool page = path && !strcmp(path, "/");
    if (!path || (strcmp(path, "/metrics") && !page)) {
        send_err(s, req, 404, "no such path (this port serves /metrics and the status page /)");
    } else if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        send_err(s, req, 405, "method not allowed on this path");
    } else if (page) {
        net_status_page_send(req);
    } else {
        srv_metrics_handle(s, req);
    }
}

static void log_ready(srv *s)
{
    engine_stats es;
    engine_stats_get(s->eng, &es);
    const model_hparams *hp = s->st.hp;
    char kv_why[160];
    if (es.kv_pool_default)
        snprintf(kv_why, sizeof kv_why,
                 " (default: every sequence at full context, at most 1 GiB and a quarter of the "
                 "%llu MiB available; --kv-mem sets it)",
                 (unsigned long long)(es.kv_mem_avail >> 20));
    else
        snprintf(kv_why, sizeof kv_why, " (--kv-mem)");
    kl_info("serve: ready model=%s path=%s%s arch=%s layers=%d ctx=%d kv_blocks=%d block_tokens=%d "
            "kv_tokens=%lld kv_mem=%lluMiB%s chat_template=%s listening=http://%s:%d",
            s->name, s->st.path, s->st.synthetic ? " (synthetic)" : "", hp->arch, hp->n_layers,
            s->n_ctx, (int)es.kv_blocks_total, es.block_tokens,
            (long long)es.kv_blocks_total * es.block_tokens,
            (unsigned long long)(es.kv_pool_bytes >> 20), kv_why, chat_tmpl_name(s->tmpl),
            s->o.host, s->port);
    if (s->st.synthetic)
        kl_info("serve: this is a small synthetic model with random weights (its text is noise); "
                "serve a real GGUF with: kiln serve -m MODEL.gguf");
}

/* Engine events and the loader's completion both wake the loop here. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    srv *s = arg;
    if (s->loader_started && atomic_load(&s->load_state) != SRV_LOADING) {
        pthread_join(s->loader, NULL);
        s->loader_started = false;
        if (atomic_load(&s->load_state) == SRV_READY) {
            log_ready(s);
        } else {
            kl_error("serve: %s", s->load_err.msg);
            s->exit_code = 1;
            event_base_loopbreak(s->base);
            return;
        }
    }
    srv_gen_drain_events(s);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    srv *s = arg;
    srv_gen_drain_events(s);
    srv_gen_poll_disconnects(s);
    net_conns_sweep(s->tracked, s->o.timeout_s); /* the --timeout deadline (slowloris) */
    if (s->admin_conns) net_conns_sweep(s->admin_conns, s->o.timeout_s);
    if (!s->draining || s->loader_started) return;
    double now = kl_now_s();
    if (!s->calls.n && (!net_conns_unsent(s->tracked) || now > s->drain_deadline)) {
        event_base_loopbreak(s->base); /* after the last bytes of every answer are sent */
    } else if (now > s->drain_deadline && !s->aborted_all) {
        kl_warn("serve: drain timeout: aborting %d requests", s->calls.n);
        srv_gen_abort_all(s);
        s->aborted_all = true;
    } else if (now > s->drain_deadline + 5) {
        event_base_loopbreak(s->base);
    }
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    srv *s = arg;
    if (fd == SIGINT && s->draining) {
        kl_warn("serve: second interrupt: exiting now");
        s->exit_code = 130;
        event_base_loopbreak(s->base);
        return;
    }
    if (s->draining) return;
    s->draining = true;
    s->drain_deadline = kl_now_s() + s->o.drain_timeout_s;
    kl_info("serve: draining %d requests (at most %d s); interrupt again to exit now", s->calls.n,
            s->o.drain_timeout_s);
    net_conns_close_listeners(s->tracked);
}

static void srv_free(srv *s)
{
    if (s->loader_started) pthread_join(s->loader, NULL);
    s->loras.closing = true;
    engine_close(&s->st); /* every request still running gets its last (abort) event */
    s->eng = NULL;
    srv_gen_free_all(s); /* detaches requests from their connections first */
    srv_lora_close(s);   /* after every call that held an adapter */
    if (s->http) evhttp_free(s->http);
    if (s->admin_http) evhttp_free(s->admin_http);
    net_conns_free(s->tracked);
    net_conns_free(s->admin_conns);
    gram_cache_free(s->grams);
    if (s->wake) event_free(s->wake);
    if (s->tick) event_free(s->tick);
    if (s->sigterm) event_free(s->sigterm);
    if (s->sigint) event_free(s->sigint);
    if (s->base) event_base_free(s->base);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int srv_run(const srv_opts *o, kl_err *err)
{
    if (evthread_use_pthreads()) return kl_errf(err, KL_ENOMEM, "libevent: no thread support"), 1;
    srv *s = calloc(1, sizeof *s);
    if (!s) return kl_errf(err, KL_ENOMEM, "out of memory"), 1;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    srv_metrics_init(&s->met);
    s->base = event_base_new();
    /* thousands of idle clients each hold a descriptor; 64 are kept for the process itself */
    int max_conns = net_fd_budget("serve", o->max_conns, 1, 64);
    if (max_conns < 1) {
        srv_free(s);
        return kl_errf(err, KL_EIO,
                       "the open-file limit leaves no room for client connections "
                       "(raise it with ulimit -n)"),
               1;
    }
    s->tracked = net_conns_new("serve", max_conns);
    s->grams = gram_cache_create(o->grammar_cache, NULL);
    s->calls.conns = s->tracked;
    s->loras.calls.conns = s->tracked;
    if (s->tracked) net_conns_limit_unsent(s->tracked, o->max_unsent);
    /* bodies up to twice the limit are read and answered with a JSON 413 by us; beyond that
     * libevent answers 413 itself (and closes) without reading them */
    s->http = s->tracked && s->grams
                  ? net_http_new(s->base, o->max_body * 2, o->timeout_s, on_request, s)
                  : NULL;
    if (o->metrics_port >= 0) { /* /metrics on its own listener */
        s->admin_conns = net_conns_new("serve", 64);
        s->admin_http =
            s->admin_conns ? net_http_new(s->base, 1024, o->timeout_s, on_admin_request, s) : NULL;
    }
    if (!s->http || (o->metrics_port >= 0 && !s->admin_http)) {
        srv_free(s);
        return kl_errf(err, KL_ENOMEM, "cannot create the event loop"), 1;
    }
    s->port = net_conns_listen(s->tracked, s->http, o->host, o->port, err);
    if (s->port >= 0 && s->admin_http)
        s->metrics_port =
            net_conns_listen(s->admin_conns, s->admin_http, o->host, o->metrics_port, err);
    if (s->port < 0 || s->metrics_port < 0) {
        srv_free(s);
        return 1;
    }
    s->wake = event_new(s->base, -1, 0, on_wake, s);
    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    struct timeval tv = {0, 100 * 1000};
    if (!s->wake || !s->tick || !s->sigterm || !s->sigint || evtimer_add(s->tick, &tv) ||
        evsignal_add(s->sigterm, NULL) || evsignal_add(s->sigint, NULL)) {
        srv_free(s);
        return kl_errf(err, KL_ENOMEM, "cannot set up events"), 1;
    }
    signal(SIGPIPE, SIG_IGN);
    kl_info("serve: listening on http://%s:%d (loading %s)", o->host, s->port,
            o->model_path ? o->model_path : "the default synthetic model");
    if (s->admin_http)
        kl_info("serve: /metrics on http://%s:%d only (--metrics-port)", o->host, s->metrics_port);
    if (pthread_create(&s->loader, NULL, srv_load_main, s)) {
        srv_free(s);
        return kl_errf(err, KL_ENOMEM, "cannot start the loader thread"), 1;
    }
    s->loader_started = true;
    event_base_dispatch(s->base);
    int rc = s->exit_code;
    if (rc == 1) *err = s->load_err;
    if (rc == 0) kl_info("serve: drained, exiting");
    srv_free(s);
    return rc;
}
