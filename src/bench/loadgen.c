/* bench/loadgen.c: one libevent loop drives every stream of a run (see bench.h).
 *
 *   closed loop: each target keeps `concurrency` requests in flight until the bound
 *   open loop:   a seeded Poisson process issues requests at `rate` per target
 *   --vs:        both targets get item 0, 1, 2, ... in the same order, issued alternately
 *
 * Connections are kept alive: one that served a request well goes to its target's idle pool
 * and carries a later request if that comes within LG_IDLE_NS (as real clients do, and so a
 * high rate does not run out of ports); others are freed from the loop (never inside their
 * own callbacks). New requests are started from the pump event, so a request that fails at once
 * never recurses into the next. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "net/calls.h"
#include "bench/bench.h"
#include "bench/probe.h"
#include "bench/sse.h"
#include "bench/workload.h"

typedef struct loadgen loadgen;

#define LG_IDLE_NS 2000000000ll /* older idle connections may be closing on the server's side */

typedef struct kb_req {
    loadgen *g;
    int rec; /* index into g->res->rec */
    struct evhttp_connection *conn;
    kb_sse sse;
    int64_t t_send, t_first, t_last;
    double itl_sum, itl_max;
    int n_itl;
    bool got_headers, ok_status, done_marker, finished, err_event, bad_stream, failed;
    enum evhttp_request_error err;
    char errbody[160];
    size_t errbody_len;
    char *body; /* the JSON request, kept for one resend */
    size_t body_len;
    bool reused; /* sent over a kept-alive connection */
} kb_req;

/* Per-target progress. */
typedef struct lg_target {
    int issued, done, inflight;
    int64_t first_send, last_done;
    int next_conv; /* multi-turn: conversations started */
    int *ready;    /* multi-turn: next turns whose previous turn has finished (FIFO) */
    int ready_head, ready_len, ready_cap;
    bool no_reuse; /* the server closed a kept-alive connection under a request: no pool */
    struct evhttp_connection **idle; /* keep-alive connections, most recent last */
    int64_t *idle_since;
    int n_idle, cap_idle;
} lg_target;

struct loadgen {
    const kb_config *c;
    struct event_base *base;
    kb_workload *w;
    kb_result *res;
    char models[2][KB_MAX_MODELS][128]; /* per target */
    int64_t t0;
    lg_target tg[2];
    int inflight, cap_rec, next_job, errors;
    bool stopping; /* --duration reached: no new requests */
    struct event *pump, *arrival, *deadline, *progress, *sigint;
    kl_rng arrivals;
    int64_t next_arrival; /* ns since t0 */
    int pending_arrivals; /* arrivals due but not yet issued (open loop) */
    int oom;
    uint64_t itl_seen; /* inter-token gaps measured (>= the ones kept) */
    kl_rng reservoir;
};

static double ms_between(int64_t a, int64_t b)
{
    return (double)(b - a) / 1e6;
}

static bool can_issue(const loadgen *g, int t)
{
    return !g->stopping && !g->oom && (g->c->requests <= 0 || g->tg[t].issued < g->c->requests);
}

static bool all_done(const loadgen *g)
{
    if (g->inflight) return false;
    for (int t = 0; t < g->c->n_targets; t++)
        if (can_issue(g, t)) return false;
    return true;
}

/* Keeps a connection for a later request of target t; frees it (later) if the pool cannot grow. */
static void idle_put(loadgen *g, int t, struct evhttp_connection *conn, int64_t now)
{
    lg_target *x = &g->tg[t];
    if (x->n_idle == x->cap_idle) {
        int cap = x->cap_idle ? 2 * x->cap_idle : 16;
        struct evhttp_connection **c = realloc(x->idle, sizeof *c * (size_t)cap);
        if (c) x->idle = c;
        int64_t *s = c ? realloc(x->idle_since, sizeof *s * (size_t)cap) : NULL;
        if (s) x->idle_since = s;
        if (!c || !s) {
            net_conn_free_later(g->base, conn);
            return;
        }
        x->cap_idle = cap;
    }
    x->idle[x->n_idle] = conn;
    x->idle_since[x->n_idle++] = now;
}

