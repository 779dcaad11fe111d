/* The connection tracker against a real evhttp server on 127.0.0.1: bytes of a chunked reply
 * that evhttp has queued but not sent count as unsent (a draining server waits for them), and
 * connections libevent has freed are forgotten by the sweep. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/conns.h"
#include "t.h"

typedef struct fx {
    struct event_base *base;
    net_conns *t;
    size_t unsent_after_end; /* net_conns_unsent right after evhttp_send_reply_end */
    int replies;
} fx;

static struct bufferevent *on_conn(struct event_base *base, void *arg)
{
    return net_conns_accept(((fx *)arg)->t, base);
}

static void on_req(struct evhttp_request *req, void *arg)
{
    fx *f = arg;
    evhttp_send_reply_start(req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "data: last\n\n");
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
    evhttp_send_reply_end(req); /* queued: written when the loop next runs */
    f->unsent_after_end = net_conns_unsent(f->t);
    f->replies++;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

TEST(net_conns_counts_the_last_chunk_of_a_reply_as_unsent)
{
    fx f = {.base = event_base_new(), .t = net_conns_new("test", 0)};
    struct evhttp *http = evhttp_new(f.base);
    evhttp_set_bevcb(http, on_conn, &f);
    evhttp_set_gencb(http, on_req, &f);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    T_ASSERT(sock);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    T_EQ(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sa, &sl), 0);

    int c = socket(AF_INET, SOCK_STREAM, 0);
    T_EQ(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *rq = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    T_EQ(write(c, rq, strlen(rq)), (int64_t)strlen(rq));
    struct timeval tv = {0, 300000};
    struct event *tick = evtimer_new(f.base, on_timeout, f.base);
    evtimer_add(tick, &tv);
    event_base_dispatch(f.base);
    T_EQ(f.replies, 1);
    T_ASSERT(f.unsent_after_end > 0);        /* "0\r\n\r\n" at least: not yet on the wire */
    T_EQ((int64_t)net_conns_unsent(f.t), 0); /* and after the loop ran, all sent */
    char buf[512];
    ssize_t n = read(c, buf, sizeof buf - 1);
    T_ASSERT(n > 0);
    buf[n] = 0;
    T_CONTAINS(buf, "data: last");
    T_CONTAINS(buf, "0\r\n\r\n");

    close(c); /* libevent frees the connection; the sweep forgets it */
    evtimer_add(tick, &tv);
    event_base_dispatch(f.base);
    net_conns_sweep(f.t, 60);
    T_EQ((int64_t)net_conns_unsent(f.t), 0);

    event_free(tick);
    evhttp_free(http);
    net_conns_free(f.t);
    event_base_free(f.base);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    net_conns_sweep(arg, 60);
}

static void on_any_req(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_reply(req, 200, "OK", NULL);
}

/* The open-file limit that leaves exactly n descriptor numbers free. */
static int limit_for_free(int n)
{
    int fd = 0;
    for (int free_ = 0; free_ < n; fd++)
        free_ += fcntl(fd, F_GETFD) == -1;
    return fd;
}

/* accept() failing with EMFILE pauses the listener for a moment instead of being retried in
 * a loop (libevent's default: the backlog stays readable, so it spins and logs each time). */
TEST(net_conns_pauses_accept_when_out_of_descriptors)
{
    struct event_base *base = event_base_new();
    net_conns *t = net_conns_new("test", 0); /* no connection limit: only descriptors run out */
    struct evhttp *http = net_http_new(base, 1024, 60, on_any_req, NULL);
    kl_err err = {0};
    int port = net_conns_listen(t, http, "127.0.0.1", 0, &err);
    T_ASSERT(port > 0);
    pid_t child = fork();
    if (child == 0) { /* 40 clients that hold their connections for a while */
        int c[40];
        usleep(100 * 1000);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        for (int i = 0; i < 40; i++) {
            c[i] = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c[i], (struct sockaddr *)&sa, sizeof sa)) _exit(1);
        }
        usleep(1500 * 1000);
        _exit(0);
    }
    struct rlimit old, low;
    T_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)limit_for_free(5); /* room for 5 connections (and nothing else) */
    T_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct event *sweep = event_new(base, -1, EV_PERSIST, on_sweep, t);
    struct timeval every = {0, 100000}, stop = {1, 200000};
    evtimer_add(sweep, &every);
    struct event *end = evtimer_new(base, on_timeout, base);
    evtimer_add(end, &stop);
    event_base_dispatch(base);
    T_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    long errors = net_conns_accept_errors(t);
    T_ASSERT(errors >= 1);  /* it did run out */
    T_ASSERT(errors <= 20); /* and paused: 1.2 s at one try per 250 ms pause, not a spin */
    T_ASSERT(net_conns_count(t) <= 5);
    int st;
    T_EQ(waitpid(child, &st, 0), child);
    event_free(sweep);
    event_free(end);
    evhttp_free(http);
    net_conns_free(t);
    event_base_free(base);
}

typedef struct pushfx {
    struct event_base *base;
    net_conns *t;
    struct evhttp_request *req; /* the stream, until its client is cut */
    struct event *timer;
    size_t queued; /* bytes written to the stream */
    int closed;    /* the connection's close callback ran */
} pushfx;

static void on_stream_close(struct evhttp_connection *c, void *arg)
{
    (void)c;
    pushfx *f = arg;
    f->closed++;
    if (f->req) evhttp_send_reply_end(f->req); /* frees the detached request */
    f->req = NULL;
    event_base_loopbreak(f->base);
}

static void on_push(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pushfx *f = arg;
    if (!f->req) return;
    static char chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, chunk, sizeof chunk);
    evhttp_send_reply_chunk(f->req, b);
    evbuffer_free(b);
    f->queued += sizeof chunk;
}

static void on_stream_req(struct evhttp_request *req, void *arg)
{
    pushfx *f = arg;
    f->req = req;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_stream_close, f);
    evhttp_send_reply_start(req, 200, "OK");
    struct timeval every = {0, 2000};
    f->timer = event_new(f->base, -1, EV_PERSIST, on_push, f);
    evtimer_add(f->timer, &every);
}

/* A client that stops reading a stream is cut once more than max_unsent bytes wait for it:
 * the application's close callback runs (and would cancel the request). */
TEST(net_conns_cuts_a_client_that_stops_reading)
{
    pushfx f = {.base = event_base_new(), .t = net_conns_new("test", 0)};
    net_conns_limit_unsent(f.t, 256 << 10);
    struct evhttp *http = net_http_new(f.base, 1024, 60, on_stream_req, &f);
    kl_err err = {0};
    int port = net_conns_listen(f.t, http, "127.0.0.1", 0, &err);
    T_ASSERT(port > 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096; /* a small window, so that the backlog builds in the server */
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    T_EQ(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *rq = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    T_EQ(write(c, rq, strlen(rq)), (int64_t)strlen(rq));
    struct timeval limit = {20, 0}; /* a failing run ends here, with about 160 MB queued */
    struct event *end = evtimer_new(f.base, on_timeout, f.base);
    evtimer_add(end, &limit);
    event_base_dispatch(f.base); /* never reads c */
    T_EQ(f.closed, 1);
    T_ASSERT(f.queued < (16u << 20)); /* cut long before: 256 KiB + what the kernel holds */
    close(c);
    event_free(end);
    if (f.timer) event_free(f.timer);
    evhttp_free(http);
    net_conns_free(f.t);
    event_base_free(f.base);
}
