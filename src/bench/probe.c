/* bench/probe.c: small blocking GETs before a run: the model an endpoint serves, and whether
 * it is ready (see probe.h and bench.h). */
#include "bench/probe.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

typedef struct get_probe {
    char *body;
    size_t len;
    int status;
    bool done;
} get_probe;

static void get_chunk(struct evhttp_request *req, void *arg)
{
    get_probe *p = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (p->len + n < (1u << 20)) {
        char *b = realloc(p->body, p->len + n + 1);
        if (b) {
            p->body = b;
            evbuffer_remove(in, b + p->len, n);
            p->len += n;
            b[p->len] = 0;
        }
    }
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void get_done(struct evhttp_request *req, void *arg)
{
    get_probe *p = arg;
    if (req) {
        p->status = evhttp_request_get_response_code(req);
        get_chunk(req, arg);
    }
    p->done = true;
}

/* GET prefix+path on t (POST with post_body when not NULL), waiting at most 5 s. Returns the
 * HTTP status (0: no answer) and the body in *body (caller frees; NULL if none). */
static int http_call(struct event_base *base, const kb_target *t, const char *api_key,
                     const char *path, const char *post_body, char **body)
{
    get_probe p = {0};
    *body = NULL;
    struct evhttp_connection *conn =
        evhttp_connection_base_new(base, NULL, t->host, (unsigned short)t->port);
    if (!conn) return 0;
    struct timeval tv = {5, 0};
    evhttp_connection_set_timeout_tv(conn, &tv);
    evhttp_connection_set_retries(conn, 0);
    struct evhttp_request *req = evhttp_request_new(get_done, &p);
    char host[300], full[300], auth[600];
    snprintf(host, sizeof host, "%s:%d", t->host, t->port);
    snprintf(full, sizeof full, "%s%s", t->prefix, path);
    if (req) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Host", host);
        if (api_key) {
            snprintf(auth, sizeof auth, "Bearer %s", api_key);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Authorization", auth);
        }
        if (post_body) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                              "application/json");
            evbuffer_add(evhttp_request_get_output_buffer(req), post_body, strlen(post_body));
        }
        if (evhttp_make_request(conn, req, post_body ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, full) !=
            0) {
            evhttp_request_free(req);
            req = NULL;
        }
    }
    while (req && !p.done)
        if (event_base_loop(base, EVLOOP_ONCE) < 0) break;
    evhttp_connection_free(conn);
    *body = p.body;
    return p.status;
}

int kb_probe_model(struct event_base *base, const kb_target *t, const char *api_key, char *name,
                   size_t cap)
{
    char *body;
    int status = http_call(base, t, api_key, "/v1/models", NULL, &body);
    int rc = -1;
    json_t *j = status == 200 && body ? json_loads(body, 0, NULL) : NULL;
    const char *id =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
    if (id && strlen(id) < cap) {
        memcpy(name, id, strlen(id) + 1);
        rc = 0;
    }
    json_decref(j);
    free(body);
    return rc;
}

int kb_wait_ready(const kb_config *c, double seconds, kl_err *err)
{
    struct event_base *base = event_base_new();
    if (!base) return kl_errf(err, KL_ENOMEM, "bench: could not create an event base");
    int rc = 0;
    for (int t = 0; t < c->n_targets && !rc; t++) {
        int64_t end = kl_now_ns() + (int64_t)(seconds * 1e9);
        int status = 0;
        for (;;) {
            char *body;
            status = http_call(base, &c->target[t], c->api_key, "/v1/models", NULL, &body);
            free(body);
            if (status == 200) break;
            if (kl_now_ns() >= end) {
                char got[32] = "no answer";
                if (status) snprintf(got, sizeof got, "status %d", status);
                rc = kl_errf(err, KL_EBUSY, "%s: not ready after %g s (GET /v1/models: %s)",
                             c->target[t].url, seconds, got);
                break;
            }
            struct timespec ts = {0, 250000000};
            nanosleep(&ts, NULL);
        }
    }
    event_base_free(base);
    return rc;
}

int kb_http_post(struct event_base *base, const kb_target *t, const char *api_key, const char *path,
                 const char *json, char **body)
{
    return http_call(base, t, api_key, path, json, body);
}

void kb_probe_spec(struct event_base *base, const kb_target *t, const char *api_key, kb_spec *out)
{
    char *body;
    int status = http_call(base, t, api_key, "/metrics", NULL, &body);
    memset(out, 0, sizeof *out);
    if (status == 200 && body) kb_spec_parse(body, out);
    free(body);
}
