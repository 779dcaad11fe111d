/* gateway/limits.c: tenant lookup and token buckets (see limits.h). */
#include "gateway/limits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* 1 if a[0..an) == b[0..bn), in time that depends only on an and bn. */
static int const_eq(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char diff = an != bn;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

gw_tenant_state *gw_tenant_find(gw_tenant_state *tenants, int n, const char *key, size_t keylen)
{
    gw_tenant_state *found = NULL;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < tenants[i].cfg->n_api_keys; k++) {
            const char *cand = tenants[i].cfg->api_keys[k];
            if (const_eq(cand, strlen(cand), key, keylen) && !found) found = &tenants[i];
        }
    return found;
}

static void bucket_init(gw_bucket *b, double per_min, int64_t now_ns)
{
    b->rate_per_s = per_min / 60.0;
    b->burst = per_min > 0 ? per_min : 0; /* a minute's worth may come at once */
    b->tokens = b->burst;
    b->last_ns = now_ns;
}

static void refill(gw_bucket *b, int64_t now_ns)
{
    if (now_ns > b->last_ns) {
        b->tokens =
            fmin(b->burst, b->tokens + b->rate_per_s * (double)(now_ns - b->last_ns) * 1e-9);
        b->last_ns = now_ns;
    }
}

void gw_tenant_init(gw_tenant_state *t, const gw_tenant_cfg *cfg, int64_t now_ns)
{
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    /* a default derived from the tenant: two tenants never share one unless configured to */
    if (cfg->cache_salt)
        snprintf(t->salt, sizeof t->salt, "%s", cfg->cache_salt);
    else
        snprintf(t->salt, sizeof t->salt, "kiln-tenant:%s", cfg->name);
    bucket_init(&t->requests, cfg->requests_per_min, now_ns);
    bucket_init(&t->tokens, cfg->tokens_per_min, now_ns);
}

/* Seconds until b holds need (at least 1). */
static int wait_s(const gw_bucket *b, double need)
{
    double s = (need - b->tokens) / b->rate_per_s;
    return s < 1 ? 1 : s > 3600 ? 3600 : (int)ceil(s);
}

bool gw_tenant_admit(gw_tenant_state *t, double est_tokens, int64_t now_ns, int *retry_after_s)
{
    refill(&t->requests, now_ns);
    refill(&t->tokens, now_ns);
    bool req_ok = t->requests.rate_per_s == 0 || t->requests.tokens >= 1;
    /* A request bigger than the whole token budget is charged the budget, not refused forever. */
    double need = t->tokens.rate_per_s > 0 ? fmin(est_tokens, t->tokens.burst) : 0;
    bool tok_ok = t->tokens.rate_per_s == 0 || t->tokens.tokens >= need;
    if (!req_ok || !tok_ok) {
        int a = req_ok ? 0 : wait_s(&t->requests, 1), b = tok_ok ? 0 : wait_s(&t->tokens, need);
        *retry_after_s = a > b ? a : b;
        t->limited++;
        return false;
    }
    if (t->requests.rate_per_s > 0) t->requests.tokens -= 1;
    if (t->tokens.rate_per_s > 0) t->tokens.tokens -= need;
    t->admitted++;
    return true;
}

int gw_cache_salt(const gw_tenant_state *t, const char *client_salt, char **out)
{
    *out = NULL;
    if (!t && !client_salt) return 0;
    size_t tl = t ? strlen(t->salt) : 0, cl = client_salt ? strlen(client_salt) : 0;
    char *s = malloc(tl + 1 + cl + 1);
    if (!s) return KL_ENOMEM;
    if (!t)
        memcpy(s, client_salt, cl + 1);
    else if (!client_salt)
        memcpy(s, t->salt, tl + 1);
    else {
        memcpy(s, t->salt, tl);
        s[tl] = 0x1f; /* the unit separator: in neither a config string nor a tenant name */
        memcpy(s + tl + 1, client_salt, cl + 1);
    }
    *out = s;
    return 0;
}
