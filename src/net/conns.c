/* net/conns.c: see conns.h. The tracker: listeners, the list of connections and their
 * deadlines; each connection's byte-level guard is in guard.c. */
#include "net/internal.h"

#include <errno.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"

#define FD_PAUSE_S 0.25 /* accepting pauses this long after running out of descriptors */

/* Every tracker with listeners: libevent gives a listener's error callback evhttp's
 * argument, not ours, so the callback finds its tracker here (loop thread only). */
static net_conns *trackers;

struct evhttp *net_http_new(struct event_base *base, size_t max_body, int timeout_s,
                            void (*cb)(struct evhttp_request *, void *), void *arg)
{
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) return NULL;
    evhttp_set_max_body_size(http, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(http, 64 * 1024);
    /* libevent's idle timeout is a backstop one second after the tracker's deadline, which
     * answers a stalled request with 408 (libevent would close without a word) */
    evhttp_set_timeout(http, timeout_s + 1);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, cb, arg);
    return http;
}

net_conns *net_conns_new(const char *who, int max_conns)
{
    net_conns *t = calloc(1, sizeof(net_conns));
    if (!t) return NULL;
    snprintf(t->who, sizeof t->who, "%s", who ? who : "net");
    t->max_conns = max_conns;
    t->max_unsent = NET_MAX_UNSENT;
    t->full_logged_s = t->fd_logged_s = t->refused_logged_s = t->cut_logged_s = -1e9;
    return t;
}

void net_conns_limit_unsent(net_conns *t, size_t max_unsent)
{
    t->max_unsent = max_unsent;
}

static void forget(net_conn *k)
{
    net_guard_detach(k);
    bufferevent_decref(k->bev);
    free(k);
}

void net_conns_free(net_conns *t)
{
    if (!t) return;
    for (net_conns **p = &trackers; *p; p = &(*p)->next_live)
        if (*p == t) {
            *p = t->next_live;
            break;
        }
    for (int i = 0; i < t->n; i++)
        forget(t->v[i]);
    free(t->v);
    free(t);
}

static void set_paused(net_conns *t, bool paused)
{
    if (t->paused == paused) return;
    t->paused = paused;
    for (int i = 0; i < t->n_sock; i++) {
        struct evconnlistener *l = evhttp_bound_socket_get_listener(t->sock[i]);
        if (paused)
            evconnlistener_disable(l);
        else
            evconnlistener_enable(l);
    }
}

/* Pauses accepting at max_conns open connections (new clients wait in the backlog). */
static void check_full(net_conns *t)
{
    if (t->max_conns <= 0 || t->n_open < t->max_conns || t->paused) return;
    set_paused(t, true);
    double now = kl_now_s();
    if (now - t->full_logged_s >= NET_LOG_INTERVAL) {
        t->full_logged_s = now;
        kl_warn("%s: %d connections: not accepting more until some close", t->who, t->n_open);
    }
}

struct bufferevent *net_conns_accept(net_conns *t, struct event_base *base)
{
    t->n_open++;
    check_full(t);
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return NULL;
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        net_conn **v = realloc(t->v, sizeof *v * (size_t)cap);
        if (!v) return bev; /* untracked: libevent's own limits still apply */
        t->v = v;
        t->cap = cap;
    }
    net_conn *k = calloc(1, sizeof *k);
    if (!k) return bev;
    bufferevent_incref(bev);
    k->t = t;
    k->bev = bev;
    k->last = kl_now_s();
    net_guard_attach(k);
    t->v[t->n++] = k;
    return bev;
}

static net_conn *find(net_conns *t, struct evhttp_connection *c)
{
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    for (int i = 0; bev && i < t->n; i++)
        if (t->v[i]->bev == bev) return t->v[i];
    return NULL;
}

void net_conns_touch(net_conns *t, struct evhttp_connection *c)
{
    net_conn *k = find(t, c);
    if (k) k->last = kl_now_s();
}

void net_conns_busy(net_conns *t, struct evhttp_connection *c, int delta)
{
    net_conn *k = find(t, c);
    if (!k) return;
    k->busy += delta;
    k->last = kl_now_s();
}

/* Not yet freed by libevent (which clears every callback). While evhttp writes a reply it
 * clears only the read callback (it wants close detection, not data), so either one counts:
 * a connection with the last chunk of a stream still to send is live. */
static bool live(const net_conn *k)
{
    bufferevent_data_cb rcb = NULL, wcb = NULL;
    bufferevent_getcb(k->bev, &rcb, &wcb, NULL, NULL);
    return (rcb || wcb) && bufferevent_getfd(k->bev) >= 0;
}

size_t net_conns_unsent(const net_conns *t)
{
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        if (live(t->v[i])) n += evbuffer_get_length(bufferevent_get_output(t->v[i]->bev));
    return n;
}

/* Refusals and cuts since they were last logged, once per interval each. */
static void log_events(net_conns *t, double now)
{
    if (t->refused_unlogged && now - t->refused_logged_s >= NET_LOG_INTERVAL) {
        t->refused_logged_s = now;
        kl_warn("%s: refused %ld malformed or stalled requests (the last: %d %s)", t->who,
                t->refused_unlogged, t->last_status, t->last_why);
        t->refused_unlogged = 0;
    }
    if (t->cut_unlogged && now - t->cut_logged_s >= NET_LOG_INTERVAL) {
        t->cut_logged_s = now;
        kl_warn("%s: cut %ld clients that stopped reading (over %zu bytes unsent)", t->who,
                t->cut_unlogged, t->max_unsent);
        t->cut_unlogged = 0;
    }
}

