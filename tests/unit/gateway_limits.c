#include "t.h"

#include "gateway/limits.h"

TEST(gateway_tenant_keys_and_buckets)
{
    const char *json = "{\"models\": [{\"name\": \"m\", \"pools\": [{\"endpoints\": [{\"url\": "
                       "\"http://x:1\"}]}]}], \"tenants\": ["
                       "{\"name\": \"a\", \"api_keys\": [\"key-a1\", \"key-a2\"], "
                       "\"requests_per_min\": 60, \"cache_salt\": \"s\"},"
                       "{\"name\": \"b\", \"api_keys\": [\"key-b\"], \"tokens_per_min\": 600}]}";
    gw_config *c;
    kl_err err = {0};
    T_EQ(gw_config_parse(&c, json, strlen(json), "t", &err), 0);
    int64_t t0 = 5000000000LL;
    gw_tenant_state ts[2];
    gw_tenant_init(&ts[0], &c->tenants[0], t0);
    gw_tenant_init(&ts[1], &c->tenants[1], t0);
    T_ASSERT(gw_tenant_find(ts, 2, "key-a2", 6) == &ts[0]);
    T_ASSERT(gw_tenant_find(ts, 2, "key-b", 5) == &ts[1]);
    T_ASSERT(gw_tenant_find(ts, 2, "key-b", 4) == NULL);
    T_ASSERT(gw_tenant_find(ts, 2, "key-bb", 6) == NULL);
    T_ASSERT(gw_tenant_find(ts, 2, "", 0) == NULL);
    T_STREQ(ts[0].salt, "s");             /* configured */
    T_STREQ(ts[1].salt, "kiln-tenant:b"); /* derived: never shared with another tenant */
    /* 60 requests/min: a burst of 60, then one a second. */
    int ra = 0;
    for (int i = 0; i < 60; i++)
        T_ASSERT(gw_tenant_admit(&ts[0], 100, t0, &ra));
    T_ASSERT(!gw_tenant_admit(&ts[0], 100, t0, &ra));
    T_EQ(ra, 1);
    T_ASSERT(gw_tenant_admit(&ts[0], 100, t0 + 1000000000LL, &ra));
    /* 600 tokens/min: 500 + 100 fit, then 50 must wait 5 s. */
    T_ASSERT(gw_tenant_admit(&ts[1], 500, t0, &ra));
    T_ASSERT(gw_tenant_admit(&ts[1], 100, t0, &ra));
    T_ASSERT(!gw_tenant_admit(&ts[1], 50, t0, &ra));
    T_EQ(ra, 5);
    T_EQ(ts[1].limited, 1);
    gw_config_free(c);
}

TEST(gateway_cache_salt_is_the_gateways)
{
    const char *json = "{\"models\": [{\"name\": \"m\", \"pools\": [{\"endpoints\": [{\"url\": "
                       "\"http://x:1\"}]}]}], \"tenants\": ["
                       "{\"name\": \"a\", \"api_keys\": [\"ka\"], \"cache_salt\": \"shared\"},"
                       "{\"name\": \"b\", \"api_keys\": [\"kb\"]}]}";
    gw_config *c;
    kl_err err = {0};
    T_EQ(gw_config_parse(&c, json, strlen(json), "t", &err), 0);
    gw_tenant_state a, b;
    gw_tenant_init(&a, &c->tenants[0], 0);
    gw_tenant_init(&b, &c->tenants[1], 0);
    char *s;
    T_EQ(gw_cache_salt(&a, NULL, &s), 0); /* a tenant's own */
    T_STREQ(s, "shared");
    free(s);
    T_EQ(gw_cache_salt(&b, "shared", &s), 0); /* naming a's salt does not make it b's */
    T_STREQ(s, "kiln-tenant:b\x1fshared");
    free(s);
    T_EQ(gw_cache_salt(&a, "u1", &s), 0); /* a client subdivides its tenant's cache */
    T_STREQ(s, "shared\x1fu1");
    free(s);
    T_EQ(gw_cache_salt(NULL, "u1", &s), 0); /* no tenants: the client's own, or none */
    T_STREQ(s, "u1");
    free(s);
    T_EQ(gw_cache_salt(NULL, NULL, &s), 0);
    T_ASSERT(s == NULL);
    gw_config_free(c);
}
