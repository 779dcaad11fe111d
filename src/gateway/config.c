/* gateway/config.c: JSON config → gw_config, validated field by field (see config.h). */
#include "gateway/config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/secret.h"

#define MAX_CONFIG_BYTES (4u << 20)
#define MAX_ITEMS        4096 /* models, endpoints, tenants, keys... per list */

/* Parsing context: the source name, the JSON path of the field being read, the error. */
typedef struct pctx {
    const char *source;
    char path[256];
    kl_err *err;
} pctx;

static int fail(pctx *p, const char *what)
{
    return kl_errf(p->err, KL_EINVAL, "%s: %s: %s", p->source, p->path[0] ? p->path : "(top)",
                   what);
}

/* Appends ".key" or "[i]" to the path; returns the old length to restore with pop(). */
static size_t push_key(pctx *p, const char *key)
{
    size_t n = strlen(p->path);
    snprintf(p->path + n, sizeof p->path - n, "%s%s", n ? "." : "", key);
    return n;
}

static size_t push_idx(pctx *p, size_t i)
{
    size_t n = strlen(p->path);
    snprintf(p->path + n, sizeof p->path - n, "[%zu]", i);
    return n;
}

static void pop(pctx *p, size_t n)
{
    p->path[n] = 0;
}

/* Fails on any key of obj not in allowed (NULL-terminated): a typo must not pass silently. */
static int only_keys(pctx *p, json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            ok |= !strcmp(k, allowed[i]);
        if (!ok) {
            size_t n = push_key(p, k);
            int rc = fail(p, "unknown field");
            pop(p, n);
            return rc;
        }
    }
    return 0;
}

static int want_object(pctx *p, json_t *v)
{
    return json_is_object(v) ? 0 : fail(p, "expected an object");
}

static int get_int(pctx *p, json_t *obj, const char *key, int lo, int hi, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0; /* keep the default */
    size_t n = push_key(p, key);
    char msg[96];
    int rc = 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(msg, sizeof msg, "expected an integer from %d to %d", lo, hi);
        rc = fail(p, msg);
    } else {
        *out = (int)json_integer_value(v);
    }
    pop(p, n);
    return rc;
}

static int get_num(pctx *p, json_t *obj, const char *key, double lo, double hi, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    size_t n = push_key(p, key);
    char msg[96];
    int rc = 0;
    double x = json_is_number(v) ? json_number_value(v) : (double)NAN;
    if (!(x >= lo && x <= hi)) {
        snprintf(msg, sizeof msg, "expected a number from %g to %g", lo, hi);
        rc = fail(p, msg);
    } else {
        *out = x;
    }
    pop(p, n);
    return rc;
}

/* A non-empty printable string of at most 255 bytes, copied into *out (freeing any old one). */
static int get_str(pctx *p, json_t *obj, const char *key, bool required, char **out)
{
    json_t *v = json_object_get(obj, key);
    size_t n = push_key(p, key);
    int rc = 0;
    if (!v) {
        if (required) rc = fail(p, "missing");
    } else if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255) {
        rc = fail(p, "expected a string of 1 to 255 bytes");
    } else {
        const char *s = json_string_value(v);
        for (const char *c = s; *c && !rc; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) rc = fail(p, "control character in string");
        if (!rc) {
            char *dup = strdup(s);
            if (!dup)
                rc = kl_errf(p->err, KL_ENOMEM, "out of memory");
            else {
                free(*out);
                *out = dup;
            }
        }
    }
    pop(p, n);
    return rc;
}

/* An array of 1..MAX_ITEMS (or 0.. when allow_empty) elements; sets *n. */
static int get_array(pctx *p, json_t *obj, const char *key, bool required, bool allow_empty,
                     json_t **arr, size_t *count)
{
    json_t *v = json_object_get(obj, key);
    *arr = v;
    *count = 0;
    size_t n = push_key(p, key);
    int rc = 0;
    if (!v) {
        if (required) rc = fail(p, "missing");
    } else if (!json_is_array(v)) {
        rc = fail(p, "expected an array");
    } else if ((!allow_empty && json_array_size(v) == 0) || json_array_size(v) > MAX_ITEMS) {
        rc = fail(p, allow_empty ? "too many elements" : "expected 1 to 4096 elements");
    } else {
        *count = json_array_size(v);
    }
    pop(p, n);
    return rc;
}

