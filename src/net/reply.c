/* net/reply.c: JSON replies, OpenAI error bodies, SSE framing and bearer keys (net/reply.h). */
#include "net/reply.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

json_t *net_json_text(const char *s, size_t len)
{
    /* NUL bytes (a <0x00> byte token) would become \u0000, which many JSON readers refuse */
    json_t *v = memchr(s, 0, len) ? NULL : json_stringn(s, len);
    if (v) return v;
    /* invalid UTF-8 (a token that is part of a character, or bad input echoed back) or NUL */
    char *o = malloc(len * 3 + 1);
    if (!o) return json_string("");
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0 || cp == 0) {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        } else {
            memcpy(o + k, s + i, (size_t)n);
            k += (size_t)n;
            i += (size_t)n;
        }
    }
    v = json_stringn(o, k);
    free(o);
    return v ? v : json_string("");
}

void net_reply_json(struct evhttp_request *req, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    struct evbuffer *b = evbuffer_new();
    if (b && text) evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, b);
    if (b) evbuffer_free(b);
    free(text);
    json_decref(v);
}

json_t *net_error_json(const net_error *e)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", net_json_text(e->msg, strlen(e->msg)));
    json_object_set_new(err, "type", json_string(e->type ? e->type : net_error_type(e->status)));
    json_object_set_new(err, "param",
                        e->param[0] ? net_json_text(e->param, strlen(e->param)) : json_null());
    json_object_set_new(err, "code", json_integer(e->status));
    return json_pack("{s:o}", "error", err);
}

char *net_error_text(const net_error *e)
{
    json_t *v = net_error_json(e);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return text;
}

void net_reply_error(struct evhttp_request *req, const net_error *e)
{
    if (e->retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", e->retry_after_s);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
    }
    net_reply_json(req, e->status, net_error_json(e));
}

void net_reply_fail(struct evhttp_request *req, int status, const char *param, const char *msg)
{
    net_error e;
    net_fail(&e, status, param, "%s", msg);
    net_reply_error(req, &e);
}

void net_sse_start(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
}

static void sse_event(struct evhttp_request *req, const char *data)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    evbuffer_add_printf(b, "data: %s\n\n", data);
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
}

void net_sse_send(struct evhttp_request *req, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text) sse_event(req, text);
    free(text);
}

void net_sse_done(struct evhttp_request *req)
{
    sse_event(req, "[DONE]");
}

void net_sse_error(struct evhttp_request *req, const net_error *e)
{
    net_sse_send(req, net_error_json(e));
}

const char *net_bearer(struct evhttp_request *req, size_t *len)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
    *len = strlen(h + 7);
    return h + 7;
}

bool net_bearer_ok(struct evhttp_request *req, const char *key)
{
    if (!key) return true;
    size_t hl;
    const char *h = net_bearer(req, &hl);
    if (!h) return false;
    size_t kl = strlen(key);
    unsigned char diff = (unsigned char)(kl != hl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(key[i] ^ (i < hl ? h[i] : 0));
    return diff == 0;
}
