/* gateway/limits.h: tenants. Who is asking (API key → tenant, compared in constant time) and
 * whether they may (token buckets for requests/min and tokens/min). */
#ifndef KILN_GATEWAY_LIMITS_H
#define KILN_GATEWAY_LIMITS_H
#include <stdbool.h>
#include <stdint.h>
#include "gateway/config.h"

typedef struct gw_bucket {
    double tokens;     /* available now */
    double rate_per_s; /* refill; 0: unlimited */
    double burst;      /* capacity */
    int64_t last_ns;
} gw_bucket;

typedef struct gw_tenant_state {
    const gw_tenant_cfg *cfg;
    uint64_t salt; /* hash of cfg->cache_salt; 0 when none */
    gw_bucket requests, tokens;
    uint64_t admitted, limited;
} gw_tenant_state;

/* The tenant whose key equals key (length keylen), or NULL. Every configured key is compared
 * in full whatever matches, so timing does not reveal how much of a key was right. */
gw_tenant_state *gw_tenant_find(gw_tenant_state *tenants, int n, const char *key, size_t keylen);

/* Sets up per-tenant buckets from their config (full at start). */
void gw_tenant_init(gw_tenant_state *t, const gw_tenant_cfg *cfg, int64_t now_ns);

/* Takes one request and est_tokens tokens from t's buckets. Returns true if admitted; else
 * false, nothing taken, and *retry_after_s says when enough will have refilled. */
bool gw_tenant_admit(gw_tenant_state *t, double est_tokens, int64_t now_ns, int *retry_after_s);
#endif