static int get_str_list(pctx *p, json_t *obj, const char *key, char ***out, int *n_out)
{
    json_t *arr;
    size_t n;
    int rc = get_array(p, obj, key, false, true, &arr, &n);
    if (rc || !n) return rc;
    *out = calloc(n, sizeof **out);
    if (!*out) return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t k = push_key(p, key);
    for (size_t i = 0; i < n && !rc; i++) {
        size_t m = push_idx(p, i);
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255)
            rc = fail(p, "expected a string of 1 to 255 bytes");
        else if (!((*out)[i] = strdup(json_string_value(v))))
            rc = kl_errf(p->err, KL_ENOMEM, "out of memory");
        pop(p, m);
        *n_out = (int)(i + 1);
    }
    pop(p, k);
    return rc;
}

/* http://HOST:PORT with an optional trailing '/', nothing else (no path, user or query). */
static int parse_url(pctx *p, gw_endpoint_cfg *e)
{
    const char *u = e->url;
    if (strncmp(u, "http://", 7)) return fail(p, "expected http://HOST:PORT");
    u += 7;
    const char *colon = strrchr(u, ':');
    if (!colon || colon == u) return fail(p, "expected http://HOST:PORT");
    size_t hl = (size_t)(colon - u);
    if (hl > 253 || memchr(u, '/', hl) || memchr(u, '@', hl))
        return fail(p, "expected http://HOST:PORT");
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || port < 1 || port > 65535 || (*end && strcmp(end, "/")))
        return fail(p, "expected http://HOST:PORT with a port from 1 to 65535");
    e->host = strndup(u, hl);
    if (!e->host) return kl_errf(p->err, KL_ENOMEM, "out of memory");
    e->port = (int)port;
    return 0;
}

/* "api_key_file" or "api_key_env" of a pool or an endpoint: the key the gateway sends its
 * replicas. Read now, so a missing file or variable fails the (re)load, naming the field and
 * the source but never the key. */
static int get_upstream_key(pctx *p, json_t *o, char **out)
{
    char *file = NULL, *env = NULL;
    int rc = get_str(p, o, "api_key_file", false, &file);
    if (!rc) rc = get_str(p, o, "api_key_env", false, &env);
    if (!rc && (file || env)) {
        kl_err e = {0};
        size_t n = push_key(p, file ? "api_key_file" : "api_key_env");
        if (file && env)
            rc = fail(p, "give api_key_file or api_key_env, not both");
        else if (file ? kl_secret_from_file(file, out, &e) : kl_secret_from_env(env, out, &e))
            rc = e.code == KL_ENOMEM ? kl_errf(p->err, KL_ENOMEM, "out of memory") : fail(p, e.msg);
        pop(p, n);
    }
    free(file);
    free(env);
    return rc;
}

static int parse_endpoint(pctx *p, json_t *o, gw_endpoint_cfg *e, const gw_pool_cfg *pool)
{
    static const char *const keys[] = {"url", "weight", "api_key_file", "api_key_env", NULL};
    int rc;
    e->weight = 1;
    if ((rc = want_object(p, o)) || (rc = only_keys(p, o, keys))) return rc;
    if ((rc = get_str(p, o, "url", true, &e->url))) return rc;
    if ((rc = get_num(p, o, "weight", 1e-6, 1e6, &e->weight))) return rc;
    if ((rc = get_upstream_key(p, o, &e->api_key))) return rc;
    if (!e->api_key && pool->api_key && !(e->api_key = strdup(pool->api_key)))
        return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t n = push_key(p, "url");
    rc = parse_url(p, e);
    pop(p, n);
    if (!rc && !(e->region = strdup(pool->region)))
        rc = kl_errf(p->err, KL_ENOMEM, "out of memory");
    return rc;
}

