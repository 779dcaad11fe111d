/* gateway/proxy.c: one client request through the gateway.
 *
 *   parse (once) → authenticate + rate-limit → resolve model (split, adapter) → pick
 *     ├─ OK: forward to the best endpoint; on failure before the first byte, the next one
 *     ├─ SATURATED: fallback model if it has room, else wait in the priority queue (bounded)
 *     └─ UNAVAILABLE: fallback model, else 503
 *   upstream bytes are passed to the client chunk by chunk as they arrive. A failure after
 *   the first byte ends a stream with an SSE error event and no [DONE]. A client that goes
 *   away cancels the upstream request.
 *
 * A non-streamed answer is collected whole before the client sees a byte of it, so a replica
 * that fails in the middle of one (reset, bad chunk, short Content-Length) is a failure like
 * any other before the first byte: retried elsewhere, else 502, never a truncated 200.
 *
 * Connections to replicas are made per request (never reused after an answer, good or bad)
 * and freed from the loop (never inside their own callbacks). */
#include "gateway/internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <xxhash.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/request.h"

struct gw_call {
    gw *g;
    uint64_t id;
    net_call nc;  /* the client's request (NULL once it went away or was answered) */
    json_t *body; /* the request, parsed once; "model"/"cache_salt" rewritten as needed */
    char path[32];
    char requested[256]; /* the model the client asked for */
    const gw_model *model;
    const char *adapter;
    gw_tenant_state *tenant;
    int priority;
    bool stream;
    uint64_t blocks[GW_MAX_BLOCKS];
    int n_blocks;
    bool has_session;
    uint64_t session;
    gw_endpoint *order[GW_MAX_ENDPOINTS]; /* ranked targets of the current model */
    int n_order, next;
    gw_ep *cur;
    struct evhttp_connection *up_conn;
    struct evhttp_request *up_req;
    struct event *attempt_timer; /* the attempt's connect and first-byte deadlines */
    int64_t attempt_t0_ns;
    bool connected, got_headers; /* of the current attempt */
    bool up_failed, started, discard, fallback;
    bool busy_seen; /* an endpoint answered 429: its queue is full, it is not broken */
    int up_status, status, attempts;
    int64_t t0_ns, t_first_ns;
    struct event *timer; /* queue wait limit */
    gw_call *qnext;
    bool queued;
};

/* Detaches the client's request from the call (before its final reply, which may free the
 * connection) and returns it; NULL when the client already went away. */
static struct evhttp_request *take_down(gw_call *c)
{
    return net_call_take(&c->g->calls, &c->nc);
}

static const char *tenant_name(const gw_call *c)
{
    return c->tenant ? c->tenant->cfg->name : "-";
}

/* The model a metric names: the client's name only once it resolved to one the config has,
 * so a client can neither create series nor put its bytes into /metrics. */
static const char *model_label(const gw_call *c)
{
    return c->model ? c->requested : "(unknown)";
}

/* Ends the call: access log, counters, and the client's callbacks detached. */
static void call_finish(gw_call *c)
{
    gw *g = c->g;
    double total_ms = (double)(kl_now_ns() - c->t0_ns) / 1e6;
    double ttfb_ms = c->t_first_ns ? (double)(c->t_first_ns - c->t0_ns) / 1e6 : -1;
    const char *ep = c->cur ? c->cur->e.cfg->url : "-";
    char id[32];
    snprintf(id, sizeof id, "gw-%llu", (unsigned long long)c->id);
    kl_rec r; /* the model is the client's choice: every value is escaped */
    kl_rec_begin(&r, KL_LOG_INFO, "gateway request");
    kl_rec_str(&r, "id", id);
    kl_rec_str(&r, "tenant", tenant_name(c));
    kl_rec_str(&r, "model", c->requested);
    kl_rec_str(&r, "target", c->model ? c->model->cfg->name : "-");
    kl_rec_str(&r, "endpoint", ep);
    kl_rec_int(&r, "status", c->status);
    kl_rec_int(&r, "attempts", c->attempts);
    kl_rec_num(&r, "ttfb_ms", ttfb_ms);
    kl_rec_num(&r, "total_ms", total_ms);
    if (c->fallback) kl_rec_int(&r, "fallback", 1);
    kl_rec_end(&r);
    char status[16];
    snprintf(status, sizeof status, "%d", c->status);
    gw_count(g, GW_REQUESTS, "model", model_label(c), "endpoint", ep, "status", status, "tenant",
             tenant_name(c), NULL);
    net_calls_remove(&g->calls, &c->nc);
    if (c->timer) event_free(c->timer);
    if (c->attempt_timer) event_free(c->attempt_timer);
    json_decref(c->body);
    free(c);
    event_active(g->pump, 0, 0); /* queued requests may fit now; never recurse from here */
}

