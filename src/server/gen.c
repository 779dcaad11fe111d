/* server/gen.c: POST /v1/completions and /v1/chat/completions.
 *
 *   parse + validate (server/request.c) → template + tokenize → engine_submit per prompt
 *   engine thread: on_engine_event copies the event to s->q, wakes the loop
 *   loop: each event → an SSE chunk (stream) or accumulated text/logprobs (not)
 *   the last event of the last prompt → usage, [DONE] / the JSON body, a log line.
 *
 * A call lives until the engine has delivered the last event of every prompt it submitted,
 * even when the client went away (its requests are aborted and their events dropped), so the
 * engine thread never sees freed memory. */
#include "server/internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <utf8proc.h>

#include "base/clock.h"
#include "base/log.h"

static const char *finish_name(int f)
{
    switch (f) {
    case ENGINE_FINISH_STOP:
        return "stop";
    case ENGINE_FINISH_LENGTH:
        return "length";
    case ENGINE_FINISH_ABORT:
        return "abort";
    case ENGINE_FINISH_ERROR:
        return "error";
    default:
        return NULL;
    }
}

/* ------------------------------------------------------------ engine thread ---- */

static void on_engine_event(void *ctx, const engine_event *ev)
{
    srv_sub *sub = ctx;
    srv *s = sub->call->s;
    size_t tl = ev->text ? ev->text_len : 0;
    srv_ev *e = malloc(sizeof *e + tl + 1);
    if (!e) {
        if (!ev->last) return; /* out of memory: a token event's text is lost... */
        e = sub->spare;        /* ...but never the last event, which frees the call */
        sub->spare = NULL;
        tl = 0;
    }
    e->next = NULL;
    e->sub = sub;
    e->ev = *ev;
    memcpy(e->text, ev->text ? ev->text : "", tl);
    e->text[tl] = 0;
    e->ev.text = e->text;
    e->ev.text_len = tl;
    int nt = ev->n_top < 0 ? 0 : ev->n_top > ENGINE_MAX_LOGPROBS ? ENGINE_MAX_LOGPROBS : ev->n_top;
    if (nt && ev->top) memcpy(e->top, ev->top, sizeof e->top[0] * (size_t)nt);
    e->ev.n_top = ev->top ? nt : 0;
    e->ev.top = e->top;
    pthread_mutex_lock(&s->mu);
    if (s->q_tail)
        s->q_tail->next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    pthread_mutex_unlock(&s->mu);
    event_active(s->wake, EV_READ, 0);
}

/* ---------------------------------------------------------------- replies ---- */

/* Detaches the client's request (closecb cleared before the final reply, which may free the
 * connection) and returns it; NULL when already answered or gone. */
static struct evhttp_request *take_req(srv_call *c)
{
    return net_call_take(&c->s->calls, &c->nc);
}

static void abort_subs(srv_call *c)
{
    for (int i = 0; i < c->n_sub; i++)
        if (c->sub[i].live && c->s->eng) engine_abort(c->s->eng, c->sub[i].eng_id);
}

static void call_free(srv_call *c)
{
    srv *s = c->s;
    net_calls_remove(&s->calls, &c->nc);
    for (int i = 0; i < SRV_MAX_PROMPTS; i++)
        free(c->sub[i].spare);
    for (int i = 0; i < c->n_choices; i++) {
        if (c->ch[i].text) evbuffer_free(c->ch[i].text);
        json_decref(c->ch[i].lp);
    }
    srv_req_free(&c->r);
    free(c);
}

static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    srv_call *c = arg;
    net_call_lost(&c->s->calls, &c->nc);
    c->gone = true;
    c->status = 499;
    abort_subs(c);
}

static json_t *chunk_base(const srv_call *c)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", c->id, "object",
                     c->r.kind == SRV_CHAT
                         ? (c->r.stream ? "chat.completion.chunk" : "chat.completion")
                         : "text_completion",
                     "created", (json_int_t)c->created, "model", c->s->name);
}

static json_t *usage_json(const srv_call *c)
{
    int p = 0, g = 0, cached = 0;
    for (int i = 0; i < c->n_sub; i++) {
        p += c->sub[i].prompt_tokens;
        g += c->sub[i].completion_tokens;
        cached += c->sub[i].cached_tokens;
    }
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", p, "completion_tokens", g,
                     "total_tokens", p + g, "prompt_tokens_details", "cached_tokens", cached);
}

