/* gateway/limits.h: tenants. Who is asking (API key → tenant, compared in constant time),
 * whether they may (token buckets for requests/min and tokens/min), and the prefix-cache salt
 * that keeps their prompts apart from everyone else's. */
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
    char salt[300]; /* cfg->cache_salt, or "kiln-tenant:<name>" when none is configured */
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

/* The cache_salt a request is forwarded with, set by the gateway whatever the client sent.
 * With a tenant: the tenant's salt, or, when the client sent one of its own, the tenant's
 * salt, a 0x1f byte and the client's (a tenant's clients may subdivide its cache, never
 * reach outside it: no configured salt or tenant name holds a control byte). Without one
 * (no tenants configured: the gateway cannot tell users apart) the client's own salt, or
 * none. Sets *out to a string to free, or NULL for none; returns 0 or KL_ENOMEM. */
int gw_cache_salt(const gw_tenant_state *t, const char *client_salt, char **out);
#endif