/* Answers the call with an error (its type from the status: net/error.h) and ends it;
 * retry_after > 0 is sent as Retry-After. */
static void reply_error_param(gw_call *c, int status, const char *msg, int retry_after,
                              const char *param)
{
    c->status = status;
    struct evhttp_request *d = take_down(c);
    if (d) {
        net_error e;
        net_fail(&e, status, param, "%s", msg);
        e.retry_after_s = retry_after;
        net_reply_error(d, &e);
    }
    call_finish(c);
}

static void reply_error(gw_call *c, int status, const char *msg, int retry_after)
{
    reply_error_param(c, status, msg, retry_after, NULL);
}

/* ---------------------------------------------------------------- queue ---- */

static void queue_remove(gw_call *c)
{
    gw *g = c->g;
    for (gw_call **p = &g->queue_head; *p; p = &(*p)->qnext)
        if (*p == c) {
            *p = c->qnext;
            g->queue_len--;
            break;
        }
    c->queued = false;
    c->qnext = NULL;
    if (c->timer) event_del(c->timer);
}

static void queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_call *c = arg;
    queue_remove(c);
    gw_count(c->g, GW_SHED, "reason", "queue_timeout", "tenant", tenant_name(c), NULL);
    reply_error(c, 429, "all endpoints are saturated; try again later", 1);
}

/* Inserts c by priority (higher first), FCFS within a priority. When the queue is full, the
 * lowest-priority, latest request is shed: c itself unless something queued ranks below it. */
static void queue_push(gw_call *c)
{
    gw *g = c->g;
    if (g->queue_len >= g->cfg->queue_max) {
        gw_call *last = NULL;
        for (gw_call *q = g->queue_head; q; q = q->qnext)
            last = q;
        if (!last || last->priority >= c->priority) {
            gw_count(g, GW_SHED, "reason", "queue_full", "tenant", tenant_name(c), NULL);
            reply_error(c, 429, "gateway queue is full; try again later", 1);
            return;
        }
        queue_remove(last);
        gw_count(g, GW_SHED, "reason", "preempted", "tenant", tenant_name(last), NULL);
        reply_error(last, 429, "shed for higher-priority traffic; try again later", 1);
    }
    gw_call **p = &g->queue_head;
    while (*p && (*p)->priority >= c->priority)
        p = &(*p)->qnext;
    c->qnext = *p;
    *p = c;
    c->queued = true;
    g->queue_len++;
    if (!c->timer) c->timer = evtimer_new(g->base, queue_timeout_cb, c);
    struct timeval tv = {g->cfg->queue_max_wait_ms / 1000,
                         (g->cfg->queue_max_wait_ms % 1000) * 1000};
    if (c->timer) evtimer_add(c->timer, &tv);
}

/* ------------------------------------------------------------- upstream ---- */

static void start_attempt(gw_call *c);
static void dispatch(gw_call *c);

/* Ends the current attempt's hold on its endpoint: in-flight counts, deadline, connection
 * (freed on the next loop turn; libevent frees the request itself). */
static void release_endpoint(gw_call *c)
{
    if (c->cur && c->up_req) {
        c->cur->e.inflight--;
        c->g->inflight--;
    }
    c->up_req = NULL;
    if (c->attempt_timer) evtimer_del(c->attempt_timer);
    if (c->up_conn) net_conn_free_later(c->g->base, c->up_conn);
    c->up_conn = NULL;
}