/* A recently used connection of target t, or NULL; stale ones are freed on the way. */
static struct evhttp_connection *idle_take(loadgen *g, int t, int64_t now)
{
    lg_target *x = &g->tg[t];
    while (x->n_idle) {
        x->n_idle--;
        if (now - x->idle_since[x->n_idle] < LG_IDLE_NS) return x->idle[x->n_idle];
        net_conn_free_later(g->base, x->idle[x->n_idle]);
    }
    return NULL;
}

/* Removes the timers and the idle connections once nothing is left, so the loop ends by
 * itself after the last deferred connection free. */
static void maybe_finish(loadgen *g)
{
    if (!all_done(g)) return;
    if (g->arrival) event_del(g->arrival);
    if (g->deadline) event_del(g->deadline);
    if (g->progress) event_del(g->progress);
    if (g->sigint) event_del(g->sigint);
    for (int t = 0; t < 2; t++)
        while (g->tg[t].n_idle)
            net_conn_free_later(g->base, g->tg[t].idle[--g->tg[t].n_idle]);
}

/* Multi-turn: queues the next turn of a conversation (dropped on OOM: the conversation ends). */
static void ready_push(loadgen *g, int t, int item)
{
    lg_target *x = &g->tg[t];
    if (x->ready_head + x->ready_len == x->ready_cap) {
        if (x->ready_head) { /* slide the live part down before growing */
            memmove(x->ready, x->ready + x->ready_head, sizeof *x->ready * (size_t)x->ready_len);
            x->ready_head = 0;
        } else {
            int cap = x->ready_cap ? 2 * x->ready_cap : 64;
            int *v = realloc(x->ready, sizeof *v * (size_t)cap);
            if (!v) return;
            x->ready = v;
            x->ready_cap = cap;
        }
    }
    x->ready[x->ready_head + x->ready_len++] = item;
}

/* The workload item target t sends next: a waiting follow-up turn first, else the first turn
 * of a new conversation (single-turn: items in order). */
static int next_item(loadgen *g, int t)
{
    lg_target *x = &g->tg[t];
    int turns = g->c->turns > 1 ? g->c->turns : 1;
    if (turns == 1) return g->c->item_base + x->issued;
    if (x->ready_len) {
        x->ready_len--;
        return x->ready[x->ready_head++];
    }
    return g->c->item_base + x->next_conv++ * turns; /* item_base: a multiple of turns */
}

static kb_record *rec_of(kb_req *q)
{
    return &q->g->res->rec[q->rec];
}

/* ---------------------------------------------------------------- stream ---- */

/* Past KB_ITL_MAX gaps, the inter-token latencies are a uniform sample (reservoir): a long
 * run keeps bounded memory and unbiased percentiles. Returns true if the gap was handled
 * here (kept in place of a random earlier one, or dropped). */
static bool itl_sample(loadgen *g, kb_result *r, double gap, int target)
{
    g->itl_seen++;
    if (r->n_itl < KB_ITL_MAX) return false;
    uint64_t k = kl_rng_below(&g->reservoir, g->itl_seen);
    if (k < (uint64_t)r->n_itl) {
        r->itl[k] = gap;
        r->itl_target[k] = target;
    }
    return true;
}

static void on_event(const char *data, size_t len, void *arg)
{
    kb_req *q = arg;
    (void)len;
    if (!strcmp(data, "[DONE]")) {
        q->done_marker = true;
        return;
    }
    json_t *j = json_loads(data, 0, NULL);
    if (!json_is_object(j)) {
        q->bad_stream = true;
        snprintf(rec_of(q)->error, sizeof rec_of(q)->error, "stream: an event is not JSON");
        json_decref(j);
        return;
    }
    json_t *e = json_object_get(j, "error");
    if (e) {
        q->err_event = true;
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(rec_of(q)->error, sizeof rec_of(q)->error, "stream error event: %s",
                 m ? m : "(no message)");
    }
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const char *text = json_string_value(json_object_get(ch, "text"));
    if (!text) text = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
    if (text && *text) {
        int64_t now = kl_now_ns();
        if (!q->t_first) {
            q->t_first = now;
        } else {
            double gap = ms_between(q->t_last, now);
            kb_result *r = q->g->res;
            if (!itl_sample(q->g, r, gap, rec_of(q)->target)) { /* else sampled in place */
                if (r->n_itl == r->cap_itl) {
                    int cap = r->cap_itl ? 2 * r->cap_itl : 4096;
                    double *v = realloc(r->itl, sizeof *v * (size_t)cap);
                    if (v) r->itl = v;
                    int *t = v ? realloc(r->itl_target, sizeof *t * (size_t)cap) : NULL;
                    if (t) {
                        r->itl_target = t;
                        r->cap_itl = cap;
                    }
                }
                if (r->n_itl < r->cap_itl) {
                    r->itl[r->n_itl] = gap;
                    r->itl_target[r->n_itl++] = rec_of(q)->target;
                }
            }
            q->itl_sum += gap;
            if (gap > q->itl_max) q->itl_max = gap;
            q->n_itl++;
        }
        q->t_last = now;
        rec_of(q)->chunks++;
    }
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    if (fr && *fr) q->finished = true;
    json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        kb_record *r = rec_of(q);
        json_t *pt = json_object_get(u, "prompt_tokens"),
               *ct = json_object_get(u, "completion_tokens");
        if (json_is_integer(pt) && json_is_integer(ct)) {
            r->usage = true;
            r->in_tokens = (int)json_integer_value(pt);
            r->out_tokens = (int)json_integer_value(ct);
        }
    }
    json_decref(j);
}

