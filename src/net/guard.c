/* net/guard.c: each client connection's byte-level guard, between the socket and evhttp.
 *
 * Input: a callback on the bufferevent's input buffer runs when bytes arrive, before evhttp
 * reads them, and feeds them to the framing check (net/front.c). A request it refuses never
 * reaches evhttp: its bytes and all after them are discarded, and once evhttp waits for a
 * request (after answering the good ones before it, so replies stay in order), the guard
 * takes the bufferevent over, writes the refusal (an OpenAI-style JSON error, Connection:
 * close), shuts the write side, discards what else arrives and frees the connection when the
 * client closes, or after LINGER_S (closing at once with unread input would reset the
 * connection and could lose the answer).
 *
 * Output: a callback on the output buffer cuts a client that stopped reading: when the
 * application adds bytes while more than max_unsent are still unsent, the socket is shut
 * down; libevent then fails the connection, which tells the application (its close
 * callback), which cancels the request. libevent's write timeout (evhttp_set_timeout) ends
 * a write that makes no progress at all.
 *
 * Taking over relies on one fact of evhttp (libevent 2.1): while it reads a request, the
 * bufferevent's callback argument is its evhttp_connection. */
#include "net/internal.h"

#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/reply.h"

#define LINGER_S 2.0 /* an answered refusal waits this long for the client to close */

static void discard_input(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void free_taken(net_conn *k)
{
    struct evhttp_connection *c = k->evcon;
    k->evcon = NULL;
    if (c) evhttp_connection_free(c); /* frees the bufferevent: the sweep forgets k */
}

/* The refusal is on the wire: say we are done writing, wait for the client to close. */
static void on_answer_sent(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!evbuffer_get_length(bufferevent_get_output(bev)))
        shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void on_taken_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what; /* EOF, an error or libevent's timeout: done either way */
    free_taken(arg);
}

bool net_guard_reading(const net_conn *k)
{
    bufferevent_data_cb rcb = NULL;
    bufferevent_getcb(k->bev, &rcb, NULL, NULL, NULL);
    /* evhttp clears its read callback while it writes a reply, and stops reading while the
     * application has a request */
    return rcb && rcb != discard_input && (bufferevent_get_enabled(k->bev) & EV_READ) && !k->busy;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    default:
        return "Bad Request";
    }
}

/* Takes the bufferevent from evhttp and writes the refusal. */
static void answer(net_conn *k)
{
    bufferevent_data_cb rcb;
    void *arg = NULL;
    bufferevent_getcb(k->bev, &rcb, NULL, NULL, &arg);
    k->evcon = arg; /* evhttp's connection, while it reads */
    k->answered = true;
    k->answered_at = kl_now_s();
    bufferevent_setcb(k->bev, discard_input, on_answer_sent, on_taken_event, k);
    discard_input(k->bev, NULL);
    net_error e;
    net_fail(&e, k->refused, NULL, "%s", k->why);
    e.retry_after_s = 0;
    char *body = net_error_text(&e);
    evbuffer_add_printf(bufferevent_get_output(k->bev),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        k->refused, reason_phrase(k->refused), body ? strlen(body) : 0,
                        body ? body : "");
    free(body);
    bufferevent_enable(k->bev, EV_READ | EV_WRITE);
}

/* Removes the last n bytes of in, leaving the bytes before them to evhttp. */
static void drop_tail(net_conn *k, struct evbuffer *in, size_t n)
{
    size_t len = evbuffer_get_length(in);
    struct evbuffer *keep = n < len ? evbuffer_new() : NULL;
    if (!keep) { /* all of it (or out of memory: the good requests before go too) */
        evbuffer_drain(in, len);
        return;
    }
    evbuffer_remove_buffer(in, keep, len - n);
    evbuffer_drain(in, evbuffer_get_length(in));
    k->restoring = true; /* on_input must not look at these bytes again */
    evbuffer_add_buffer(in, keep);
    k->restoring = false;
    evbuffer_free(keep);
}

/* Answered only when evhttp waits for a request and has read every good one before. */
static bool may_answer(const net_conn *k)
{
    return !k->answered && net_guard_reading(k) &&
           !evbuffer_get_length(bufferevent_get_input(k->bev));
}

void net_guard_refuse(net_conn *k, int status, const char *why, size_t drop)
{
    if (k->refused) return;
    k->refused = status;
    k->why = why;
    k->t->refused_unlogged++;
    k->t->last_status = status;
    k->t->last_why = why;
    drop_tail(k, bufferevent_get_input(k->bev), drop);
    if (may_answer(k)) answer(k);
}

/* New input: check it. Bytes from the start of a refused request on are thrown away before
 * evhttp sees them; the requests before it are left to evhttp, answered first. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    net_conn *k = arg;
    if (!info->n_added || k->restoring) return; /* evhttp consumed bytes, or drop_tail */
    size_t len = evbuffer_get_length(in);
    size_t added = info->n_added < len ? info->n_added : len;
    if (k->refused) {
        drop_tail(k, in, added);
        return;
    }
    uint64_t in_start = k->front.fed - (len - added); /* stream offset of in's first byte */
    struct evbuffer_ptr pos;
    if (evbuffer_ptr_set(in, &pos, len - added, EVBUFFER_PTR_SET)) return;
    size_t left = added;
    while (left && !k->front.status) {
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(in, (ev_ssize_t)left, &pos, v, 8);
        if (nv <= 0) break;
        size_t fed = 0;
        for (int i = 0; i < nv && i < 8 && fed < left && !k->front.status; i++) {
            size_t m = v[i].iov_len < left - fed ? v[i].iov_len : left - fed;
            net_front_feed(&k->front, v[i].iov_base, m);
            fed += m;
        }
        left -= fed;
        if (left && evbuffer_ptr_set(in, &pos, fed, EVBUFFER_PTR_ADD)) break;
    }
    if (k->front.status) {
        uint64_t good = k->front.req_start > in_start ? k->front.req_start - in_start : 0;
        net_guard_refuse(k, k->front.status, k->front.why, len - (size_t)(good < len ? good : len));
    }
}

/* Bytes added for a client that has more than max_unsent still unread: it stopped reading. */
static void on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    (void)out;
    net_conn *k = arg;
    if (!info->n_added || k->cut || k->answered || info->orig_size < k->t->max_unsent) return;
    k->cut = true;
    k->t->cut_unlogged++;
    /* Reset, not a close: what the kernel still holds for it is dropped at once (a FIN would
     * wait behind it). libevent reads EOF, fails the connection and calls the application's
     * close callback. */
    evutil_socket_t fd = bufferevent_getfd(k->bev);
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    shutdown(fd, SHUT_RDWR);
}

void net_guard_attach(net_conn *k)
{
    net_front_init(&k->front);
    k->in_cb = evbuffer_add_cb(bufferevent_get_input(k->bev), on_input, k);
    k->out_cb =
        k->t->max_unsent ? evbuffer_add_cb(bufferevent_get_output(k->bev), on_output, k) : NULL;
}

void net_guard_detach(net_conn *k)
{
    if (k->in_cb) evbuffer_remove_cb_entry(bufferevent_get_input(k->bev), k->in_cb);
    if (k->out_cb) evbuffer_remove_cb_entry(bufferevent_get_output(k->bev), k->out_cb);
    k->in_cb = k->out_cb = NULL;
}

void net_guard_sweep(net_conn *k, double now)
{
    if (k->refused && may_answer(k))
        answer(k);
    else if (k->answered && now - k->answered_at > LINGER_S)
        free_taken(k);
}
