/* gateway/config.h: the gateway's one configuration file (JSON), parsed and validated as
 * hostile input: unknown keys, wrong types, out-of-range numbers, dangling model references
 * and fallback cycles are errors naming the path of the offending field
 * ("gw.json: models[0].pools[0].endpoints[1].url: expected http://HOST:PORT").
 *
 * Shape (every field but "models" optional):
 * {
 *   "listen": {"host": "127.0.0.1", "port": 9000, "client_timeout_ms": 60000,
 *              "max_conns": 0, "max_unsent": 8388608, "metrics_port": 9100,
 *              "allowed_origins": ["https://app.example.com"]},     CORS; ["*"]: any origin
 *   "region": "us-east",                       preferred region; others are failover
 *   "scrape": {"interval_ms": 100, "stale_ms": 1000, "timeout_ms": 500},
 *   "health": {"interval_ms": 500, "timeout_ms": 1000, "eject_ms": 1000, "eject_max_ms": 30000,
 *              "unhealthy_threshold": 3, "healthy_threshold": 2},
 *       an endpoint is taken out after unhealthy_threshold failed checks in a row, and back
 *       in after healthy_threshold passing ones (at start, after its first)
 *   "retry": {"attempts": 3, "budget_ms": 30000, "connect_timeout_ms": 1000,
 *             "first_byte_timeout_ms": 60000, "idle_timeout_ms": 30000},
 *       per attempt: connected within connect_timeout_ms, the replica's response headers
 *       within first_byte_timeout_ms (for a non-streamed request that is the whole
 *       generation), then no silence longer than idle_timeout_ms; past any of them the
 *       attempt fails and the next endpoint is tried while nothing reached the client
 *   "queue": {"max": 256, "max_wait_ms": 10000},
 *   "saturation": {"max_waiting": 8, "max_kv": 0.95, "max_inflight": 64},
 *   "scorers": {"queue": 1, "kv": 1, "prefix": 2, "adapter": 1, "inflight": 1},
 *   "session_header": "x-session-id",
 *   "policy": "score" | "round_robin",
 *   "models": [{"name": "chat-v1", "fallback": "small",
 *               "pools": [{"region": "us-east", "adapters": ["sql"],
 *                          "api_key_file": "/run/secrets/replica-key",   or "api_key_env": "VAR"
 *                          "endpoints": [{"url": "http://127.0.0.1:8001", "weight": 1}]}]}],
 *       the key replicas started with --api-key want, sent as Authorization: Bearer; an
 *       endpoint may have its own (the same two fields); never written in the config itself
 *   "splits": [{"model": "chat", "targets": [{"model": "chat-v1", "weight": 90},
 *                                            {"model": "chat-v2", "weight": 10}]}],
 *   "tenants": [{"name": "acme", "api_keys": ["sk-1"], "priority": 1,
 *                "requests_per_min": 600, "tokens_per_min": 100000, "cache_salt": "acme"}]
 * }
 * With no "tenants", the gateway needs no API key. A tenant without "cache_salt" gets
 * "kiln-tenant:<name>" (gateway/limits.h: how requests are salted). */
#ifndef KILN_GATEWAY_CONFIG_H
#define KILN_GATEWAY_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"
#include "net/cors.h"

typedef struct gw_endpoint_cfg {
    char *url;  /* as written */
    char *host; /* parsed from url */
    int port;
    char *region;  /* the pool's region */
    double weight; /* > 0 */
    char *api_key; /* sent to the replica (its own, else its pool's); NULL: none. Never logged */
} gw_endpoint_cfg;

typedef struct gw_pool_cfg {
    char *region;
    char **adapters; /* LoRA adapter names this pool serves */
    char *api_key;   /* api_key_file / api_key_env, read; NULL: none */
    int n_adapters;
    gw_endpoint_cfg *endpoints;
    int n_endpoints;
} gw_pool_cfg;

typedef struct gw_model_cfg {
    char *name;
    char *fallback; /* NULL: none; else the name of another model */
    gw_pool_cfg *pools;
    int n_pools;
} gw_model_cfg;

typedef struct gw_split_target {
    char *model;
    double weight;
} gw_split_target;

typedef struct gw_split_cfg {
    char *model; /* the name clients ask for */
    gw_split_target *targets;
    int n_targets;
} gw_split_cfg;

typedef struct gw_tenant_cfg {
    char *name;
    char **api_keys;
    int n_api_keys;
    int priority;            /* higher first */
    double requests_per_min; /* 0: unlimited */
    double tokens_per_min;   /* 0: unlimited */
    char *cache_salt;        /* NULL: "kiln-tenant:<name>" */
} gw_tenant_cfg;

typedef struct gw_config {
    char *listen_host;
    int listen_port;
    int client_timeout_ms; /* a client connection must complete each request within this long
                              of its accept or its previous request (slowloris) */
    net_cors *cors;        /* listen.allowed_origins: CORS for browser pages (NULL: off) */
    int max_conns;         /* open client connections at most: past it accepting pauses
                              (0: as many as the open-file limit allows) */
    int metrics_port;      /* -1: /metrics on the main port; else only on this one (0: any) */
    int max_unsent;        /* a client leaving more bytes unread is cut (8 MiB) */
    char *region;          /* NULL: no preference */
    int scrape_interval_ms, scrape_stale_ms, scrape_timeout_ms;
    int health_interval_ms, health_timeout_ms, eject_ms, eject_max_ms;
    int unhealthy_threshold, healthy_threshold;
    int retry_attempts, retry_budget_ms, connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms;
    int queue_max, queue_max_wait_ms;
    int sat_max_waiting, sat_max_inflight;
    double sat_max_kv;
    double w_queue, w_kv, w_prefix, w_adapter, w_inflight;
    bool round_robin; /* "policy": "round_robin": ignore the scorers (a baseline to compare with) */
    char *session_header;
    gw_model_cfg *models;
    int n_models;
    gw_split_cfg *splits;
    int n_splits;
    gw_tenant_cfg *tenants;
    int n_tenants;
} gw_config;

/* Parses and validates len bytes of JSON; source names it in messages. Returns 0 and sets
 * *out, or KL_EINVAL with "<source>: <path>: <what is wrong>" in err and nothing allocated. */
int gw_config_parse(gw_config **out, const char *text, size_t len, const char *source, kl_err *err);
/* Reads path (at most 4 MiB) and parses it. */
int gw_config_load(gw_config **out, const char *path, kl_err *err);
void gw_config_free(gw_config *c); /* NULL is fine */

const gw_model_cfg *gw_config_model(const gw_config *c, const char *name);
const gw_split_cfg *gw_config_split(const gw_config *c, const char *name);
#endif
