/* net/conns.c: see conns.h. Each tracked bufferevent holds a reference, so that it stays
 * valid after libevent frees the connection; a sweep sees that (no read callback, no fd)
 * and lets it go. */
#include "net/conns.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/clock.h"

typedef struct conn {
    struct bufferevent *bev;
    double last; /* accept, the last complete request, or the start or end of the last call */
    int busy;    /* calls in progress on it */
    bool shut;
} conn;

struct net_conns {
    conn *v;
    int n, cap;
};

net_conns *net_conns_new(void)
{
    return calloc(1, sizeof(net_conns));
}

void net_conns_free(net_conns *t)
{
    if (!t) return;
    for (int i = 0; i < t->n; i++)
        bufferevent_decref(t->v[i].bev);
    free(t->v);
    free(t);
}

struct bufferevent *net_conns_accept(net_conns *t, struct event_base *base)
{
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return NULL;
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        conn *v = realloc(t->v, sizeof *v * (size_t)cap);
        if (!v) return bev;
        t->v = v;
        t->cap = cap;
    }
    bufferevent_incref(bev);
    t->v[t->n++] = (conn){.bev = bev, .last = kl_now_s()};
    return bev;
}

static conn *find(net_conns *t, struct evhttp_connection *c)
{
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    for (int i = 0; bev && i < t->n; i++)
        if (t->v[i].bev == bev) return &t->v[i];
    return NULL;
}

void net_conns_touch(net_conns *t, struct evhttp_connection *c)
{
    conn *k = find(t, c);
    if (k) k->last = kl_now_s();
}

void net_conns_busy(net_conns *t, struct evhttp_connection *c, int delta)
{
    conn *k = find(t, c);
    if (!k) return;
    k->busy += delta;
    k->last = kl_now_s();
}

/* Not yet freed by libevent (which clears every callback). While evhttp writes a reply it
 * clears only the read callback (it wants close detection, not data), so either one counts:
 * a connection with the last chunk of a stream still to send is live. */
static bool live(const conn *k)
{
    bufferevent_data_cb rcb = NULL, wcb = NULL;
    bufferevent_getcb(k->bev, &rcb, &wcb, NULL, NULL);
    return (rcb || wcb) && bufferevent_getfd(k->bev) >= 0;
}

size_t net_conns_unsent(const net_conns *t)
{
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        if (live(&t->v[i])) n += evbuffer_get_length(bufferevent_get_output(t->v[i].bev));
    return n;
}

void net_conns_sweep(net_conns *t, double timeout_s)
{
    double now = kl_now_s();
    for (int i = 0; i < t->n;) {
        conn *k = &t->v[i];
        if (!live(k)) {
            bufferevent_decref(k->bev);
            t->v[i] = t->v[--t->n];
            continue;
        }
        if (!k->busy && !k->shut && now - k->last > timeout_s) {
            shutdown(bufferevent_getfd(k->bev),
                     SHUT_RDWR); /* libevent reads EOF and frees the connection */
            k->shut = true;
        }
        i++;
    }
}
