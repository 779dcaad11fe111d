/* server/stream.c: delivery of a generation as it happens: the engine's event callback
 * (on the engine thread: copies the event and wakes the loop) and Server-Sent Events to the
 * client (net/reply.h frames them; the chunks' JSON is server/shape.c's). */
#include "server/internal.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void srv_on_engine_event(void *ctx, const engine_event *ev)
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
    e->vec = NULL; /* the engine's vector is gone after this call: copy it */
    if (ev->embedding && ev->n_embedding > 0 &&
        (e->vec = malloc(sizeof(float) * (size_t)ev->n_embedding)))
        memcpy(e->vec, ev->embedding, sizeof(float) * (size_t)ev->n_embedding);
    e->ev.embedding = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->q_tail)
        s->q_tail->next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    pthread_mutex_unlock(&s->mu);
    event_active(s->wake, EV_READ, 0);
}

/* One streamed chunk for choice idx: text (may be empty), logprobs (or NULL), finish. */
void srv_stream_choice(srv_call *c, int idx, const char *text, size_t len, json_t *lp, int finish,
                       bool role)
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
    json_object_set_new(ch, "logprobs", srv_lp_wrap(c, lp));
    const char *fn = srv_finish_name(finish);
    json_object_set_new(ch, "finish_reason", fn ? json_string(fn) : json_null());
    json_t *v = srv_chunk_base(c);
    json_object_set_new(v, "choices", json_pack("[o]", ch));
    net_sse_send(c->nc.req, v);
}

void srv_stream_start(srv_call *c)
{
    net_sse_start(c->nc.req);
    c->started = true;
    c->status = 200;
    for (int i = 0; i < c->n_choices; i++) {
        if (c->r.kind == SRV_CHAT) {
            srv_stream_choice(c, i, "", 0, NULL, ENGINE_RUNNING, true);
        } else if (c->r.echo) {
            size_t len;
            char *t = srv_prompt_text(c, i / c->r.n, &len);
            if (t) srv_stream_choice(c, i, t, len, NULL, ENGINE_RUNNING, false);
            free(t);
        }
    }
}
