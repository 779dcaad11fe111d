/* server/gen.c: POST /v1/completions and /v1/chat/completions, the life of a call.
 *
 *   parse + validate (server/request.c) → template + tokenize → engine_submit per prompt
 *   engine thread: srv_on_engine_event (server/stream.c) copies the event to s->q, wakes the loop
 *   loop: each event → an SSE chunk (stream) or accumulated text/logprobs (not)
 *   the last event of the last prompt → usage, [DONE] / the JSON body (server/shape.c), a log
 *   line (server/accesslog.c).
 *
 * A call lives until the engine has delivered the last event of every prompt it submitted,
 * even when the client went away (its requests are aborted and their events dropped), so the
 * engine thread never sees freed memory. */
#include "server/internal.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

/* ------------------------------------------------------------ engine thread ---- */

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
    srv_lora_forget_pending(s, c);
    for (int i = 0; i < SRV_MAX_PROMPTS; i++) {
        free(c->sub[i].spare);
        free(c->sub[i].vec);
    }
    for (int i = 0; i < c->n_choices; i++) {
        if (c->ch[i].text) evbuffer_free(c->ch[i].text);
        json_decref(c->ch[i].lp);
    }
    srv_req_free(&c->r);
    gram_unref(c->gram);
    srv_call *held = c->lora_ref ? c : NULL;
    if (held) srv_lora_release(s, held); /* may start a load that was waiting for the slot */
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