/* The prompt's text for echo: as given, or its ids detokenized. malloc'd. */
static char *prompt_text(const srv_call *c, int k, size_t *len)
{
    const srv_prompt *p = &c->r.prompts[k];
    if (p->text) {
        char *t = malloc(p->text_len + 1);
        if (t) memcpy(t, p->text, p->text_len), t[p->text_len] = 0;
        *len = p->text_len;
        return t;
    }
    size_t n = tok_decode(c->s->tk, p->ids, p->n_ids, 0, NULL, 0);
    char *t = malloc(n + 1);
    if (t) tok_decode(c->s->tk, p->ids, p->n_ids, 0, t, n + 1);
    *len = n;
    return t;
}

/* The logprobs entry of one sampled token (completions: parallel arrays appended to lp;
 * chat: one element appended to the content list lp). */
static void lp_add(srv_call *c, json_t *lp, const engine_event *ev, size_t text_off)
{
    char piece[256];
    size_t pl = tok_piece(c->s->tk, ev->token, 0, piece, sizeof piece);
    if (pl > sizeof piece) pl = sizeof piece;
    if (c->r.kind == SRV_COMPLETIONS) {
        json_array_append_new(json_object_get(lp, "tokens"), net_json_text(piece, pl));
        json_array_append_new(json_object_get(lp, "token_logprobs"),
                              json_real((double)ev->logprob));
        json_array_append_new(json_object_get(lp, "text_offset"),
                              json_integer((json_int_t)text_off));
        json_t *top = json_object();
        for (int i = 0; i < ev->n_top; i++) {
            char tp[256];
            size_t tl = tok_piece(c->s->tk, ev->top[i].token, 0, tp, sizeof tp - 1);
            if (tl > sizeof tp - 1) tl = sizeof tp - 1;
            json_t *key = net_json_text(tp, tl);
            json_object_set_new(top, json_string_value(key), json_real((double)ev->top[i].logprob));
            json_decref(key);
        }
        json_array_append_new(json_object_get(lp, "top_logprobs"),
                              c->r.logprobs > 0 ? top : json_null());
        if (c->r.logprobs <= 0) json_decref(top);
        return;
    }
    json_t *bytes = json_array();
    for (size_t i = 0; i < pl; i++)
        json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    json_t *top = json_array();
    for (int i = 0; i < ev->n_top; i++) {
        char tp[256];
        size_t tl = tok_piece(c->s->tk, ev->top[i].token, 0, tp, sizeof tp);
        if (tl > sizeof tp) tl = sizeof tp;
        json_t *tb = json_array();
        for (size_t j = 0; j < tl; j++)
            json_array_append_new(tb, json_integer((unsigned char)tp[j]));
        json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", net_json_text(tp, tl),
                                             "logprob", (double)ev->top[i].logprob, "bytes", tb));
    }
    json_array_append_new(lp, json_pack("{s:o, s:f, s:o, s:o}", "token", net_json_text(piece, pl),
                                        "logprob", (double)ev->logprob, "bytes", bytes,
                                        "top_logprobs", top));
}

static json_t *lp_new(const srv_call *c)
{
    if (c->r.kind == SRV_CHAT) return json_array();
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs",
                     "text_offset");
}

static json_t *lp_wrap(const srv_call *c, json_t *lp)
{
    if (!lp) return json_null();
    return c->r.kind == SRV_CHAT ? json_pack("{s:o}", "content", lp) : lp;
}

/* One streamed chunk for choice idx: text (may be empty), logprobs (or NULL), finish. */
static void stream_choice(srv_call *c, int idx, const char *text, size_t len, json_t *lp,
                          int finish, bool role)
{
    json_t *ch = json_pack("{s:i}", "index", idx);
    if (c->r.kind == SRV_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (len || role) json_object_set_new(delta, "content", net_json_text(text, len));
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text", net_json_text(text, len));
    }
    json_object_set_new(ch, "logprobs", lp_wrap(c, lp));
    const char *fn = finish_name(finish);
    json_object_set_new(ch, "finish_reason", fn ? json_string(fn) : json_null());
    json_t *v = chunk_base(c);
    json_object_set_new(v, "choices", json_pack("[o]", ch));
    net_sse_send(c->nc.req, v);
}