static int on_headers(struct evhttp_request *req, void *arg)
{
    kb_req *q = arg;
    q->got_headers = true;
    int code = evhttp_request_get_response_code(req);
    rec_of(q)->http_status = code;
    q->ok_status = code >= 200 && code < 300;
    return 0;
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
    kb_req *q = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (!n) return;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    if (q->ok_status && !q->bad_stream) {
        int rc = kb_sse_feed(&q->sse, p, n, on_event, q);
        if (rc) {
            q->bad_stream = true;
            snprintf(rec_of(q)->error, sizeof rec_of(q)->error, "stream: %s",
                     rc == KL_ERANGE ? "an event over 1 MiB" : "out of memory");
        }
    } else if (!q->ok_status && q->errbody_len + 1 < sizeof q->errbody) {
        size_t take = sizeof q->errbody - 1 - q->errbody_len;
        if (take > n) take = n;
        memcpy(q->errbody + q->errbody_len, p, take);
        q->errbody_len += take;
    }
    evbuffer_drain(in, n);
}

static void on_error(enum evhttp_request_error err, void *arg)
{
    kb_req *q = arg;
    q->failed = true;
    q->err = err;
}

static void finish(kb_req *q)
{
    loadgen *g = q->g;
    kb_record *r = rec_of(q);
    int64_t now = kl_now_ns();
    r->e2e_ms = ms_between(q->t_send, now);
    if (q->t_first) r->ttft_ms = ms_between(q->t_send, q->t_first);
    if (q->n_itl) {
        r->itl_mean_ms = q->itl_sum / q->n_itl;
        r->itl_max_ms = q->itl_max;
    }
    if (r->status == KB_OK) {
        int out = r->usage ? r->out_tokens : r->chunks;
        /* (e2e - ttft) / (out - 1): the time after the first token per later token */
        if (q->t_first && out > 1) r->tpot_ms = (r->e2e_ms - r->ttft_ms) / (out - 1);
    } else {
        g->errors++;
    }
    int t = r->target;
    int turns = g->c->turns > 1 ? g->c->turns : 1;
    if (turns > 1 && r->status == KB_OK && r->item % turns + 1 < turns)
        ready_push(g, t, r->item + 1);
    g->tg[t].done++;
    g->tg[t].inflight--;
    g->inflight--;
    g->tg[t].last_done = now;
    kb_sse_free(&q->sse);
    if (r->status == KB_OK && q->conn && !g->tg[t].no_reuse)
        idle_put(g, t, q->conn, now);
    else
        net_conn_free_later(g->base, q->conn);
    free(q->body);
    free(q);
    event_active(g->pump, 0, 0);
    maybe_finish(g);
}

static void send_req(kb_req *q, struct evhttp_connection *conn);

