/* net/reply.h: answers on an evhttp request, written once for kiln serve and kiln gateway:
 * a JSON reply, the OpenAI error body (net/error.h), Server-Sent Events framing, and the
 * bearer-key check. */
#ifndef KILN_NET_REPLY_H
#define KILN_NET_REPLY_H
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "net/error.h"

/* s[0..len) as a JSON string; invalid UTF-8 and NUL bytes (which many JSON readers refuse as
 * \u0000) become U+FFFD. Never NULL unless out of memory twice. A new reference. */
json_t *net_json_text(const char *s, size_t len);

/* Sends v (compact JSON, Content-Type: application/json) with status; takes v (NULL: an empty
 * body). */
void net_reply_json(struct evhttp_request *req, int status, json_t *v);

/* OpenAI's error object {"error": {"message", "type", "param" (null when none), "code"}}. */
json_t *net_error_json(const net_error *e);
/* The same as compact JSON text (malloc'd; NULL when out of memory), for a writer that has no
 * evhttp request (net/guard.c answers below evhttp). */
char *net_error_text(const net_error *e);
/* Sends e as its status with the error body, and Retry-After when e asks for it. */
void net_reply_error(struct evhttp_request *req, const net_error *e);
/* net_fail + net_reply_error in one call, for the one-line refusals of a router. */
void net_reply_fail(struct evhttp_request *req, int status, const char *param, const char *msg);

/* Server-Sent Events: 200 with text/event-stream, then one `data: <json>` event per call,
 * then `data: [DONE]` (a normal end) or an error event (an abnormal one) before
 * evhttp_send_reply_end. */
void net_sse_start(struct evhttp_request *req);
/* One event holding v (compact JSON); takes v. */
void net_sse_send(struct evhttp_request *req, json_t *v);
/* The event that ends a complete stream: data: [DONE]. */
void net_sse_done(struct evhttp_request *req);
/* An error event (the error body as the event): the stream ended without its answer. */
void net_sse_error(struct evhttp_request *req, const net_error *e);

/* The token of an "Authorization: Bearer <token>" header (its length in *len), or NULL. */
const char *net_bearer(struct evhttp_request *req, size_t *len);
/* True when key is NULL (no key required) or the request's bearer token is key; compared in
 * constant time over the key's length, so timing says nothing of how much of it matched. */
bool net_bearer_ok(struct evhttp_request *req, const char *key);
#endif
