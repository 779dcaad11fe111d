/* The connection tracker against a real evhttp server on 127.0.0.1: bytes of a chunked reply
 * that evhttp has queued but not sent count as unsent (a draining server waits for them), and
 * connections libevent has freed are forgotten by the sweep. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
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
    fx f = {.base = event_base_new(), .t = net_conns_new()};
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
