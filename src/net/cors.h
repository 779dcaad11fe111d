/* net/cors.h: Cross-Origin Resource Sharing for the HTTP fronts (kiln serve, kiln gateway), so
 * that a web page served from an allowed origin can call the API from a browser.
 *
 * Off unless origins are given. With a list, a request whose Origin is in it gets
 * `Access-Control-Allow-Origin: <that origin>` and `Vary: Origin`; with "*", any origin gets
 * `Access-Control-Allow-Origin: *`. `Access-Control-Allow-Credentials` is never sent: the API
 * key travels in the Authorization header, which a page can send without credentials mode,
 * and a wildcard with credentials would let any site call the API with a user's cookies. A
 * preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin is
 * answered here, 204 with the methods, the headers asked for and a max age; any other origin
 * gets no CORS header at all, so the browser blocks the call. */
#ifndef KILN_NET_CORS_H
#define KILN_NET_CORS_H
#include <event2/http.h>
#include <stdbool.h>

#include "base/err.h"

#define NET_CORS_MAX_ORIGINS 64
#define NET_CORS_MAX_AGE_S   600 /* how long a browser may cache a preflight's answer */

typedef struct net_cors net_cors;

/* Parses a comma-separated list of origins ("https://app.example.com,http://localhost:3000")
 * or "*" alone. Returns 0 with *out, or KL_EINVAL naming the entry that is not an origin
 * (http or https://HOST[:PORT], nothing after), or KL_ENOMEM. */
int net_cors_parse(net_cors **out, const char *list, kl_err *err);
/* The same from n strings (a config file's array). */
int net_cors_from(net_cors **out, const char *const *origins, int n, kl_err *err);
void net_cors_free(net_cors *c); /* NULL is fine */
/* Whether origin (a request's Origin header) is allowed by c. */
bool net_cors_allows(const net_cors *c, const char *origin);
/* Call first in a request handler, before authentication (a preflight carries no key).
 * Returns true when it answered the request (a preflight from an allowed origin); else adds
 * the headers an allowed origin's response gets (none for others) and returns false. With c
 * NULL (CORS off) it does nothing and returns false. */
bool net_cors_handle(const net_cors *c, struct evhttp_request *req);
#endif