void net_conns_sweep(net_conns *t, double timeout_s)
{
    double now = kl_now_s();
    int open = 0;
    for (int i = 0; i < t->n;) {
        net_conn *k = t->v[i];
        if (live(k)) net_guard_sweep(k, now);
        if (!live(k)) {
            forget(k);
            t->v[i] = t->v[--t->n];
            continue;
        }
        if (!k->busy && !k->shut && !k->refused && now - k->last > timeout_s) {
            k->shut = true;
            if (k->front.in_request && net_guard_reading(k)) /* a request begun, not finished */
                net_guard_refuse(k, 408, "the request was not complete in time", SIZE_MAX);
            else /* idle: libevent reads EOF and frees the connection */
                shutdown(bufferevent_getfd(k->bev), SHUT_RDWR);
        }
        open++;
        i++;
    }
    t->n_open = open;
    log_events(t, now);
    if (t->errors_unlogged && now - t->fd_logged_s >= NET_LOG_INTERVAL) {
        t->fd_logged_s = now;
        kl_warn("%s: out of file descriptors with %d connections open: accept failed %ld times; "
                "pausing it (raise the limit: ulimit -n)",
                t->who, open, t->errors_unlogged);
        t->errors_unlogged = 0;
    }
    if (t->paused && (t->max_conns <= 0 || open < t->max_conns) && now >= t->fd_pause_until)
        set_paused(t, false);
}

/* accept() failed with something other than "try again": out of descriptors (EMFILE,
 * ENFILE) or memory. libevent would retry at once, forever, as the backlog stays readable:
 * pause instead, and let the sweep resume. Logged by the sweep, once per interval. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg; /* evhttp's */
    net_conns *t = trackers;
    while (t) {
        bool mine = false;
        for (int i = 0; i < t->n_sock && !mine; i++)
            mine = evhttp_bound_socket_get_listener(t->sock[i]) == l;
        if (mine) break;
        t = t->next_live;
    }
    if (!t) { /* cannot happen: every guarded listener is registered */
        evconnlistener_disable(l);
        return;
    }
    int e = errno;
    t->accept_errors++;
    t->errors_unlogged++;
    t->fd_pause_until = kl_now_s() + FD_PAUSE_S;
    set_paused(t, true);
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM)
        kl_warn("%s: accept failed: %s", t->who, strerror(e));
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg)
{
    return net_conns_accept(arg, base);
}

int net_conns_listen(net_conns *t, struct evhttp *http, const char *host, int port, kl_err *err)
{
    if (t->n_sock == NET_MAX_LISTENERS)
        return kl_errf(err, KL_EINVAL, "cannot listen on %s:%d: too many listeners", host, port);
    errno = 0;
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(http, host, (unsigned short)port);
    if (!sock) /* libevent keeps bind's errno; 0: the host did not resolve */
        return kl_errf(err, KL_EIO, "cannot listen on %s:%d: %s", host, port,
                       errno ? strerror(errno) : "not a local address");
    /* a client may vanish at any moment (and the guard shuts sockets itself): a write to it
     * must fail with EPIPE, not kill the process */
    signal(SIGPIPE, SIG_IGN);
    evhttp_set_bevcb(http, on_new_conn, t);
    struct evconnlistener *l = evhttp_bound_socket_get_listener(sock);
    evconnlistener_set_error_cb(l, on_accept_error);
    if (t->paused) evconnlistener_disable(l);
    t->http[t->n_sock] = http;
    t->sock[t->n_sock++] = sock;
    bool registered = false;
    for (net_conns *o = trackers; o; o = o->next_live)
        registered |= o == t;
    if (!registered) {
        t->next_live = trackers;
        trackers = t;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int bound = port;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0)
        bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return bound;
}

void net_conns_close_listeners(net_conns *t)
{
    for (int i = 0; i < t->n_sock; i++)
        evhttp_del_accept_socket(t->http[i], t->sock[i]);
    t->n_sock = 0;
}

int net_conns_count(const net_conns *t)
{
    return t->n_open;
}

long net_conns_accept_errors(const net_conns *t)
{
    return t->accept_errors;
}

int net_fd_budget(const char *who, int want, int per_conn, int reserve)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
    if (rl.rlim_cur < rl.rlim_max) { /* thousands of idle clients each hold a descriptor */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long room = rl.rlim_cur == RLIM_INFINITY || per_conn < 1
                    ? 1L << 20
                    : ((long)rl.rlim_cur - reserve) / per_conn;
    if (room < 1) room = 0;
    if (want <= 0) return (int)(room < 1L << 20 ? room : 1L << 20); /* as many as fit */
    if (room >= want) return want;
    kl_warn("%s: the open-file limit (%llu) leaves room for %ld client connections, not %d "
            "(%d kept for the process; raise it with ulimit -n)",
            who, (unsigned long long)rl.rlim_cur, room, want, reserve);
    return (int)room;
}