static int parse_pool(pctx *p, json_t *o, gw_pool_cfg *pool)
{
    static const char *const keys[] = {"region",       "adapters",    "endpoints",
                                       "api_key_file", "api_key_env", NULL};
    int rc;
    json_t *arr;
    size_t n;
    if ((rc = want_object(p, o)) || (rc = only_keys(p, o, keys))) return rc;
    if ((rc = get_upstream_key(p, o, &pool->api_key))) return rc;
    if ((rc = get_str(p, o, "region", false, &pool->region))) return rc;
    if (!pool->region && !(pool->region = strdup("default")))
        return kl_errf(p->err, KL_ENOMEM, "out of memory");
    if ((rc = get_str_list(p, o, "adapters", &pool->adapters, &pool->n_adapters))) return rc;
    if ((rc = get_array(p, o, "endpoints", true, false, &arr, &n))) return rc;
    pool->endpoints = calloc(n, sizeof *pool->endpoints);
    if (!pool->endpoints) return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t k = push_key(p, "endpoints");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t m = push_idx(p, i);
        pool->n_endpoints = (int)(i + 1);
        rc = parse_endpoint(p, json_array_get(arr, i), &pool->endpoints[i], pool);
        pop(p, m);
    }
    pop(p, k);
    return rc;
}

static int parse_model(pctx *p, json_t *o, gw_model_cfg *m)
{
    static const char *const keys[] = {"name", "fallback", "pools", NULL};
    int rc;
    json_t *arr;
    size_t n;
    if ((rc = want_object(p, o)) || (rc = only_keys(p, o, keys))) return rc;
    if ((rc = get_str(p, o, "name", true, &m->name))) return rc;
    if ((rc = get_str(p, o, "fallback", false, &m->fallback))) return rc;
    if ((rc = get_array(p, o, "pools", true, false, &arr, &n))) return rc;
    m->pools = calloc(n, sizeof *m->pools);
    if (!m->pools) return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t k = push_key(p, "pools");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t q = push_idx(p, i);
        m->n_pools = (int)(i + 1);
        rc = parse_pool(p, json_array_get(arr, i), &m->pools[i]);
        pop(p, q);
    }
    pop(p, k);
    return rc;
}

static int parse_split(pctx *p, json_t *o, gw_split_cfg *s)
{
    static const char *const keys[] = {"model", "targets", NULL};
    static const char *const tkeys[] = {"model", "weight", NULL};
    int rc;
    json_t *arr;
    size_t n;
    if ((rc = want_object(p, o)) || (rc = only_keys(p, o, keys))) return rc;
    if ((rc = get_str(p, o, "model", true, &s->model))) return rc;
    if ((rc = get_array(p, o, "targets", true, false, &arr, &n))) return rc;
    s->targets = calloc(n, sizeof *s->targets);
    if (!s->targets) return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t k = push_key(p, "targets");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t q = push_idx(p, i);
        json_t *t = json_array_get(arr, i);
        s->n_targets = (int)(i + 1);
        s->targets[i].weight = 1;
        if (!(rc = want_object(p, t)) && !(rc = only_keys(p, t, tkeys)) &&
            !(rc = get_str(p, t, "model", true, &s->targets[i].model)))
            rc = get_num(p, t, "weight", 1e-6, 1e6, &s->targets[i].weight);
        pop(p, q);
    }
    pop(p, k);
    return rc;
}

static int parse_tenant(pctx *p, json_t *o, gw_tenant_cfg *t)
{
    static const char *const keys[] = {
        "name", "api_keys", "priority", "requests_per_min", "tokens_per_min", "cache_salt", NULL};
    int rc;
    if ((rc = want_object(p, o)) || (rc = only_keys(p, o, keys))) return rc;
    if ((rc = get_str(p, o, "name", true, &t->name))) return rc;
    if ((rc = get_str_list(p, o, "api_keys", &t->api_keys, &t->n_api_keys))) return rc;
    if (t->n_api_keys == 0) {
        size_t n = push_key(p, "api_keys");
        rc = fail(p, "a tenant needs at least one API key");
        pop(p, n);
        return rc;
    }
    if ((rc = get_int(p, o, "priority", -1000, 1000, &t->priority))) return rc;
    if ((rc = get_num(p, o, "requests_per_min", 0, 1e9, &t->requests_per_min))) return rc;
    if ((rc = get_num(p, o, "tokens_per_min", 0, 1e12, &t->tokens_per_min))) return rc;
    return get_str(p, o, "cache_salt", false, &t->cache_salt);
}

