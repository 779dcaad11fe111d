/* net/calls.h: the client requests a server holds while it works on them (a generation in
 * kiln serve, a proxied request in kiln gateway): the list of them, their connections held
 * busy (never timed out by net/conns while a long answer streams), a client's close noticed,
 * and a request detached from its connection before the final reply.
 *
 * libevent tells of a client's close only when it writes to it, so a client that gives up
 * during a long prefill or in a queue is found by net_calls_poll peeking at each socket
 * from a timer. The application embeds a net_call in its own call and sets owner. */
#ifndef KILN_NET_CALLS_H
#define KILN_NET_CALLS_H
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>

#include "net/conns.h"

typedef struct net_call {
    struct evhttp_request *req;     /* NULL once answered or the client went away */
    struct evhttp_connection *conn; /* req's connection while watched, else NULL */
    void *owner;                    /* the application's call */
    struct net_call *prev, *next;   /* in net_calls */
} net_call;

typedef struct net_calls {
    net_call *head;
    int n;
    net_conns *conns; /* the tracker whose connections calls hold busy (may be NULL) */
} net_calls;

/* Links c (owner, req set by the caller) into l. */
void net_calls_add(net_calls *l, net_call *c);
/* Unlinks c, detaching its request first (net_call_take). */
void net_calls_remove(net_calls *l, net_call *c);
/* Watches c->req's connection: on_close(conn, arg) when the client goes away while c holds
 * it, and the connection is busy until the request is taken. */
void net_call_watch(net_calls *l, net_call *c, void (*on_close)(struct evhttp_connection *, void *),
                    void *arg);
/* Detaches the request from c before its final reply (which may free the connection): the
 * close callback cleared, the busy mark dropped. Returns it; NULL when already answered or
 * gone. */
struct evhttp_request *net_call_take(net_calls *l, net_call *c);
/* In the close callback: libevent detached the unfinished request from the dying
 * connection; this ends it (which frees it) and forgets both. */
void net_call_lost(net_calls *l, net_call *c);
/* True when the client of conn is gone: a peek reads its FIN or a reset. */
bool net_conn_gone(struct evhttp_connection *conn);
/* For each call with a watched request for which watch(c) says to look (NULL: all) and whose
 * client is gone: gone(c), which may remove and free c. */
void net_calls_poll(net_calls *l, bool (*watch)(const net_call *c), void (*gone)(net_call *c));

/* Frees conn on the next loop turn of base: never inside one of its own callbacks. */
void net_conn_free_later(struct event_base *base, struct evhttp_connection *conn);
#endif
