/* net/internal.h: the state conns.c (the tracker: listeners, deadlines) and guard.c (each
 * connection's byte-level checks) share. Not for other layers; loop thread only. */
#ifndef KILN_NET_INTERNAL_H
#define KILN_NET_INTERNAL_H
#include <event2/buffer.h>
#include <stdbool.h>

#include "net/conns.h"
#include "net/front.h"

#define NET_MAX_LISTENERS 4
#define NET_LOG_INTERVAL  10.0 /* a condition that persists is logged once per interval */

/* One accepted connection. Holds a reference on its bufferevent, so that it stays valid after
 * libevent frees the connection; the sweep sees that (no callbacks, no fd) and lets it go. */
typedef struct net_conn {
    net_conns *t;
    struct bufferevent *bev;
    double last;     /* accept, the last complete request, or the start or end of the last call */
    int busy;        /* calls in progress on it */
    bool shut;       /* shut down by the sweep (idle past the deadline) */
    net_front front; /* the request framing check over its input */
    struct evbuffer_cb_entry *in_cb;  /* runs the check as bytes arrive */
    struct evbuffer_cb_entry *out_cb; /* caps what waits to be sent */
    int refused;                      /* the status refusing its input, 0 while fine */
    const char *why;
    bool answered;  /* the refusal is written (we own the bufferevent) */
    bool cut;       /* shut: its client stopped reading */
    bool restoring; /* guard.c is putting input back: not new bytes */
    double answered_at;
    struct evhttp_connection *evcon; /* evhttp's, taken over to answer a refusal */
} net_conn;

struct net_conns {
    char who[32];
    int max_conns;
    size_t max_unsent; /* bytes a client may leave unread before it is cut */
    net_conn **v;
    int n, cap;
    int n_open; /* live at the last sweep + accepted since */
    struct evhttp *http[NET_MAX_LISTENERS];
    struct evhttp_bound_socket *sock[NET_MAX_LISTENERS];
    int n_sock;
    bool paused;
    double fd_pause_until; /* after accept ran out of descriptors */
    /* what happened since it was last logged (once per NET_LOG_INTERVAL each) */
    double full_logged_s, fd_logged_s, refused_logged_s, cut_logged_s;
    long accept_errors, errors_unlogged;
    long refused_unlogged, cut_unlogged;
    int last_status;
    const char *last_why;
    net_conns *next_live; /* the list of trackers, for the listeners' error callback */
};

/* guard.c */
/* Starts checking k's input and capping its output. */
void net_guard_attach(net_conn *k);
/* Stops both (before the tracker drops its reference). */
void net_guard_detach(net_conn *k);
/* Whether evhttp is waiting for request bytes on k: no request with the application, no
 * reply being written. Only then may a refusal be answered (in order, after any reply). */
bool net_guard_reading(const net_conn *k);
/* Refuses k with status: the last drop bytes of its input (SIZE_MAX: all) and every later
 * byte are discarded; answered at once when evhttp is reading and has nothing left to read,
 * else by the sweep once it is so. */
void net_guard_refuse(net_conn *k, int status, const char *why, size_t drop);
/* The sweep's part: answers a pending refusal, frees an answered connection that lingered
 * past its time. */
void net_guard_sweep(net_conn *k, double now);
#endif
