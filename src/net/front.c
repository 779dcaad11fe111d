/* net/front.c: see front.h. One state per position in the grammar; every byte is looked at
 * once. Lines end in CRLF only. Only what decides framing is kept: the method, the version,
 * and the values of Content-Length and Transfer-Encoding. */
#include "net/front.h"

#include <string.h>

enum {
    S_METHOD,        /* request line: the method */
    S_TARGET,        /* the request target */
    S_VERSION,       /* "HTTP/1.x" */
    S_LINE_LF,       /* the LF ending the request line */
    S_HLINE,         /* start of a header line, or the CR of the empty line */
    S_HNAME,         /* a header name */
    S_HVALUE,        /* its value */
    S_HVALUE_LF,     /* the LF ending a header line */
    S_HEAD_END_LF,   /* the LF ending the head */
    S_BODY,          /* Content-Length bytes */
    S_CHUNK_SIZE,    /* hex digits */
    S_CHUNK_SIZE_LF, /* the LF after them */
    S_CHUNK_DATA,    /* chunk bytes */
    S_CHUNK_DATA_CR, /* the CRLF after them */
    S_CHUNK_DATA_LF,
    S_LAST_CR, /* after the last chunk: no trailers, only CRLF */
    S_LAST_LF,
};

static int refuse(net_front *f, int status, const char *why)
{
    f->status = status;
    f->why = why;
    return status;
}

/* RFC 9110 token characters. */
static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The request ended with the byte at stream offset end - 1. */
static void next_request(net_front *f, uint64_t end)
{
    int status = f->status;
    const char *why = f->why;
    uint64_t fed = f->fed;
    memset(f, 0, sizeof *f);
    f->state = S_METHOD;
    f->status = status;
    f->why = why;
    f->fed = fed;
    f->req_start = end;
}

void net_front_init(net_front *f)
{
    memset(f, 0, sizeof *f);
    f->state = S_METHOD;
}

static bool tok_is(const net_front *f, const char *s)
{
    size_t n = strlen(s);
    return (size_t)f->n_tok == n && !memcmp(f->tok, s, n);
}