/* Reads a sub-object of simple settings: each entry is {key, lo, hi, &field}. */
typedef struct int_field {
    const char *key;
    int lo, hi;
    int *field;
} int_field;

static int parse_ints(pctx *p, json_t *root, const char *section, const int_field *f)
{
    json_t *o = json_object_get(root, section);
    if (!o) return 0;
    size_t n = push_key(p, section);
    int rc = want_object(p, o);
    const char *keys[16];
    int k = 0;
    for (; f[k].key; k++)
        keys[k] = f[k].key;
    keys[k] = NULL;
    if (!rc) rc = only_keys(p, o, keys);
    for (int i = 0; f[i].key && !rc; i++)
        rc = get_int(p, o, f[i].key, f[i].lo, f[i].hi, f[i].field);
    pop(p, n);
    return rc;
}

static void defaults(gw_config *c)
{
    c->listen_port = 9000;
    c->client_timeout_ms = 60000;
    c->max_conns = 0; /* as many as the open-file limit allows */
    c->metrics_port = -1;
    c->max_unsent = 8 << 20;
    c->scrape_interval_ms = 100;
    c->scrape_stale_ms = 1000;
    c->scrape_timeout_ms = 500;
    c->health_interval_ms = 500;
    c->health_timeout_ms = 1000;
    c->eject_ms = 1000;
    c->eject_max_ms = 30000;
    c->unhealthy_threshold = 3;
    c->healthy_threshold = 2;
    c->retry_attempts = 3;
    c->retry_budget_ms = 30000;
    c->connect_timeout_ms = 1000;
    c->first_byte_timeout_ms = 60000;
    c->idle_timeout_ms = 30000;
    c->queue_max = 256;
    c->queue_max_wait_ms = 10000;
    c->sat_max_waiting = 8;
    c->sat_max_inflight = 64;
    c->sat_max_kv = 0.95;
    c->w_queue = c->w_kv = c->w_adapter = c->w_inflight = 1;
    c->w_prefix = 2;
}

static void free_strs(char **s, int n);

/* listen.allowed_origins: ["https://app.example", ...] or ["*"] (net/cors.h). */
static int get_origins(pctx *p, json_t *obj, net_cors **out)
{
    char **list = NULL;
    int n = 0;
    int rc = get_str_list(p, obj, "allowed_origins", &list, &n);
    if (!rc && n) {
        kl_err e = {0};
        size_t k = push_key(p, "allowed_origins");
        if (net_cors_from(out, (const char *const *)list, n, &e))
            rc = e.code == KL_ENOMEM ? kl_errf(p->err, KL_ENOMEM, "out of memory") : fail(p, e.msg);
        pop(p, k);
    }
    free_strs(list, n);
    return rc;
}

