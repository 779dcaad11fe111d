/* net/calls.c: the client requests in progress, their close and their detaching
 * (net/calls.h). */
#include "net/calls.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <sys/socket.h>

#include "base/log.h"

void net_calls_add(net_calls *l, net_call *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head) l->head->prev = c;
    l->head = c;
    l->n++;
}

void net_calls_remove(net_calls *l, net_call *c)
{
    net_call_take(l, c);
    if (c->prev)
        c->prev->next = c->next;
    else if (l->head == c)
        l->head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

void net_call_watch(net_calls *l, net_call *c, void (*on_close)(struct evhttp_connection *, void *),
                    void *arg)
{
    c->conn = c->req ? evhttp_request_get_connection(c->req) : NULL;
    if (!c->conn) return;
    evhttp_connection_set_closecb(c->conn, on_close, arg);
    if (l->conns) net_conns_busy(l->conns, c->conn, +1); /* a long stream is not a slow client */
}

struct evhttp_request *net_call_take(net_calls *l, net_call *c)
{
    struct evhttp_request *r = c->req;
    if (c->conn) {
        evhttp_connection_set_closecb(c->conn, NULL, NULL);
        if (l->conns) net_conns_busy(l->conns, c->conn, -1);
    }
    c->req = NULL;
    c->conn = NULL;
    return r;
}

void net_call_lost(net_calls *l, net_call *c)
{
    struct evhttp_request *r = c->req;
    if (c->conn && l->conns) net_conns_busy(l->conns, c->conn, -1);
    c->req = NULL;
    c->conn = NULL;
    if (r) evhttp_send_reply_end(r); /* ending the reply on a detached request frees it */
}

bool net_conn_gone(struct evhttp_connection *conn)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return false;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    /* 0: a FIN; an error other than "nothing yet": a reset (the peek consumes the error, so
     * the next write to the socket fails with EPIPE: SIGPIPE is ignored) */
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void net_calls_poll(net_calls *l, bool (*watch)(const net_call *c), void (*gone)(net_call *c))
{
    for (net_call *c = l->head, *next; c; c = next) {
        next = c->next;
        if (!c->req || !c->conn || (watch && !watch(c))) continue;
        if (net_conn_gone(c->conn)) gone(c);
    }
}

static void free_conn_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    evhttp_connection_free(arg);
}

void net_conn_free_later(struct event_base *base, struct evhttp_connection *conn)
{
    struct timeval zero = {0, 0};
    if (conn && event_base_once(base, -1, EV_TIMEOUT, free_conn_cb, conn, &zero) != 0)
        kl_warn("could not schedule a connection free: one connection leaks");
}