static struct timeval ms_tv(int64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* The headers a client gets from the replica's answer: its type and Retry-After, nothing
 * else (hop-by-hop and internal headers stop here). */
static void copy_headers(const gw_call *c, struct evhttp_request *up, struct evhttp_request *down)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(down);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(up), "Content-Type");
    evhttp_add_header(out, "Content-Type", ct ? ct : "application/json");
    if (c->stream) evhttp_add_header(out, "Cache-Control", "no-cache");
    if (c->fallback) evhttp_add_header(out, "X-Kiln-Fallback", c->model->cfg->name);
    const char *ra = evhttp_find_header(evhttp_request_get_input_headers(up), "Retry-After");
    if (ra) evhttp_add_header(out, "Retry-After", ra);
}

static int on_up_headers(struct evhttp_request *up, void *arg)
{
    gw_call *c = arg;
    c->up_status = evhttp_request_get_response_code(up);
    c->got_headers = true;
    c->t_first_ns = kl_now_ns();
    if (c->attempt_timer) evtimer_del(c->attempt_timer);
    struct timeval idle = ms_tv(c->g->cfg->idle_timeout_ms); /* from now on, silence is bounded */
    evhttp_connection_set_timeout_tv(c->up_conn, &idle);
    /* 5xx, 429 (that replica's queue is full), 401 (it refused the gateway's key: the
     * client's own key never goes upstream) and nonsense are retried elsewhere once the body
     * is done; other statuses (a 400 for a bad parameter) are the answer. */
    if (c->up_status == 401)
        kl_warn("gateway: endpoint %s refused the gateway's credentials (401): check its "
                "pool's api_key_file or api_key_env",
                c->cur->e.cfg->url);
    if (c->up_status >= 500 || c->up_status == 429 || c->up_status == 401 || c->up_status < 100) {
        c->discard = true;
        return 0;
    }
    if (!c->nc.req || !c->stream) return 0; /* a whole answer is sent from on_up_done */
    copy_headers(c, up, c->nc.req);
    c->started = true;
    evhttp_send_reply_start(c->nc.req, c->up_status, evhttp_request_get_response_code_line(up));
    return 0;
}

static void on_up_chunk(struct evhttp_request *up, void *arg)
{
    gw_call *c = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(up);
    if (c->discard || !c->nc.req || !c->started)
        evbuffer_drain(in, evbuffer_get_length(in));
    else
        evhttp_send_reply_chunk(c->nc.req, in);
}

static void on_up_error(enum evhttp_request_error err, void *arg)
{
    gw_call *c = arg;
    (void)err;
    c->up_failed = true;
}

/* Passive health: a failed exchange ejects the endpoint with exponential backoff. */
static void mark_failure(gw *g, gw_ep *ep)
{
    gw_endpoint *e = &ep->e;
    e->failures++;
    int k = e->consecutive_failures < 16 ? e->consecutive_failures : 16;
    e->consecutive_failures++;
    int64_t ms = (int64_t)g->cfg->eject_ms << k;
    if (ms > g->cfg->eject_max_ms) ms = g->cfg->eject_max_ms;
    e->ejected_until_ns = kl_now_ns() + ms * 1000000;
    gw_count(g, GW_EJECTIONS, "endpoint", e->cfg->url, NULL);
}

/* The attempt on c->cur failed (its endpoint released already). Before the client's first
 * byte the request moves on to the next endpoint; after it, the answer ends: a stream with
 * an SSE error event and no [DONE]. busy: the endpoint only said its queue was full (429),
 * so it stays in rotation. */
static void attempt_failed(gw_call *c, bool busy)
{
    gw *g = c->g;
    gw_ep *ep = c->cur;
    if (busy)
        c->busy_seen = true;
    else
        mark_failure(g, ep);
    if (!c->started) {
        gw_count(g, GW_RETRIES, "endpoint", ep->e.cfg->url, NULL);
        if (c->nc.req)
            start_attempt(c);
        else
            call_finish(c);
        return;
    }
    /* It names no endpoint: internal addresses stay out of answers (the log has it). */
    if (c->nc.req && c->stream) {
        net_error e;
        net_fail(&e, 502, NULL, "the upstream replica failed mid-stream");
        net_sse_error(c->nc.req, &e);
    }
    c->status = 502;
    struct evhttp_request *d = take_down(c);
    if (d) evhttp_send_reply_end(d);
    call_finish(c);
}