static int parse_top(pctx *p, json_t *root, gw_config *c)
{
    static const char *const keys[] = {
        "listen",  "region",         "scrape", "health", "retry",  "queue",   "saturation",
        "scorers", "session_header", "policy", "models", "splits", "tenants", NULL};
    int rc;
    if ((rc = want_object(p, root)) || (rc = only_keys(p, root, keys))) return rc;
    json_t *listen = json_object_get(root, "listen");
    if (listen) {
        static const char *const lkeys[] = {
            "host",       "port",         "client_timeout_ms", "max_conns",
            "max_unsent", "metrics_port", "allowed_origins",   NULL};
        size_t n = push_key(p, "listen");
        if (!(rc = want_object(p, listen)) && !(rc = only_keys(p, listen, lkeys)) &&
            !(rc = get_str(p, listen, "host", false, &c->listen_host)) &&
            !(rc = get_int(p, listen, "port", 0, 65535, &c->listen_port)) &&
            !(rc = get_int(p, listen, "max_conns", 1, 1 << 20, &c->max_conns)) &&
            !(rc = get_int(p, listen, "max_unsent", 4096, 1 << 30, &c->max_unsent)) &&
            !(rc = get_int(p, listen, "metrics_port", 0, 65535, &c->metrics_port)))
            rc = get_int(p, listen, "client_timeout_ms", 100, 3600000, &c->client_timeout_ms);
        if (!rc) rc = get_origins(p, listen, &c->cors);
        pop(p, n);
        if (rc) return rc;
    }
    if ((rc = get_str(p, root, "region", false, &c->region))) return rc;
    if ((rc = get_str(p, root, "session_header", false, &c->session_header))) return rc;
    char *policy = NULL;
    if ((rc = get_str(p, root, "policy", false, &policy))) return rc;
    if (policy && strcmp(policy, "score") && strcmp(policy, "round_robin")) {
        size_t n = push_key(p, "policy");
        rc = fail(p, "must be \"score\" or \"round_robin\"");
        pop(p, n);
    }
    c->round_robin = policy && !strcmp(policy, "round_robin");
    free(policy);
    if (rc) return rc;
    const int_field scrape[] = {{"interval_ms", 10, 60000, &c->scrape_interval_ms},
                                {"stale_ms", 10, 600000, &c->scrape_stale_ms},
                                {"timeout_ms", 10, 60000, &c->scrape_timeout_ms},
                                {0}};
    const int_field health[] = {{"interval_ms", 10, 60000, &c->health_interval_ms},
                                {"timeout_ms", 10, 60000, &c->health_timeout_ms},
                                {"eject_ms", 10, 600000, &c->eject_ms},
                                {"eject_max_ms", 10, 3600000, &c->eject_max_ms},
                                {"unhealthy_threshold", 1, 100, &c->unhealthy_threshold},
                                {"healthy_threshold", 1, 100, &c->healthy_threshold},
                                {0}};
    const int_field retry[] = {{"attempts", 1, 10, &c->retry_attempts},
                               {"budget_ms", 10, 3600000, &c->retry_budget_ms},
                               {"connect_timeout_ms", 10, 60000, &c->connect_timeout_ms},
                               {"first_byte_timeout_ms", 10, 3600000, &c->first_byte_timeout_ms},
                               {"idle_timeout_ms", 10, 3600000, &c->idle_timeout_ms},
                               {0}};
    const int_field queue[] = {{"max", 0, 1000000, &c->queue_max},
                               {"max_wait_ms", 0, 3600000, &c->queue_max_wait_ms},
                               {0}};
    if ((rc = parse_ints(p, root, "scrape", scrape)) ||
        (rc = parse_ints(p, root, "health", health)) ||
        (rc = parse_ints(p, root, "retry", retry)) || (rc = parse_ints(p, root, "queue", queue)))
        return rc;
    json_t *sat = json_object_get(root, "saturation");
    if (sat) {
        static const char *const skeys[] = {"max_waiting", "max_kv", "max_inflight", NULL};
        size_t n = push_key(p, "saturation");
        if (!(rc = want_object(p, sat)) && !(rc = only_keys(p, sat, skeys)) &&
            !(rc = get_int(p, sat, "max_waiting", 0, 1000000, &c->sat_max_waiting)) &&
            !(rc = get_int(p, sat, "max_inflight", 1, 1000000, &c->sat_max_inflight)))
            rc = get_num(p, sat, "max_kv", 0, 1, &c->sat_max_kv);
        pop(p, n);
        if (rc) return rc;
    }
    json_t *sc = json_object_get(root, "scorers");
    if (sc) {
        static const char *const wkeys[] = {"queue", "kv", "prefix", "adapter", "inflight", NULL};
        size_t n = push_key(p, "scorers");
        if (!(rc = want_object(p, sc)) && !(rc = only_keys(p, sc, wkeys)) &&
            !(rc = get_num(p, sc, "queue", 0, 1000, &c->w_queue)) &&
            !(rc = get_num(p, sc, "kv", 0, 1000, &c->w_kv)) &&
            !(rc = get_num(p, sc, "prefix", 0, 1000, &c->w_prefix)) &&
            !(rc = get_num(p, sc, "adapter", 0, 1000, &c->w_adapter)))
            rc = get_num(p, sc, "inflight", 0, 1000, &c->w_inflight);
        pop(p, n);
        if (rc) return rc;
    }
    json_t *arr;
    size_t n;
    if ((rc = get_array(p, root, "models", true, false, &arr, &n))) return rc;
    if (!(c->models = calloc(n, sizeof *c->models)))
        return kl_errf(p->err, KL_ENOMEM, "out of memory");
    size_t k = push_key(p, "models");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t q = push_idx(p, i);
        c->n_models = (int)(i + 1);
        rc = parse_model(p, json_array_get(arr, i), &c->models[i]);
        pop(p, q);
    }
    pop(p, k);
    if (rc || (rc = get_array(p, root, "splits", false, true, &arr, &n))) return rc;
    if (n && !(c->splits = calloc(n, sizeof *c->splits)))
        return kl_errf(p->err, KL_ENOMEM, "out of memory");
    k = push_key(p, "splits");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t q = push_idx(p, i);
        c->n_splits = (int)(i + 1);
        rc = parse_split(p, json_array_get(arr, i), &c->splits[i]);
        pop(p, q);
    }
    pop(p, k);
    if (rc || (rc = get_array(p, root, "tenants", false, true, &arr, &n))) return rc;
    if (n && !(c->tenants = calloc(n, sizeof *c->tenants)))
        return kl_errf(p->err, KL_ENOMEM, "out of memory");
    k = push_key(p, "tenants");
    for (size_t i = 0; i < n && !rc; i++) {
        size_t q = push_idx(p, i);
        c->n_tenants = (int)(i + 1);
        rc = parse_tenant(p, json_array_get(arr, i), &c->tenants[i]);
        pop(p, q);
    }
    pop(p, k);
    return rc;
}

