/* net/cors.c: CORS origins and the headers they get (see cors.h). */
#include "net/cors.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ORIGIN_LEN 256

struct net_cors {
    bool any; /* "*" */
    int n;
    char origin[NET_CORS_MAX_ORIGINS][MAX_ORIGIN_LEN];
};

/* An origin as browsers send it: http or https, "://", a host of letters, digits, '-', '.'
 * (or a bracketed IPv6 address), an optional ":PORT", nothing after. */
static bool is_origin(const char *s, size_t len)
{
    size_t at;
    if (len > 7 && !strncasecmp(s, "http://", 7))
        at = 7;
    else if (len > 8 && !strncasecmp(s, "https://", 8))
        at = 8;
    else
        return false;
    size_t host = at;
    if (s[at] == '[') { /* [v6] */
        while (at < len && s[at] != ']')
            if (!strchr("0123456789abcdefABCDEF:.[", s[at++])) return false;
        if (at == len) return false;
        at++;
    } else {
        while (at < len && (s[at] == '-' || s[at] == '.' || (s[at] >= 'a' && s[at] <= 'z') ||
                            (s[at] >= 'A' && s[at] <= 'Z') || (s[at] >= '0' && s[at] <= '9')))
            at++;
    }
    if (at == host) return false;
    if (at < len && s[at] == ':') {
        size_t digits = ++at;
        while (at < len && s[at] >= '0' && s[at] <= '9')
            at++;
        if (at == digits || at - digits > 5) return false;
    }
    return at == len;
}

static int add(net_cors *c, const char *s, size_t len, kl_err *err)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 1 && *s == '*') {
        c->any = true;
        return 0;
    }
    if (len >= MAX_ORIGIN_LEN || !is_origin(s, len))
        return kl_errf(err, KL_EINVAL,
                       "'%.*s' is not an origin (http or https://HOST[:PORT], nothing after, or "
                       "* alone)",
                       (int)(len > 80 ? 80 : len), s);
    if (c->n == NET_CORS_MAX_ORIGINS)
        return kl_errf(err, KL_EINVAL, "more than %d origins", NET_CORS_MAX_ORIGINS);
    memcpy(c->origin[c->n], s, len);
    c->origin[c->n++][len] = 0;
    return 0;
}

static int finish(net_cors **out, net_cors *c, int rc, kl_err *err)
{
    if (!rc && c->any && c->n)
        rc = kl_errf(err, KL_EINVAL, "'*' must be alone: it allows every origin");
    if (!rc && !c->any && !c->n) rc = kl_errf(err, KL_EINVAL, "no origin given");
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int net_cors_parse(net_cors **out, const char *list, kl_err *err)
{
    *out = NULL;
    net_cors *c = calloc(1, sizeof *c);
    if (!c) return kl_errf(err, KL_ENOMEM, "out of memory");
    int rc = 0;
    for (const char *p = list; !rc;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        rc = add(c, p, len, err);
        if (!comma) break;
        p = comma + 1;
    }
    return finish(out, c, rc, err);
}

int net_cors_from(net_cors **out, const char *const *origins, int n, kl_err *err)
{
    *out = NULL;
    net_cors *c = calloc(1, sizeof *c);
    if (!c) return kl_errf(err, KL_ENOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = add(c, origins[i], strlen(origins[i]), err);
    return finish(out, c, rc, err);
}

void net_cors_free(net_cors *c)
{
    free(c);
}

bool net_cors_allows(const net_cors *c, const char *origin)
{
    if (!c || !origin || !is_origin(origin, strlen(origin))) return false;
    if (c->any) return true;
    for (int i = 0; i < c->n; i++)
        if (!strcasecmp(c->origin[i], origin)) return true;
    return false;
}

/* A list of header names (tokens separated by commas and spaces), as a preflight asks for. */
static bool header_list(const char *s)
{
    if (!s || strlen(s) > 1024) return false;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~, ", *s) && !(*s >= '0' && *s <= '9') &&
            !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z'))
            return false;
    return true;
}

bool net_cors_handle(const net_cors *c, struct evhttp_request *req)
{
    if (!c) return false;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    if (!net_cors_allows(c, origin)) return false;
    evhttp_add_header(out, "Access-Control-Allow-Origin", c->any ? "*" : origin);
    if (!c->any) evhttp_add_header(out, "Vary", "Origin");
    const char *method = evhttp_find_header(in, "Access-Control-Request-Method");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_OPTIONS || !method) {
        /* an actual request: let the page read the headers clients act on */
        evhttp_add_header(out, "Access-Control-Expose-Headers",
                          "Retry-After, X-Request-Id, X-Kiln-Fallback");
        return false;
    }
    const char *want = evhttp_find_header(in, "Access-Control-Request-Headers");
    char age[16];
    snprintf(age, sizeof age, "%d", NET_CORS_MAX_AGE_S);
    evhttp_add_header(out, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(out, "Access-Control-Allow-Headers",
                      header_list(want) && *want ? want : "Authorization, Content-Type");
    evhttp_add_header(out, "Access-Control-Max-Age", age);
    evhttp_send_reply(req, 204, "No Content", NULL);
    return true;
}