static void stream_start(srv_call *c)
{
    net_sse_start(c->nc.req);
    c->started = true;
    c->status = 200;
    for (int i = 0; i < c->n_choices; i++) {
        if (c->r.kind == SRV_CHAT) {
            stream_choice(c, i, "", 0, NULL, ENGINE_RUNNING, true);
        } else if (c->r.echo) {
            size_t len;
            char *t = prompt_text(c, i / c->r.n, &len);
            if (t) stream_choice(c, i, t, len, NULL, ENGINE_RUNNING, false);
            free(t);
        }
    }
}

/* ---------------------------------------------------------------- finish ---- */

static void send_final_json(srv_call *c, struct evhttp_request *req)
{
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        srv_choice *ch = &c->ch[i];
        size_t len = evbuffer_get_length(ch->text);
        const char *t = len ? (const char *)evbuffer_pullup(ch->text, -1) : "";
        json_t *o = json_pack("{s:i}", "index", i);
        if (c->r.kind == SRV_CHAT)
            json_object_set_new(
                o, "message",
                json_pack("{s:s, s:o}", "role", "assistant", "content", net_json_text(t, len)));
        else
            json_object_set_new(o, "text", net_json_text(t, len));
        json_object_set_new(o, "logprobs", lp_wrap(c, json_incref(ch->lp)));
        const char *fn = finish_name(ch->finish);
        json_object_set_new(o, "finish_reason", fn ? json_string(fn) : json_null());
        json_array_append_new(choices, o);
    }
    json_t *v = chunk_base(c);
    json_object_set_new(v, "choices", choices);
    json_object_set_new(v, "usage", usage_json(c));
    srv_send_json(c->s, req, 200, v);
    c->status = 200;
}

/* The call ends in an error although its client is still there: the model failed on it (500
 * model_error), or the server aborted it (a drain that timed out: 503). A stream gets an SSE
 * error event and no [DONE], so no client takes it for a complete answer; otherwise the
 * error status. */
static void send_failure(srv_call *c, bool model_failed)
{
    net_error e = {0};
    if (model_failed) {
        net_fail(&e, 500, "", "the model failed on this request: %s",
                 c->error ? c->error : "an engine error");
    } else {
        net_fail(&e, 503, "",
                 "the server is shutting down: the request was aborted before it "
                 "finished (--drain-timeout)");
    }
    c->status = e.status;
    if (!c->r.stream) {
        srv_send_error(c->s, take_req(c), &e);
        return;
    }
    if (!c->started) stream_start(c);
    c->status = e.status;
    net_sse_error(c->nc.req, &e);
    evhttp_send_reply_end(take_req(c));
    srv_count_status(c->s, e.status);
}

/* All prompts finished: the reply's end, the access log line, the latency metrics. */
static void call_complete(srv_call *c)
{
    srv *s = c->s;
    bool error = false, aborted = false;
    for (int i = 0; i < c->n_choices; i++) {
        error |= c->ch[i].finish == ENGINE_FINISH_ERROR;
        aborted |= c->ch[i].finish == ENGINE_FINISH_ABORT;
    }
    if (c->nc.req && !c->gone && !c->failed) {
        if (error || aborted) {
            send_failure(c, error);
        } else if (c->r.stream) {
            if (!c->started) stream_start(c);
            if (c->r.include_usage) {
                json_t *v = chunk_base(c);
                json_object_set_new(v, "choices", json_array());
                json_object_set_new(v, "usage", usage_json(c));
                net_sse_send(c->nc.req, v);
            }
            net_sse_done(c->nc.req);
            evhttp_send_reply_end(take_req(c));
            srv_count_status(s, c->status);
        } else {
            send_final_json(c, take_req(c));
        }
    }
    double now = kl_now_s();
    kl_hist_observe(&s->met.e2e, now - c->t0);
    int p = 0, g = 0, cached = 0;
    for (int i = 0; i < c->n_sub; i++) {
        p += c->sub[i].prompt_tokens;
        g += c->sub[i].completion_tokens;
        cached += c->sub[i].cached_tokens;
    }
    const char *fin = c->n_choices ? finish_name(c->ch[0].finish) : NULL;
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_INFO, "serve: request");
    kl_rec_str(&r, "id", c->id);
    kl_rec_str(&r, "model", s->name);
    kl_rec_str(&r, "endpoint", c->r.kind == SRV_CHAT ? "chat" : "completions");
    kl_rec_int(&r, "stream", c->r.stream);
    kl_rec_int(&r, "n", c->n_choices);
    kl_rec_int(&r, "prompt_tokens", p);
    kl_rec_int(&r, "cached_tokens", cached);
    kl_rec_int(&r, "completion_tokens", g);
    kl_rec_num(&r, "ttft_ms", c->t_first > 0 ? (c->t_first - c->t_submit) * 1e3 : -1.0);
    kl_rec_num(&r, "total_ms", (now - c->t0) * 1e3);
    kl_rec_str(&r, "finish", fin);
    kl_rec_int(&r, "status", c->status);
    kl_rec_end(&r);
    call_free(c);
}