static void on_up_done(struct evhttp_request *up, void *arg)
{
    gw_call *c = arg;
    gw *g = c->g;
    bool failed = !up || c->up_failed || c->discard || evhttp_request_get_response_code(up) == 0;
    bool busy = up && !c->up_failed && c->discard && c->up_status == 429;
    gw_observe_latency(g, (double)(kl_now_ns() - c->t0_ns) * 1e-9);
    release_endpoint(c); /* libevent frees up after this callback */
    if (failed) {
        attempt_failed(c, busy);
        return;
    }
    c->cur->e.consecutive_failures = 0;
    c->status = c->up_status;
    struct evhttp_request *d = take_down(c);
    if (d && !c->stream) { /* the whole answer, complete: now the client may have it */
        copy_headers(c, up, d);
        evhttp_send_reply(d, c->up_status, evhttp_request_get_response_code_line(up),
                          evhttp_request_get_input_buffer(up));
    } else if (d) {
        evhttp_send_reply_end(d);
    }
    call_finish(c);
}

static bool up_connected(const gw_call *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->up_conn);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    return fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
}

/* An attempt's deadlines: connected within retry.connect_timeout_ms of its start (a replica
 * behind a black hole), response headers within retry.first_byte_timeout_ms (a hung one).
 * Past either, the attempt fails like any other before the first byte. */
static void on_attempt_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gw_call *c = arg;
    const gw_config *cfg = c->g->cfg;
    if (!c->up_req || c->got_headers) return;
    int64_t elapsed_ms = (kl_now_ns() - c->attempt_t0_ns) / 1000000;
    if (!c->connected) c->connected = up_connected(c);
    if (c->connected && elapsed_ms < cfg->first_byte_timeout_ms) {
        struct timeval tv = ms_tv(cfg->first_byte_timeout_ms - elapsed_ms);
        evtimer_add(c->attempt_timer, &tv);
        return;
    }
    kl_warn("gateway: request id=gw-%llu endpoint=%s: %s after %lld ms", (unsigned long long)c->id,
            c->cur->e.cfg->url, c->connected ? "no response headers" : "not connected",
            (long long)elapsed_ms);
    evhttp_cancel_request(c->up_req); /* frees it; on_up_done is not called */
    release_endpoint(c);
    attempt_failed(c, false);
}

int gw_upstream_headers(struct evhttp_request *up, const gw_endpoint_cfg *e)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(up);
    char host[300];
    snprintf(host, sizeof host, "%s:%d", e->host, e->port);
    if (evhttp_add_header(h, "Host", host)) return KL_ENOMEM;
    if (!e->api_key) return 0;
    size_t n = strlen(e->api_key) + sizeof "Bearer ";
    char *auth = malloc(n);
    if (!auth) return KL_ENOMEM;
    snprintf(auth, n, "Bearer %s", e->api_key);
    int rc = evhttp_add_header(h, "Authorization", auth) ? KL_ENOMEM : 0;
    explicit_bzero(auth, n);
    free(auth);
    return rc;
}