/* The method just ended: one evhttp serves and that may frame a body as it does. */
static int end_method(net_front *f)
{
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    if (tok_is(f, "HEAD")) {
        f->head_method = true; /* evhttp reads no body after HEAD, whatever the headers say */
        return 0;
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (tok_is(f, known[i])) return 0;
    return refuse(f, 501, "unsupported method");
}

/* A header line ended: Content-Length, Transfer-Encoding and Host are checked. */
static int end_header(net_front *f)
{
    while (f->n_val && (f->val[f->n_val - 1] == ' ' || f->val[f->n_val - 1] == '\t'))
        f->n_val--;
    bool too_long = f->n_val >= (int)sizeof f->val;
    if (tok_is(f, "content-length")) {
        uint64_t v = 0;
        if (!f->n_val || too_long || f->n_val > 18) return refuse(f, 400, "invalid Content-Length");
        for (int i = 0; i < f->n_val; i++) {
            if (f->val[i] < '0' || f->val[i] > '9') return refuse(f, 400, "invalid Content-Length");
            v = v * 10 + (uint64_t)(f->val[i] - '0');
        }
        if (f->has_cl && v != f->cl) return refuse(f, 400, "two different Content-Lengths");
        f->has_cl = true;
        f->cl = v;
    } else if (tok_is(f, "transfer-encoding")) {
        if (++f->n_te > 1) return refuse(f, 400, "more than one Transfer-Encoding");
        for (int i = 0; i < f->n_val && !too_long; i++)
            if (f->val[i] >= 'A' && f->val[i] <= 'Z') f->val[i] = (char)(f->val[i] - 'A' + 'a');
        if (too_long || f->n_val != 7 || memcmp(f->val, "chunked", 7))
            return refuse(f, 501, "unsupported Transfer-Encoding (only chunked is)");
        f->chunked = true;
    } else if (tok_is(f, "host")) {
        if (++f->n_host > 1) return refuse(f, 400, "more than one Host");
    }
    return 0;
}

/* The head ended: how long is the body? */
static int end_head(net_front *f)
{
    if (f->n_te && f->has_cl) return refuse(f, 400, "both Content-Length and Transfer-Encoding");
    if (f->n_te && f->http10) return refuse(f, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (f->head_method && (f->n_te || f->cl)) return refuse(f, 400, "a HEAD request with a body");
    if (f->chunked) {
        f->state = S_CHUNK_SIZE;
        f->left = 0;
        f->n_val = 0;
    } else if (f->cl) {
        f->state = S_BODY;
        f->left = f->cl;
    } else {
        next_request(f, f->fed + 1);
    }
    return 0;
}

/* One byte of a header value (or of the request line's end). */
static bool value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static int head_byte(net_front *f, unsigned char c)
{
    if (++f->head > NET_FRONT_MAX_HEAD) return refuse(f, 431, "request header fields too large");
    switch (f->state) {
    case S_METHOD:
        if (c == ' ') {
            if (!f->n_tok) return refuse(f, 400, "malformed request line");
            if (end_method(f)) return f->status;
            f->state = S_TARGET;
            f->line = f->n_tok + 1;
            f->n_tok = 0;
            return 0;
        }
        if (!tchar(c)) return refuse(f, 400, "malformed request line");
        if (f->n_tok == 16) return refuse(f, 501, "unsupported method");
        f->tok[f->n_tok++] = (char)c;
        return 0;
    case S_TARGET:
        if (++f->line > NET_FRONT_MAX_URI) return refuse(f, 414, "request target too long");
        if (c == ' ') {
            if (!f->n_tok) return refuse(f, 400, "malformed request line");
            f->state = S_VERSION;
            f->n_tok = 0;
            return 0;
        }
        if (c < 0x21 || c > 0x7E) return refuse(f, 400, "malformed request target");
        f->n_tok = 1; /* not empty */
        return 0;
    case S_VERSION:
        if (++f->line > NET_FRONT_MAX_URI) return refuse(f, 414, "request target too long");
        if (c == '\r') {
            if (!tok_is(f, "HTTP/1.1") && !tok_is(f, "HTTP/1.0"))
                return refuse(f, 400, "unsupported HTTP version");
            f->http10 = f->tok[7] == '0';
            f->state = S_LINE_LF;
            return 0;
        }
        if (c == '\n') return refuse(f, 400, "bare LF (lines end in CRLF)");
        if (f->n_tok == 8) return refuse(f, 400, "unsupported HTTP version");
        f->tok[f->n_tok++] = (char)c;
        return 0;
    case S_LINE_LF:
    case S_HVALUE_LF:
    case S_HEAD_END_LF:
        if (c != '\n') return refuse(f, 400, "CR not followed by LF");
        if (f->state == S_HVALUE_LF && end_header(f)) return f->status;
        if (f->state == S_HEAD_END_LF) return end_head(f);
        f->state = S_HLINE;
        return 0;
    case S_HLINE:
        if (c == '\r') {
            f->state = S_HEAD_END_LF;
            return 0;
        }
        if (c == ' ' || c == '\t') return refuse(f, 400, "folded header line");
        if (c == '\n') return refuse(f, 400, "bare LF (lines end in CRLF)");
        if (!tchar(c)) return refuse(f, 400, "malformed header name");
        f->state = S_HNAME; /* and c is the name's first character: */
        f->n_tok = 0;
        f->n_val = 0;
        /* fall through */
    case S_HNAME:
        if (c == ':') {
            f->state = S_HVALUE;
            return 0;
        }
        if (c == ' ' || c == '\t') return refuse(f, 400, "whitespace before the colon");
        if (!tchar(c)) return refuse(f, 400, "malformed header name");
        if (f->n_tok < (int)sizeof f->tok)
            f->tok[f->n_tok++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        return 0;
    case S_HVALUE:
        if (c == '\r') {
            f->state = S_HVALUE_LF;
            return 0;
        }
        if (c == '\n') return refuse(f, 400, "bare LF (lines end in CRLF)");
        if (!value_byte(c)) return refuse(f, 400, "control character in a header");
        if ((c == ' ' || c == '\t') && !f->n_val) return 0; /* leading whitespace */
        if (f->n_val < (int)sizeof f->val) f->val[f->n_val++] = (char)c;
        return 0;
    }
    return refuse(f, 400, "malformed request"); /* not reached */
}

static int chunk_byte(net_front *f, unsigned char c)
{
    int h;
    switch (f->state) {
    case S_CHUNK_SIZE:
        if (c == '\r') {
            if (!f->n_val) return refuse(f, 400, "malformed chunk size");
            f->state = S_CHUNK_SIZE_LF;
            return 0;
        }
        if (c == ';') return refuse(f, 400, "chunk extensions are not accepted");
        if ((h = hexval(c)) < 0) return refuse(f, 400, "malformed chunk size");
        if (++f->n_val > 15) return refuse(f, 400, "chunk size too large");
        f->left = f->left * 16 + (uint64_t)h;
        return 0;
    case S_CHUNK_SIZE_LF:
        if (c != '\n') return refuse(f, 400, "CR not followed by LF");
        f->state = f->left ? S_CHUNK_DATA : S_LAST_CR;
        return 0;
    case S_CHUNK_DATA_CR:
        if (c != '\r') return refuse(f, 400, "chunk data not followed by CRLF");
        f->state = S_CHUNK_DATA_LF;
        return 0;
    case S_CHUNK_DATA_LF:
        if (c != '\n') return refuse(f, 400, "chunk data not followed by CRLF");
        f->state = S_CHUNK_SIZE;
        f->n_val = 0;
        f->left = 0;
        return 0;
    case S_LAST_CR:
        if (c != '\r') return refuse(f, 400, "trailers are not accepted");
        f->state = S_LAST_LF;
        return 0;
    case S_LAST_LF:
        if (c != '\n') return refuse(f, 400, "CR not followed by LF");
        next_request(f, f->fed + 1);
        return 0;
    }
    return refuse(f, 400, "malformed request"); /* not reached */
}

int net_front_feed(net_front *f, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t base = f->fed;
    for (size_t i = 0; i < n && !f->status; i++) {
        f->in_request = true;
        f->fed = base + i; /* the offset of byte i, while it is looked at */
        if (f->state == S_BODY || f->state == S_CHUNK_DATA) { /* bytes in bulk */
            size_t take = n - i < f->left ? n - i : (size_t)f->left;
            f->left -= take;
            i += take - 1;
            if (f->left) continue;
            if (f->state == S_BODY)
                next_request(f, base + i + 1);
            else
                f->state = S_CHUNK_DATA_CR;
            continue;
        }
        if (f->state >= S_CHUNK_SIZE)
            chunk_byte(f, p[i]);
        else
            head_byte(f, p[i]);
    }
    if (!f->status) f->fed = base + n;
    return f->status;
}