static void handle_event(srv *s, srv_ev *e)
{
    srv_sub *sub = e->sub;
    srv_call *c = sub->call;
    const engine_event *ev = &e->ev;
    int idx = sub->k * c->r.n + ev->index;
    bool live = c->nc.req && !c->gone && !c->failed;
    if (!sub->queue_seen && ev->queued_s >= 0) { /* arrival -> first scheduled, as vLLM's */
        sub->queue_seen = true;
        kl_hist_observe(&s->met.queue, c->t_submit - c->t0 + ev->queued_s);
    }
    if (idx >= 0 && idx < c->n_choices) {
        srv_choice *ch = &c->ch[idx];
        double now = kl_now_s();
        if (ev->token >= 0) {
            if (c->t_first <= 0) {
                c->t_first = now;
                kl_hist_observe(&s->met.ttft, now - c->t_submit);
            } else {
                kl_hist_observe(&s->met.itl, now - c->t_last);
            }
            c->t_last = now;
            ch->n_tokens++;
        }
        if (ev->finish != ENGINE_RUNNING) {
            ch->finish = ev->finish;
            s->met.finished[ev->finish - 1 < 4 ? ev->finish - 1 : 3]++;
            if (ev->finish == ENGINE_FINISH_ERROR && !c->error) c->error = ev->error;
        }
        /* an abort or an error is no finish_reason: call_complete sends an error instead */
        bool failed = ev->finish == ENGINE_FINISH_ABORT || ev->finish == ENGINE_FINISH_ERROR;
        if (live && c->r.stream) {
            if (!c->started) stream_start(c);
            json_t *lp = NULL;
            if (c->r.sp.logprobs >= 0 && ev->token >= 0) {
                lp = lp_new(c);
                lp_add(c, lp, ev, ch->text_off);
            }
            if (ev->text_len || lp || (ev->finish != ENGINE_RUNNING && !failed))
                stream_choice(c, idx, ev->text, ev->text_len, lp,
                              failed ? ENGINE_RUNNING : ev->finish, false);
            ch->text_off += ev->text_len;
        } else if (live) {
            if (c->r.sp.logprobs >= 0 && ev->token >= 0) lp_add(c, ch->lp, ev, ch->text_off);
            evbuffer_add(ch->text, ev->text, ev->text_len);
            ch->text_off += ev->text_len;
        }
    }
    if (ev->last) {
        sub->live = false;
        sub->prompt_tokens = ev->prompt_tokens;
        sub->completion_tokens = ev->completion_tokens;
        sub->cached_tokens = ev->cached_tokens;
        if (--c->n_live == 0) call_complete(c);
    }
}

void srv_gen_drain_events(srv *s)
{
    pthread_mutex_lock(&s->mu);
    srv_ev *e = s->q_head;
    s->q_head = s->q_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (e) {
        srv_ev *next = e->next;
        handle_event(s, e);
        free(e);
        e = next;
    }
}

/* ---------------------------------------------------------------- requests ---- */

static void reply_now(srv *s, srv_call *c, const net_error *e)
{
    struct evhttp_request *req = take_req(c);
    c->status = e->status;
    if (req) srv_send_error(s, req, e);
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_INFO, "serve: request");
    kl_rec_str(&r, "id", c->id);
    kl_rec_str(&r, "model", s->name);
    kl_rec_int(&r, "status", e->status);
    kl_rec_str(&r, "error", e->msg); /* may quote the client's input: escaped */
    kl_rec_end(&r);
}