/* The first endpoint of the config with this URL. */
static const gw_endpoint_cfg *first_listing(const gw_config *c, const char *url)
{
    for (int m = 0; m < c->n_models; m++)
        for (int q = 0; q < c->models[m].n_pools; q++)
            for (int e = 0; e < c->models[m].pools[q].n_endpoints; e++)
                if (!strcmp(c->models[m].pools[q].endpoints[e].url, url))
                    return &c->models[m].pools[q].endpoints[e];
    return NULL;
}

/* Cross-field checks: unique names and keys, references that resolve, no fallback cycle. */
static int check_refs(pctx *p, gw_config *c)
{
    for (int i = 0; i < c->n_models; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(c->models[i].name, c->models[j].name)) {
                snprintf(p->path, sizeof p->path, "models[%d].name", i);
                return fail(p, "duplicate model name");
            }
    for (int i = 0; i < c->n_splits; i++) {
        gw_split_cfg *s = &c->splits[i];
        snprintf(p->path, sizeof p->path, "splits[%d].model", i);
        if (gw_config_model(c, s->model)) return fail(p, "a split may not reuse a model's name");
        for (int j = 0; j < i; j++)
            if (!strcmp(c->splits[j].model, s->model)) return fail(p, "duplicate split");
        for (int t = 0; t < s->n_targets; t++)
            if (!gw_config_model(c, s->targets[t].model)) {
                snprintf(p->path, sizeof p->path, "splits[%d].targets[%d].model", i, t);
                return fail(p, "no model of that name");
            }
    }
    for (int i = 0; i < c->n_models; i++) {
        snprintf(p->path, sizeof p->path, "models[%d].fallback", i);
        const gw_model_cfg *m = &c->models[i];
        for (int hops = 0; m->fallback; hops++) {
            const gw_model_cfg *next = gw_config_model(c, m->fallback);
            if (!next) return fail(p, "no model of that name");
            if (next == &c->models[i] || hops > c->n_models) return fail(p, "fallback cycle");
            m = next;
        }
    }
    /* an endpoint is one replica however often it is listed (gateway.c): one key for it
     * (quadratic, so only when there are keys at all) */
    bool keys = false;
    for (int m = 0; m < c->n_models; m++)
        for (int q = 0; q < c->models[m].n_pools; q++)
            for (int e = 0; e < c->models[m].pools[q].n_endpoints; e++)
                keys |= c->models[m].pools[q].endpoints[e].api_key != NULL;
    for (int m = 0; keys && m < c->n_models; m++)
        for (int q = 0; q < c->models[m].n_pools; q++)
            for (int e = 0; e < c->models[m].pools[q].n_endpoints; e++) {
                const gw_endpoint_cfg *x = &c->models[m].pools[q].endpoints[e];
                const gw_endpoint_cfg *y = first_listing(c, x->url);
                if (y != x && (!x->api_key != !y->api_key ||
                               (x->api_key && strcmp(x->api_key, y->api_key)))) {
                    snprintf(p->path, sizeof p->path, "models[%d].pools[%d].endpoints[%d]", m, q,
                             e);
                    return fail(p, "listed before with another upstream key");
                }
            }
    for (int i = 0; i < c->n_tenants; i++)
        for (int a = 0; a < c->tenants[i].n_api_keys; a++)
            for (int j = 0; j <= i; j++)
                for (int b = 0; b < (j == i ? a : c->tenants[j].n_api_keys); b++)
                    if (!strcmp(c->tenants[i].api_keys[a], c->tenants[j].api_keys[b])) {
                        snprintf(p->path, sizeof p->path, "tenants[%d].api_keys[%d]", i, a);
                        return fail(p, "API key used twice");
                    }
    p->path[0] = 0;
    return 0;
}