static void on_done(struct evhttp_request *req, void *arg)
{
    kb_req *q = arg;
    kb_record *r = rec_of(q);
    bool no_answer = !req || q->failed || evhttp_request_get_response_code(req) == 0;
    if (q->reused && no_answer && !q->got_headers && !(q->failed && q->err == EVREQ_HTTP_TIMEOUT)) {
        /* Some servers (llama.cpp's) announce keep-alive and close anyway: the request met a
         * closing socket. Send it once more on a fresh connection, timed from the resend, and
         * stop reusing this target's connections. */
        loadgen *g = q->g;
        g->tg[r->target].no_reuse = true;
        net_conn_free_later(g->base, q->conn);
        q->conn = NULL;
        q->failed = q->reused = false;
        q->t_send = kl_now_ns();
        r->t_start_ms = ms_between(g->t0, q->t_send);
        send_req(q, NULL);
        return;
    }
    if (req && !q->failed && evhttp_request_get_response_code(req) != 0) {
        on_chunk(req, q); /* whatever the chunk callback has not seen */
        int code = evhttp_request_get_response_code(req);
        r->http_status = code;
        if (code >= 200 && code < 300) {
            if (q->bad_stream || q->err_event)
                r->status = KB_ERR_STREAM;
            else if (!q->done_marker && !q->finished) {
                r->status = KB_ERR_STREAM;
                snprintf(r->error, sizeof r->error,
                         "stream ended without [DONE] or a finish_reason");
            } else
                r->status = KB_OK;
        } else {
            r->status = code >= 400 && code < 500 ? KB_ERR_HTTP_4XX : KB_ERR_HTTP_5XX;
            q->errbody[q->errbody_len] = 0;
            for (char *s = q->errbody; *s; s++)
                if ((unsigned char)*s < 0x20) *s = ' ';
            snprintf(r->error, sizeof r->error, "HTTP %d: %.140s", code, q->errbody);
        }
    } else if (q->failed && q->err == EVREQ_HTTP_TIMEOUT) {
        r->status = KB_ERR_TIMEOUT;
        snprintf(r->error, sizeof r->error, "no byte for %.0f s", q->g->c->timeout);
    } else if (!q->got_headers) {
        r->status = KB_ERR_CONNECT;
        snprintf(r->error, sizeof r->error, "no response (connection refused or closed)");
    } else {
        r->status = KB_ERR_STREAM;
        snprintf(r->error, sizeof r->error, "connection cut mid-response");
    }
    finish(q);
}

/* --------------------------------------------------------------- issuing ---- */

/* Appends a record; returns its index or -1 on OOM. */
static int new_record(loadgen *g)
{
    kb_result *res = g->res;
    if (res->n_rec == g->cap_rec) {
        int cap = g->cap_rec ? 2 * g->cap_rec : 256;
        kb_record *v = realloc(res->rec, sizeof *v * (size_t)cap);
        if (!v) return -1;
        res->rec = v;
        g->cap_rec = cap;
    }
    kb_record *r = &res->rec[res->n_rec];
    memset(r, 0, sizeof *r);
    r->ttft_ms = r->e2e_ms = r->tpot_ms = r->itl_mean_ms = r->itl_max_ms = -1;
    r->in_tokens = r->out_tokens = -1;
    return res->n_rec++;
}

/* Sends the next item to target t. A request that cannot even start becomes an error
 * record (finished through the loop, like any other). */
static void issue(loadgen *g, int t)
{
    int ri = new_record(g);
    kb_req *q = ri >= 0 ? calloc(1, sizeof *q) : NULL;
    kb_item item = {0};
    int item_no = q ? next_item(g, t) : 0;
    if (!q || kb_workload_item(g->w, item_no, g->models[t], &item)) {
        free(q);
        g->oom = 1; /* stop issuing; what ran is still reported */
        if (ri >= 0) g->res->n_rec--;
        return;
    }
    q->g = g;
    q->rec = ri;
    kb_record *r = rec_of(q);
    r->id = g->tg[t].issued;
    r->target = t;
    r->item = item_no;
    r->model = item.model;
    r->in_expected = item.in_expected;
    r->out_expected = item.out_expected;
    g->tg[t].issued++;
    g->tg[t].inflight++;
    g->inflight++;
    q->t_send = kl_now_ns();
    if (!g->tg[t].first_send) g->tg[t].first_send = q->t_send;
    r->t_start_ms = ms_between(g->t0, q->t_send);

    q->body = item.body;
    q->body_len = item.len;
    send_req(q, g->tg[t].no_reuse ? NULL : idle_take(g, t, q->t_send));
}

/* Sends q (its body, to its target) over conn, or a new connection when conn is NULL. A
 * request that cannot start is finished at once as a connect error. */