void srv_gen_handle(srv *s, struct evhttp_request *req, srv_kind kind)
{
    net_error e = {0};
    srv_call *c = calloc(1, sizeof *c);
    if (!c) {
        net_fail(&e, 503, "", "out of memory");
        srv_send_error(s, req, &e);
        return;
    }
    c->s = s;
    c->t0 = kl_now_s();
    c->created = (long long)time(NULL);
    snprintf(c->id, sizeof c->id, "%s-%016" PRIx64, kind == SRV_CHAT ? "chatcmpl" : "cmpl",
             ++s->next_id ^ ((uint64_t)c->created << 24));
    c->nc.owner = c;
    c->nc.req = req;
    net_calls_add(&s->calls, &c->nc);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > s->o.max_body) {
        net_fail(&e, 413, "", "the request body is %zu bytes; the limit is %zu (--max-body)", len,
                 s->o.max_body);
        goto fail;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (srv_req_parse(&c->r, kind, body, len, s->n_vocab, &e)) goto fail;
    if (c->r.model && strcmp(c->r.model, s->name)) {
        net_fail(&e, 404, "model", "The model `%.200s` does not exist.", c->r.model);
        goto fail;
    }
    if (srv_req_tokenize(&c->r, s->tk, s->tmpl, s->n_ctx, &e)) goto fail;
    c->n_choices = c->r.n_prompts * c->r.n;
    for (int i = 0; i < c->n_choices; i++) {
        c->ch[i].text = evbuffer_new();
        c->ch[i].lp = c->r.sp.logprobs >= 0 ? lp_new(c) : NULL;
        if (!c->ch[i].text) {
            net_fail(&e, 503, "", "out of memory");
            goto fail;
        }
        if (c->r.echo && !c->r.stream) {
            size_t pl;
            char *t = prompt_text(c, i / c->r.n, &pl);
            if (t) evbuffer_add(c->ch[i].text, t, pl);
            c->ch[i].text_off = pl;
            free(t);
        }
    }
    c->t_submit = kl_now_s();
    for (int k = 0; k < c->r.n_prompts; k++) {
        srv_sub *sub = &c->sub[k];
        sub->call = c;
        sub->k = k;
        sub->spare = malloc(sizeof(srv_ev) + 1);
        if (!sub->spare) {
            net_fail(&e, 503, "", "out of memory");
            if (c->n_live) {
                reply_now(s, c, &e);
                c->failed = true;
                abort_subs(c);
                return;
            }
            goto fail;
        }
        engine_request er = {.prompt = c->r.prompts[k].ids,
                             .n_prompt = c->r.prompts[k].n_ids,
                             .n = c->r.n,
                             .sp = c->r.sp,
                             .priority = c->r.priority,
                             .cache_salt = c->r.cache_salt,
                             .on_event = on_engine_event,
                             .ctx = sub};
        kl_err err = {0};
        int rc = engine_submit(s->eng, &er, &sub->eng_id, &err);
        if (rc) {
            if (rc == KL_ENOSPC) /* the engine's queue: the client may try again */
                net_fail(&e, 429, "", "the server is busy (%s); try again later", err.msg);
            else /* a parameter the engine refuses names itself (kl_err.param) */
                net_fail_kl(&e, &err);
            if (c->n_live) { /* earlier prompts are queued: abort them, answer now */
                reply_now(s, c, &e);
                c->failed = true;
                abort_subs(c);
                return;
            }
            goto fail;
        }
        sub->live = true;
        c->n_sub++;
        c->n_live++;
    }
    net_call_watch(&s->calls, &c->nc, on_client_close, c);
    return;
fail:
    reply_now(s, c, &e);
    call_free(c);
}

static bool watched(const net_call *n)
{
    const srv_call *c = n->owner;
    return !c->gone && !c->failed;
}

/* The client gave up (during a long prefill or in the queue): its requests are aborted; the
 * reply is ended so libevent frees the connection. */
static void client_gone(net_call *n)
{
    srv_call *c = n->owner;
    c->gone = true;
    c->status = 499;
    abort_subs(c);
    struct evhttp_request *req = take_req(c);
    if (c->started) {
        evhttp_send_reply_end(req);
    } else {
        net_error e;
        net_fail(&e, 499, "", "client closed the connection");
        srv_send_error(c->s, req, &e);
    }
}

void srv_gen_poll_disconnects(srv *s)
{
    net_calls_poll(&s->calls, watched, client_gone);
}

void srv_gen_abort_all(srv *s)
{
    for (net_call *n = s->calls.head; n; n = n->next)
        abort_subs(n->owner);
}

/* After the engine is destroyed (every last event delivered): frees what is queued and
 * every call, without touching their requests (evhttp_free frees those). */
void srv_gen_free_all(srv *s)
{
    srv_gen_drain_events(s);
    while (s->calls.head) {
        srv_call *c = s->calls.head->owner;
        take_req(c);
        call_free(c);
    }
}