/* Sends the request to the next ranked endpoint; replies with an error when none is left. */
static void start_attempt(gw_call *c)
{
    gw *g = c->g;
    int64_t now = kl_now_ns();
    c->discard = c->up_failed = false;
    while (c->next < c->n_order && c->attempts < g->cfg->retry_attempts &&
           now - c->t0_ns < (int64_t)g->cfg->retry_budget_ms * 1000000) {
        gw_ep *ep = (gw_ep *)c->order[c->next++]; /* gw_endpoint is gw_ep's first member */
        if (!ep->e.healthy) continue;
        if (!c->attempt_timer && !(c->attempt_timer = evtimer_new(g->base, on_attempt_timer, c)))
            break;
        struct evhttp_connection *conn = evhttp_connection_base_new(
            g->base, NULL, ep->e.cfg->host, (unsigned short)ep->e.cfg->port);
        if (!conn) continue;
        /* until the headers, libevent's inactivity timer is no shorter than the first-byte
         * deadline (a long prefill is silent); on_up_headers sets idle_timeout_ms */
        int64_t wait_ms = g->cfg->first_byte_timeout_ms > g->cfg->idle_timeout_ms
                              ? g->cfg->first_byte_timeout_ms
                              : g->cfg->idle_timeout_ms;
        struct timeval tv = ms_tv(wait_ms);
        evhttp_connection_set_timeout_tv(conn, &tv);
        evhttp_connection_set_retries(conn, 0);
        if (!c->stream) evhttp_connection_set_max_body_size(conn, GW_MAX_ANSWER);
        struct evhttp_request *up = evhttp_request_new(on_up_done, c);
        if (!up) {
            evhttp_connection_free(conn);
            continue;
        }
        evhttp_request_set_header_cb(up, on_up_headers);
        /* a stream passes through chunk by chunk; a whole answer is collected */
        if (c->stream) evhttp_request_set_chunked_cb(up, on_up_chunk);
        evhttp_request_set_error_cb(up, on_up_error);
        struct evkeyvalq *h = evhttp_request_get_output_headers(up);
        char rid[32];
        snprintf(rid, sizeof rid, "gw-%llu", (unsigned long long)c->id);
        if (gw_upstream_headers(up, ep->e.cfg)) {
            evhttp_request_free(up);
            evhttp_connection_free(conn);
            continue;
        }
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "Accept", c->stream ? "text/event-stream" : "application/json");
        evhttp_add_header(h, "X-Request-Id", rid);
        char *json = json_dumps(c->body, JSON_COMPACT);
        if (json) evbuffer_add(evhttp_request_get_output_buffer(up), json, strlen(json));
        free(json);
        c->cur = ep;
        c->attempts++;
        if (evhttp_make_request(conn, up, EVHTTP_REQ_POST, c->path) != 0) {
            evhttp_connection_free(conn);
            mark_failure(g, ep);
            continue;
        }
        c->up_conn = conn;
        c->up_req = up;
        c->connected = c->got_headers = false;
        c->attempt_t0_ns = kl_now_ns();
        int64_t first_ms = g->cfg->connect_timeout_ms < g->cfg->first_byte_timeout_ms
                               ? g->cfg->connect_timeout_ms
                               : g->cfg->first_byte_timeout_ms;
        struct timeval deadline = ms_tv(first_ms);
        evtimer_add(c->attempt_timer, &deadline);
        ep->e.inflight++;
        ep->e.requests++;
        g->inflight++;
        if (ep->e.prefix && c->n_blocks) gw_lru_set_add(ep->e.prefix, c->blocks, c->n_blocks);
        gw_endpoint_note_adapter(&ep->e, c->adapter, c->attempt_t0_ns);
        return;
    }
    if (c->busy_seen) /* as a replica with a full queue says it: try again shortly */
        reply_error(c, 429, "every endpoint tried is busy; try again later", 1);
    else
        reply_error(c, 502, "every endpoint tried failed", 0);
}

/* ------------------------------------------------------------ dispatch ---- */

static bool pick(gw_call *c, const gw_model *m, gw_pick_status *st)
{
    gw_pick_request r = {.adapter = c->adapter,
                         .blocks = c->blocks,
                         .n_blocks = c->n_blocks,
                         .has_session = c->has_session,
                         .session = c->session,
                         .now_ns = kl_now_ns(),
                         .seq = c->g->picks++};
    c->n_order = gw_pick(c->g->cfg, m->eps, m->n_eps, &r, c->order, st);
    c->next = 0;
    return c->n_order > 0;
}

static const gw_model *find_model(gw *g, const char *name)
{
    for (int i = 0; i < g->cfg->n_models; i++)
        if (!strcmp(g->models[i].cfg->name, name)) return &g->models[i];
    return NULL;
}

/* Routes to the fallback model, rewriting the body's model. Returns true if it has room. */
static bool try_fallback(gw_call *c)
{
    const char *fb = c->model->cfg->fallback;
    const gw_model *m = fb ? find_model(c->g, fb) : NULL;
    gw_pick_status st;
    if (!m || !pick(c, m, &st)) return false;
    c->model = m;
    c->fallback = true;
    c->adapter = NULL;
    json_object_set_new(c->body, "model", json_string(m->cfg->name));
    gw_count(c->g, GW_FALLBACKS, "model", model_label(c), "fallback", fb, NULL);
    return true;
}