/* ---------------------------------------------------------------- finish ---- */

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
    if (!c->started) srv_stream_start(c);
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
            if (!c->started) srv_stream_start(c);
            if (c->r.include_usage) {
                json_t *v = srv_chunk_base(c);
                json_object_set_new(v, "choices", json_array());
                json_object_set_new(v, "usage", srv_usage_json(c));
                net_sse_send(c->nc.req, v);
            }
            net_sse_done(c->nc.req);
            evhttp_send_reply_end(take_req(c));
            srv_count_status(s, c->status);
        } else if (c->r.kind == SRV_EMBEDDINGS) {
            bool all = true;
            for (int i = 0; i < c->n_sub; i++)
                all &= c->sub[i].vec != NULL;
            if (all) {
                srv_send_json(s, take_req(c), 200, srv_embeddings_json(c));
                c->status = 200;
            } else { /* a vector lost for want of memory */
                net_error e = {0};
                net_fail(&e, 503, "", "out of memory");
                c->status = e.status;
                srv_send_error(s, take_req(c), &e);
            }
        } else {
            srv_send_final_json(c, take_req(c));
        }
    }
    double now = kl_now_s();
    kl_hist_observe(&s->met.e2e, now - c->t0);
    srv_log_call(c, now);
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
        if (live && c->r.stream && c->r.tool_choice != SRV_TOOL_NONE) {
            if (!c->started) srv_stream_start(c);
            evbuffer_add(ch->text, ev->text, ev->text_len); /* held: it may be a call */
            if (ev->text_len) srv_stream_tool_text(c, idx);
            if (ev->finish != ENGINE_RUNNING && !failed) srv_stream_tool_end(c, idx, ev->finish);
        } else if (live && c->r.stream) {
            if (!c->started) srv_stream_start(c);
            json_t *lp = NULL;
            if (c->r.sp.logprobs >= 0 && ev->token >= 0) {
                lp = srv_lp_new(c);
                srv_lp_add(c, lp, ev, ch->text_off);
            }
            if (ev->text_len || lp || (ev->finish != ENGINE_RUNNING && !failed))
                srv_stream_choice(c, idx, ev->text, ev->text_len, lp,
                                  failed ? ENGINE_RUNNING : ev->finish, false);
            ch->text_off += ev->text_len;
        } else if (live) {
            if (c->r.sp.logprobs >= 0 && ev->token >= 0) srv_lp_add(c, ch->lp, ev, ch->text_off);
            evbuffer_add(ch->text, ev->text, ev->text_len);
            ch->text_off += ev->text_len;
        }
    }
    if (ev->last && e->vec && !sub->vec) {
        sub->vec = e->vec;
        sub->n_vec = ev->n_embedding;
        e->vec = NULL;
    }
    if (ev->last) {
        sub->live = false;
        sub->prompt_tokens = ev->prompt_tokens;
        sub->completion_tokens = ev->completion_tokens;
        sub->cached_tokens = ev->cached_tokens;
        sub->spec_draft_tokens = ev->spec_draft_tokens;
        sub->spec_accepted_tokens = ev->spec_accepted_tokens;
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
        free(e->vec);
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
    srv_log_refused(c, e);
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
    snprintf(c->id, sizeof c->id, "%s-%016" PRIx64,
             kind == SRV_CHAT         ? "chatcmpl"
             : kind == SRV_EMBEDDINGS ? "embd"
                                      : "cmpl",
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
    if (c->r.model && !srv_serves(s, c->r.model)) {
        net_fail(&e, 404, "model", "The model `%.200s` does not exist.", c->r.model);
        goto fail;
    }
    if (kind != SRV_EMBEDDINGS && !engine_generates(s->eng)) {
        net_fail(&e, 400, "model",
                 "`%.200s` is an embedding model: it cannot generate text; use /v1/embeddings",
                 s->name);
        goto fail;
    }
    bool embed = kind == SRV_EMBEDDINGS;
    int limit = embed ? engine_embed_max_tokens(s->eng) : s->n_ctx;
    if (embed && s->n_ctx < limit) limit = s->n_ctx;
    if (srv_req_tokenize(&c->r, s->tk, s->tmpl, limit, &e)) goto fail;
    if (c->r.has_grammar) { /* compiled once per distinct source (cached), within a budget */
        kl_err gerr = {0};
        if (gram_cache_get(s->grams, c->r.gram_kind, c->r.gram_src, c->r.gram_len, &c->gram,
                           &gerr)) {
            net_fail(&e, gerr.code == KL_ENOMEM ? 503 : 400, c->r.gram_param, "%s: %s",
                     c->r.gram_param, gerr.msg);
            goto fail;
        }
    }
    int dim = engine_embedding_dim(s->eng);
    if (c->r.dimensions > dim) {
        net_fail(&e, 400, "dimensions", "dimensions: the model's embeddings have %d", dim);
        goto fail;
    }
    c->n_choices = c->r.n_prompts * c->r.n;
    for (int i = 0; i < c->n_choices; i++) {
        c->ch[i].text = evbuffer_new();
        c->ch[i].lp = c->r.sp.logprobs >= 0 ? srv_lp_new(c) : NULL;
        if (!c->ch[i].text) {
            net_fail(&e, 503, "", "out of memory");
            goto fail;
        }
        if (c->r.echo && !c->r.stream) {
            size_t pl;
            char *t = srv_prompt_text(c, i / c->r.n, &pl);
            if (t) evbuffer_add(c->ch[i].text, t, pl);
            c->ch[i].text_off = pl;
            free(t);
        }
    }
    if (c->r.model && strcmp(c->r.model, s->name)) { /* an adapter: resident or waits */
        c->lora = srv_lora_find(s, c->r.model);
        if (!srv_lora_acquire(s, c->lora, c)) {
            net_call_watch(&s->calls, &c->nc, on_client_close, c);
            return;
        }
    }
    srv_gen_submit(s, c);
    return;
fail:
    reply_now(s, c, &e);
    call_free(c);
}

void srv_gen_refuse(srv *s, srv_call *c, const net_error *e)
{
    reply_now(s, c, e); /* off its adapter's pending list already */
    call_free(c);
}

void srv_gen_submit(srv *s, srv_call *c)
{
    net_error e = {0};
    if (c->gone) { /* gave up while its adapter loaded */
        srv_log_call(c, kl_now_s());
        call_free(c);
        return;
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
                             .lora = c->lora ? c->lora->a : NULL,
                             .embed = c->r.kind == SRV_EMBEDDINGS,
                             .grammar = c->gram,
                             .on_event = srv_on_engine_event,
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
    if (!c->nc.conn) net_call_watch(&s->calls, &c->nc, on_client_close, c); /* once */
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
    for (net_call *n = s->calls.head, *next; n; n = next) {
        next = n->next;
        srv_call *c = n->owner;
        if (c->lora && !c->lora_ref) { /* still waiting for its adapter: never ran */
            net_error e;
            net_fail(&e, 503, "", "the server is shutting down (--drain-timeout)");
            srv_lora_forget_pending(s, c);
            srv_gen_refuse(s, c, &e);
        } else {
            abort_subs(c);
        }
    }
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