static void send_req(kb_req *q, struct evhttp_connection *conn)
{
    loadgen *g = q->g;
    const kb_config *c = g->c;
    kb_record *r = rec_of(q);
    const kb_target *tg = &c->target[r->target];
    q->reused = conn != NULL;
    q->conn =
        conn ? conn : evhttp_connection_base_new(g->base, NULL, tg->host, (unsigned short)tg->port);
    struct evhttp_request *req = q->conn ? evhttp_request_new(on_done, q) : NULL;
    if (!req) {
        r->status = KB_ERR_CONNECT;
        snprintf(r->error, sizeof r->error, "could not create a connection");
        finish(q);
        return;
    }
    struct timeval tv = {(time_t)c->timeout, (suseconds_t)(fmod(c->timeout, 1.0) * 1e6)};
    evhttp_connection_set_timeout_tv(q->conn, &tv);
    evhttp_connection_set_retries(q->conn, 0);
    evhttp_request_set_header_cb(req, on_headers);
    evhttp_request_set_chunked_cb(req, on_chunk);
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300], path[300], auth[600];
    snprintf(host, sizeof host, "%s:%d", tg->host, tg->port);
    snprintf(path, sizeof path, "%s%s", tg->prefix,
             c->chat ? "/v1/chat/completions" : "/v1/completions");
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Accept", "text/event-stream");
    if (c->api_key) {
        snprintf(auth, sizeof auth, "Bearer %s", c->api_key);
        evhttp_add_header(h, "Authorization", auth);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), q->body, q->body_len);
    if (evhttp_make_request(q->conn, req, EVHTTP_REQ_POST, path) != 0) {
        evhttp_request_free(req); /* not freed by libevent on this path */
        r->status = KB_ERR_CONNECT;
        snprintf(r->error, sizeof r->error, "could not connect to %s", tg->url);
        finish(q);
    }
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    loadgen *g = arg;
    const kb_config *c = g->c;
    if (c->concurrency > 0) {
        /* closed loop: refill each target's slots, alternating between targets */
        for (bool more = true; more;) {
            more = false;
            for (int t = 0; t < c->n_targets; t++)
                if (g->tg[t].inflight < c->concurrency && can_issue(g, t)) {
                    issue(g, t);
                    more = true;
                }
        }
    } else {
        while (g->pending_arrivals > 0) {
            int t = g->next_job % c->n_targets;
            g->pending_arrivals--;
            if (!can_issue(g, t)) continue;
            g->next_job++;
            issue(g, t);
        }
    }
    maybe_finish(g);
}

/* Open loop: issues every arrival now due and sleeps until the next one. */
static void arrival_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    loadgen *g = arg;
    int64_t now = kl_now_ns() - g->t0;
    bool any = false;
    for (int t = 0; t < g->c->n_targets; t++)
        any |= can_issue(g, t);
    if (!any) {
        maybe_finish(g);
        return;
    }
    while (g->next_arrival <= now) {
        g->pending_arrivals++;
        double gap = kb_rng_exp(&g->arrivals, g->c->rate * g->c->n_targets);
        g->next_arrival += (int64_t)(gap * 1e9);
    }
    event_active(g->pump, 0, 0);
    int64_t wait = g->next_arrival - now;
    struct timeval tv = {(time_t)(wait / 1000000000), (suseconds_t)(wait % 1000000000 / 1000)};
    evtimer_add(g->arrival, &tv);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    loadgen *g = arg;
    g->stopping = true;
    maybe_finish(g);
}

/* The first Ctrl-C stops new requests (the run ends as at --duration, results written); the
 * handler is then removed, so a second one ends the process. */
static void sigint_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    loadgen *g = arg;
    g->stopping = true;
    g->res->interrupted = true;
    event_del(g->sigint);
    fprintf(stderr,
            "\nkiln: interrupted: waiting for %d requests in flight (Ctrl-C again to quit)\n",
            g->inflight);
    maybe_finish(g);
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    loadgen *g = arg;
    int done = 0, issued = 0;
    for (int t = 0; t < g->c->n_targets; t++)
        done += g->tg[t].done, issued += g->tg[t].issued;
    double el = ms_between(g->t0, kl_now_ns()) / 1e3;
    char total[32] = "";
    if (g->c->requests > 0) snprintf(total, sizeof total, "/%d", g->c->requests * g->c->n_targets);
    fprintf(stderr, "\r\033[K%s%s%d%s done, %d in flight, %d errors, %.1f req/s, %.1f s",
            g->c->label ? g->c->label : "", g->c->label ? ": " : "", done, total, g->inflight,
            g->errors, el > 0 ? done / el : 0.0, el);
    (void)issued;
}