static void dispatch(gw_call *c)
{
    gw_pick_status st;
    if (pick(c, c->model, &st)) {
        gw_count(c->g, GW_PICKS, "reason",
                 c->has_session ? "session"
                 : c->n_blocks  ? "scored_prefix"
                                : "scored",
                 NULL);
        start_attempt(c);
    } else if (try_fallback(c)) {
        start_attempt(c);
    } else if (st == GW_PICK_SATURATED) {
        queue_push(c);
    } else {
        reply_error(c, 503, "no healthy endpoint serves this model", 5);
    }
}

/* Starts every queued request that now has an endpoint, in queue order. Runs from the pump
 * event, so a request that finishes inside never re-enters it. Bounded: the queue is. */
void gw_queue_pump(gw *g)
{
    for (bool progress = true; progress;) {
        progress = false;
        for (gw_call *c = g->queue_head; c; c = c->qnext) {
            gw_pick_status st;
            if (pick(c, c->model, &st)) {
                queue_remove(c);
                start_attempt(c);
            } else if (st == GW_PICK_UNAVAILABLE) {
                queue_remove(c);
                reply_error(c, 503, "no healthy endpoint serves this model", 5);
            } else {
                continue;
            }
            progress = true;
            break;
        }
    }
}

void gw_queue_fail_all(gw *g, int status, const char *msg)
{
    while (g->queue_head) {
        gw_call *c = g->queue_head;
        queue_remove(c);
        reply_error(c, status, msg, 1);
    }
}

/* -------------------------------------------------------------- parsing ---- */

static void on_down_close(struct evhttp_connection *conn, void *arg)
{
    gw_call *c = arg;
    (void)conn;
    net_call_lost(&c->g->calls, &c->nc);
    if (c->queued) {
        queue_remove(c);
        c->status = 499;
        call_finish(c);
    } else if (c->up_req) {
        evhttp_cancel_request(c->up_req);
        release_endpoint(c);
        c->status = 499;
        gw_count(c->g, GW_CLIENT_CANCELS, "model", model_label(c), NULL);
        call_finish(c);
    }
    /* otherwise an upstream callback is about to finish the call */
}

static bool watched(const net_call *n)
{
    const gw_call *c = n->owner;
    return !c->started; /* after the first byte, a write finds the close */
}

/* A client gave up before the first byte (during a long prefill, or in the queue): the
 * request is answered with 499, which lets libevent fail and free the connection, and the
 * upstream request is cancelled. */
static void client_gone(net_call *n)
{
    gw_call *c = n->owner;
    if (c->queued) queue_remove(c);
    if (c->up_req) {
        evhttp_cancel_request(c->up_req);
        release_endpoint(c);
    }
    gw_count(c->g, GW_CLIENT_CANCELS, "model", model_label(c), NULL);
    reply_error(c, 499, "client closed the connection", 0);
}

void gw_poll_disconnects(gw *g)
{
    net_calls_poll(&g->calls, watched, client_gone);
}

/* A split alias picks one target model at random by weight. */
static const gw_model *resolve_split(gw *g, const gw_split_cfg *s)
{
    double total = 0;
    for (int i = 0; i < s->n_targets; i++)
        total += s->targets[i].weight;
    double x = (double)(XXH3_64bits(&g->next_id, sizeof g->next_id) >> 11) * 0x1.0p-53 * total;
    for (int i = 0; i < s->n_targets; i++) {
        if (x < s->targets[i].weight) return find_model(g, s->targets[i].model);
        x -= s->targets[i].weight;
    }
    return find_model(g, s->targets[s->n_targets - 1].model);
}

/* A model by name, a split alias, or an adapter some model's pools serve. */
static bool resolve_model(gw_call *c, const char *name)
{
    gw *g = c->g;
    const gw_split_cfg *s = gw_config_split(g->cfg, name);
    if (s) {
        c->model = resolve_split(g, s);
        if (c->model) json_object_set_new(c->body, "model", json_string(c->model->cfg->name));
        return c->model != NULL;
    }
    if ((c->model = find_model(g, name))) return true;
    for (int i = 0; i < g->cfg->n_models; i++)
        for (int p = 0; p < g->models[i].cfg->n_pools; p++)
            for (int a = 0; a < g->models[i].cfg->pools[p].n_adapters; a++)
                if (!strcmp(g->models[i].cfg->pools[p].adapters[a], name)) {
                    c->model = &g->models[i];
                    c->adapter = g->models[i].cfg->pools[p].adapters[a];
                    return true;
                }
    return false;
}

