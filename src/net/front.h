/* net/front.h: a strict check of HTTP/1.1 request framing, fed the raw bytes of a client
 * connection as they arrive, before evhttp parses them (net/conns.c wires it in).
 *
 * evhttp (libevent 2.1) is lenient where a server in front of other servers must not be:
 * it takes a bare LF as a line end, keeps a space before the colon as part of the header
 * name ("Content-Length : 5" is then no Content-Length at all), reads "+5" or " 5" as 5,
 * uses the first of two different Content-Lengths, treats an unknown Transfer-Encoding
 * ("gzip, chunked") as no encoding and falls back to Content-Length, truncates a header at a
 * NUL byte, folds continuation lines, accepts "0x1f" and "5 junk" as chunk sizes, and
 * ignores a HEAD request's Content-Length (its body is then read as the next request).
 * Each of these lets two parsers disagree on where a request ends: request smuggling. This
 * check refuses them all, and the gateway never forwards an ambiguous request.
 *
 * Accepted: request line `METHOD SP target SP HTTP/1.0|HTTP/1.1 CRLF` (a known method;
 * target of visible ASCII), header lines `token ":" OWS value CRLF` (value: visible
 * characters, SP, HTAB, bytes >= 0x80), then the body framed by one Content-Length (digits;
 * repeats must agree) or `Transfer-Encoding: chunked` (HTTP/1.1 only, never with a
 * Content-Length; chunk sizes hex digits, no extensions, data followed by CRLF, trailers as
 * header lines), or no body. Requests follow one another (pipelining). */
#ifndef KILN_NET_FRONT_H
#define KILN_NET_FRONT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_FRONT_MAX_URI  8192       /* request line bytes: past it 414 */
#define NET_FRONT_MAX_HEAD (64 << 10) /* request line + headers: past it 431 */

typedef struct net_front {
    int state;
    int status;         /* 0 while well-formed; else the HTTP status that refuses the stream */
    const char *why;    /* the reason (a constant) once refused */
    size_t line;        /* bytes of the current line so far */
    size_t head;        /* bytes of the current request's head so far */
    bool in_request;    /* some bytes of a request that is not complete yet */
    uint64_t fed;       /* bytes fed so far */
    uint64_t req_start; /* offset in the stream of the current request's first byte */
    bool http10, head_method, chunked, cr;
    int n_te, n_host;
    bool has_cl;
    uint64_t cl;   /* Content-Length */
    uint64_t left; /* body or chunk bytes still to come */
    int n_tok;     /* bytes in tok */
    char tok[24];  /* method, lower-cased header name, or the start of a version */
    int n_val;     /* bytes in val (a Content-Length or Transfer-Encoding value) */
    char val[40];
} net_front;

void net_front_init(net_front *f);
/* Checks the next n bytes of the stream. Returns 0 while everything is well-formed, else the
 * status refusing it (400, 414, 431, 501) with the reason in f->why and, in f->req_start,
 * where the refused request began (the requests before it are fine); a refused stream stays
 * refused. Bounded: constant work per byte, no allocation. */
int net_front_feed(net_front *f, const void *p, size_t n);
#endif