/* ------------------------------------------------------------------- run ---- */

int kb_run(const kb_config *c, kb_result *res, kl_err *err)
{
    memset(res, 0, sizeof *res);
    if (c->concurrency <= 0 && !(c->rate > 0))
        return kl_errf(err, KL_EINVAL, "bench: need --concurrency or --rate");
    if (c->requests <= 0 && !(c->duration > 0))
        return kl_errf(err, KL_EINVAL, "bench: need --requests or --duration");
    loadgen *g = calloc(1, sizeof *g);
    if (!g) return kl_errf(err, KL_ENOMEM, "out of memory");
    g->c = c;
    g->res = res;
    int rc = kb_workload_open(&g->w, c, err);
    if (rc) {
        free(g);
        return rc;
    }
    g->base = event_base_new();
    if (!g->base) {
        kb_workload_close(g->w);
        free(g);
        return kl_errf(err, KL_ENOMEM, "bench: could not create an event base");
    }
    int n_models = c->n_models > 0 ? c->n_models : 1;
    for (int i = 0; i < n_models; i++) {
        for (int t = 0; t < c->n_targets; t++) {
            char *m = g->models[t][i];
            snprintf(m, sizeof g->models[t][i], "%s", c->models[i].name);
            if (!m[0] &&
                kb_probe_model(g->base, &c->target[t], c->api_key, m, sizeof g->models[t][i]))
                snprintf(m, sizeof g->models[t][i], "default");
            memcpy(res->model_names[t][i], m, sizeof g->models[t][i]);
        }
    }
    kl_rng_seed_stream(&g->reservoir, c->seed, 0x72657365727631ull);
    g->pump = event_new(g->base, -1, 0, pump_cb, g);
    g->deadline = evtimer_new(g->base, deadline_cb, g);
    if (c->progress) g->progress = event_new(g->base, -1, EV_PERSIST, progress_cb, g);
    g->sigint = evsignal_new(g->base, SIGINT, sigint_cb, g);
    if (g->sigint) event_add(g->sigint, NULL);
    if (c->concurrency <= 0) {
        g->arrival = evtimer_new(g->base, arrival_cb, g);
        kl_rng_seed_stream(&g->arrivals, c->seed, 0x6172726976616c73ull);
    }
    if (!g->pump || !g->deadline || (c->progress && !g->progress) ||
        (c->concurrency <= 0 && !g->arrival)) {
        rc = kl_errf(err, KL_ENOMEM, "bench: could not create events");
        goto out;
    }
    g->t0 = kl_now_ns();
    if (c->duration > 0) {
        struct timeval tv = {(time_t)c->duration, (suseconds_t)(fmod(c->duration, 1.0) * 1e6)};
        evtimer_add(g->deadline, &tv);
    }
    if (g->progress) {
        struct timeval tv = {0, 250000};
        evtimer_add(g->progress, &tv);
    }
    if (g->arrival) {
        g->next_arrival = 0; /* the first request goes at once */
        event_active(g->arrival, EV_TIMEOUT, 0);
    } else {
        event_active(g->pump, 0, 0);
    }
    event_base_dispatch(g->base);
    if (g->progress) {
        progress_cb(-1, 0, g);
        fputc('\n', stderr);
    }
    for (int t = 0; t < c->n_targets; t++)
        res->duration_s[t] =
            g->tg[t].first_send ? (double)(g->tg[t].last_done - g->tg[t].first_send) / 1e9 : 0;
    if (g->oom) rc = kl_errf(err, KL_ENOMEM, "bench: out of memory while building requests");
out:
    if (g->pump) event_free(g->pump);
    if (g->arrival) event_free(g->arrival);
    if (g->deadline) event_free(g->deadline);
    if (g->progress) event_free(g->progress);
    if (g->sigint) event_free(g->sigint);
    event_base_free(g->base);
    for (int t = 0; t < 2; t++) {
        free(g->tg[t].ready);
        free(g->tg[t].idle);
        free(g->tg[t].idle_since);
    }
    kb_workload_close(g->w);
    free(g);
    if (rc) kb_result_free(res);
    return rc;
}
