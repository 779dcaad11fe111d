/* The strict request-framing check (net/front.c): well-formed requests pass, fed whole or a
 * byte at a time, pipelined; every ambiguity evhttp would accept is refused with its status. */
#include "net/front.h"
#include "t.h"

/* Feeds s whole, and again one byte at a time; both must give the same status. */
static int check(const char *s, size_t n)
{
    net_front f;
    net_front_init(&f);
    int whole = net_front_feed(&f, s, n);
    net_front g;
    net_front_init(&g);
    int bytes = 0;
    for (size_t i = 0; i < n && !bytes; i++)
        bytes = net_front_feed(&g, s + i, 1);
    T_EQ(whole, bytes);
    return whole;
}
#define CHECK(lit) check(lit, sizeof(lit) - 1)

TEST(net_front_accepts_well_formed_requests)
{
    T_EQ(CHECK("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    T_EQ(CHECK("GET /v1/models?x=1&y=%20 HTTP/1.0\r\n\r\n"), 0);
    T_EQ(CHECK("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 14\r\n\r\n{\"prompt\":\"a\"}"),
         0);
    T_EQ(CHECK("POST /v1/completions HTTP/1.1\r\nHost: x\r\ncontent-length:  2 \r\n"
               "Content-Length: 2\r\n\r\n{}"),
         0); /* repeats that agree; OWS around the value */
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n1a\r\n"
               "abcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"),
         0);
    T_EQ(CHECK("GET / HTTP/1.1\r\nX-Bin: caf\xc3\xa9\t\xff\r\n\r\n"), 0); /* obs-text */
    T_EQ(CHECK("OPTIONS * HTTP/1.1\r\n\r\n"), 0);
    /* pipelined, and the state is clean between requests */
    net_front f;
    net_front_init(&f);
    const char *two = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
    T_EQ(net_front_feed(&f, two, strlen(two)), 0);
    T_ASSERT(!f.in_request);
    T_EQ(net_front_feed(&f, "GET /c HT", 9), 0);
    T_ASSERT(f.in_request); /* a request begun: a stall now is a 408 */
}

TEST(net_front_refuses_what_evhttp_would_misread)
{
    /* lines */
    T_EQ(CHECK("GET / HTTP/1.1\nHost: x\r\n\r\n"), 400);         /* bare LF */
    T_EQ(CHECK("GET / HTTP/1.1\r\nHost: x\n\r\n"), 400);         /* bare LF in a header */
    T_EQ(CHECK("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400);         /* bare LF ending the head */
    T_EQ(CHECK("GET / HTTP/1.1\r\nHost: x\rY: 1\r\n\r\n"), 400); /* CR alone */
    T_EQ(CHECK("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400);    /* folded */
    /* names and values */
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello"), 400);
    T_EQ(CHECK("GET / HTTP/1.1\r\nHo st: x\r\n\r\n"), 400);
    T_EQ(CHECK("GET / HTTP/1.1\r\n: x\r\n\r\n"), 400);
    T_EQ(check("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26), 400); /* NUL */
    T_EQ(CHECK("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"), 400);
    T_EQ(CHECK("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    /* Content-Length */
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400);
    T_EQ(CHECK("HEAD / HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"), 400);
    /* Transfer-Encoding */
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), 501);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
               "\r\n0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
               "0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    /* chunks */
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), 400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"),
         400);
    T_EQ(CHECK("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"), 400);
    /* request line */
    T_EQ(CHECK("GET /a b HTTP/1.1\r\n\r\n"), 400);
    T_EQ(CHECK("GET  / HTTP/1.1\r\n\r\n"), 400);
    T_EQ(CHECK("GET / HTTP/1.1 \r\n\r\n"), 400);
    T_EQ(CHECK("GET / HTTP/2.0\r\n\r\n"), 400);
    T_EQ(CHECK("\r\nGET / HTTP/1.1\r\n\r\n"), 400);
    T_EQ(CHECK("GET /\x80 HTTP/1.1\r\n\r\n"), 400);
    T_EQ(CHECK("TRACE / HTTP/1.1\r\n\r\n"), 501);
    T_EQ(CHECK("BREW /pot HTTP/1.1\r\n\r\n"), 501);
}

TEST(net_front_limits_uri_and_head)
{
    static char buf[200000];
    int n = snprintf(buf, sizeof buf, "GET /");
    memset(buf + n, 'a', NET_FRONT_MAX_URI);
    n += NET_FRONT_MAX_URI;
    n += snprintf(buf + n, sizeof buf - (size_t)n, " HTTP/1.1\r\n\r\n");
    T_EQ(check(buf, (size_t)n), 414);
    n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 2000; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "X-%d: %050d\r\n", i, i);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "\r\n");
    T_EQ(check(buf, (size_t)n), 431);
    net_front f;
    net_front_init(&f);
    T_EQ(net_front_feed(&f, buf, (size_t)n), 431);
    T_CONTAINS(f.why, "too large");
    T_EQ(net_front_feed(&f, "GET / HTTP/1.1\r\n\r\n", 18), 431); /* refused stays refused */
}