static gw_tenant_state *authenticate(gw *g, struct evhttp_request *req)
{
    size_t len;
    const char *key = net_bearer(req, &len);
    return key ? gw_tenant_find(g->tenants, g->cfg->n_tenants, key, len) : NULL;
}

void gw_proxy_handle(struct evhttp_request *req, void *arg)
{
    gw *g = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool chat = path && !strcmp(path, "/v1/chat/completions");
    if (!path || (!chat && strcmp(path, "/v1/completions"))) {
        net_reply_fail(req, 404, NULL, "no such path");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        net_reply_fail(req, 405, NULL, "use POST");
        return;
    }
    if (g->draining) {
        net_reply_fail(req, 503, NULL, "the gateway is shutting down");
        return;
    }
    gw_tenant_state *tenant = NULL;
    if (g->cfg->n_tenants && !(tenant = authenticate(g, req))) {
        net_reply_fail(req, 401, NULL, "a valid API key is required");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    gw_request_info info;
    kl_err err = {0};
    if (gw_request_parse(&info, (const char *)evbuffer_pullup(in, -1), len, chat, &err)) {
        net_error e;
        net_fail_kl(&e, &err); /* 400 naming the parameter; 503 when out of memory */
        e.retry_after_s = 0;
        net_reply_error(req, &e);
        return;
    }
    gw_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_request_info_free(&info);
        net_reply_fail(req, 503, NULL, "out of memory");
        return;
    }
    c->g = g;
    c->id = ++g->next_id;
    c->nc.owner = c;
    c->nc.req = req;
    net_calls_add(&g->calls, &c->nc);
    c->body = info.body; /* the call owns it now */
    info.body = NULL;
    c->t0_ns = kl_now_ns();
    c->tenant = tenant;
    c->priority = tenant ? tenant->cfg->priority : 0;
    c->stream = info.stream;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->requested, sizeof c->requested, "%s", info.model);
    net_call_watch(&g->calls, &c->nc, on_down_close, c);
    if (!c->requested[0]) { /* no "model": the only name there is, as a single replica does */
        const char *only = g->cfg->n_models + g->cfg->n_splits != 1 ? NULL
                           : g->cfg->n_models                       ? g->cfg->models[0].name
                                                                    : g->cfg->splits[0].model;
        if (!only) {
            gw_request_info_free(&info);
            reply_error_param(
                c, 400, "'model' is required: this gateway serves more than one model", 0, "model");
            return;
        }
        snprintf(c->requested, sizeof c->requested, "%s", only);
        json_object_set_new(c->body, "model", json_string(only));
    }
    if (!resolve_model(c, c->requested)) {
        gw_request_info_free(&info);
        reply_error_param(c, 404, "the model does not exist", 0, "model");
        return;
    }
    int retry_after = 0;
    if (tenant && !gw_tenant_admit(tenant, info.est_tokens, c->t0_ns, &retry_after)) {
        gw_request_info_free(&info);
        gw_count(g, GW_RATE_LIMITED, "tenant", tenant->cfg->name, NULL);
        reply_error(c, 429, "rate limit exceeded for this API key", retry_after);
        return;
    }
    /* The salt is the gateway's to set (limits.h); prefix affinity hashes with the same one,
     * so a prompt is steered to where its own cache entries are. */
    char *salt;
    if (gw_cache_salt(tenant, json_string_value(json_object_get(c->body, "cache_salt")), &salt)) {
        gw_request_info_free(&info);
        reply_error(c, 503, "out of memory", 1);
        return;
    }
    if (salt) json_object_set_new(c->body, "cache_salt", json_string(salt));
    c->n_blocks =
        gw_prefix_hashes(info.text, info.text_len, salt ? XXH3_64bits(salt, strlen(salt)) | 1 : 0,
                         c->blocks, GW_MAX_BLOCKS);
    free(salt);
    const char *sess =
        evhttp_find_header(evhttp_request_get_input_headers(req), g->cfg->session_header);
    if (!sess && info.user[0]) sess = info.user;
    if (sess) {
        c->has_session = true;
        c->session = XXH3_64bits(sess, strlen(sess));
    }
    gw_request_info_free(&info);
    dispatch(c);
}