int gw_config_parse(gw_config **out, const char *text, size_t len, const char *source, kl_err *err)
{
    *out = NULL;
    pctx p = {.source = source ? source : "config", .err = err};
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return kl_errf(err, KL_EINVAL, "%s: line %d column %d: %s", p.source, je.line, je.column,
                       je.text);
    gw_config *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    defaults(c);
    int rc = parse_top(&p, root, c);
    json_decref(root);
    if (!rc) rc = check_refs(&p, c);
    if (!rc && !c->listen_host && !(c->listen_host = strdup("127.0.0.1")))
        rc = kl_errf(err, KL_ENOMEM, "out of memory");
    if (!rc && !c->session_header && !(c->session_header = strdup("x-session-id")))
        rc = kl_errf(err, KL_ENOMEM, "out of memory");
    if (rc) {
        gw_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int gw_config_load(gw_config **out, const char *path, kl_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kl_errf(err, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_BYTES + 1, f) : 0;
    int bad_read = ferror(f);
    fclose(f);
    int rc;
    if (!buf)
        rc = kl_errf(err, KL_ENOMEM, "out of memory");
    else if (bad_read)
        rc = kl_errf(err, KL_EIO, "%s: read error", path);
    else if (n > MAX_CONFIG_BYTES)
        rc = kl_errf(err, KL_EINVAL, "%s: larger than 4 MiB", path);
    else
        rc = gw_config_parse(out, buf, n, path, err);
    free(buf);
    return rc;
}

static void free_strs(char **s, int n)
{
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

void gw_config_free(gw_config *c)
{
    if (!c) return;
    net_cors_free(c->cors);
    for (int i = 0; i < c->n_models; i++) {
        gw_model_cfg *m = &c->models[i];
        for (int j = 0; j < m->n_pools; j++) {
            gw_pool_cfg *pool = &m->pools[j];
            for (int e = 0; e < pool->n_endpoints; e++) {
                free(pool->endpoints[e].url);
                free(pool->endpoints[e].host);
                free(pool->endpoints[e].region);
                kl_secret_free(pool->endpoints[e].api_key);
            }
            free(pool->endpoints);
            free(pool->region);
            kl_secret_free(pool->api_key);
            free_strs(pool->adapters, pool->n_adapters);
        }
        free(m->pools);
        free(m->name);
        free(m->fallback);
    }
    free(c->models);
    for (int i = 0; i < c->n_splits; i++) {
        for (int t = 0; t < c->splits[i].n_targets; t++)
            free(c->splits[i].targets[t].model);
        free(c->splits[i].targets);
        free(c->splits[i].model);
    }
    free(c->splits);
    for (int i = 0; i < c->n_tenants; i++) {
        free(c->tenants[i].name);
        free_strs(c->tenants[i].api_keys, c->tenants[i].n_api_keys);
        free(c->tenants[i].cache_salt);
    }
    free(c->tenants);
    free(c->listen_host);
    free(c->region);
    free(c->session_header);
    free(c);
}

const gw_model_cfg *gw_config_model(const gw_config *c, const char *name)
{
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return &c->models[i];
    return NULL;
}

const gw_split_cfg *gw_config_split(const gw_config *c, const char *name)
{
    for (int i = 0; i < c->n_splits; i++)
        if (!strcmp(c->splits[i].model, name)) return &c->splits[i];
    return NULL;
}
