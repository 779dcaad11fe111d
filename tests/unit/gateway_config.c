#include "t.h"

#include "gateway/config.h"

static const char *good =
    "{\"listen\": {\"host\": \"127.0.0.1\", \"port\": 9100, \"client_timeout_ms\": 5000},"
    " \"region\": \"eu\","
    " \"models\": [{\"name\": \"chat-v1\", \"fallback\": \"small\", \"pools\": ["
    "   {\"region\": \"eu\", \"adapters\": [\"sql\"], \"endpoints\": ["
    "     {\"url\": \"http://127.0.0.1:8001\"}, {\"url\": \"http://localhost:8002/\", \"weight\": "
    "2}]},"
    "   {\"region\": \"us\", \"endpoints\": [{\"url\": \"http://127.0.0.1:8003\"}]}]},"
    "  {\"name\": \"chat-v2\", \"pools\": [{\"endpoints\": [{\"url\": "
    "\"http://127.0.0.1:8004\"}]}]},"
    "  {\"name\": \"small\", \"pools\": [{\"endpoints\": [{\"url\": "
    "\"http://127.0.0.1:8005\"}]}]}],"
    " \"splits\": [{\"model\": \"chat\", \"targets\": [{\"model\": \"chat-v1\", \"weight\": 90},"
    "                                             {\"model\": \"chat-v2\", \"weight\": 10}]}],"
    " \"tenants\": [{\"name\": \"acme\", \"api_keys\": [\"k1\", \"k2\"], \"priority\": 2,"
    "               \"requests_per_min\": 60, \"cache_salt\": \"acme\"}],"
    " \"scrape\": {\"interval_ms\": 50}, \"saturation\": {\"max_kv\": 0.9}}";

TEST(gateway_config_parses_a_full_config)
{
    gw_config *c;
    kl_err err = {0};
    T_EQ(gw_config_parse(&c, good, strlen(good), "gw.json", &err), 0);
    T_STREQ(c->listen_host, "127.0.0.1");
    T_EQ(c->listen_port, 9100);
    T_EQ(c->client_timeout_ms, 5000);
    T_EQ(c->n_models, 3);
    T_EQ(c->models[0].n_pools, 2);
    T_EQ(c->models[0].pools[0].n_endpoints, 2);
    T_STREQ(c->models[0].pools[0].endpoints[1].host, "localhost");
    T_EQ(c->models[0].pools[0].endpoints[1].port, 8002);
    T_NEAR(c->models[0].pools[0].endpoints[1].weight, 2, 0);
    T_STREQ(c->models[0].pools[1].endpoints[0].region, "us");
    T_STREQ(c->models[1].pools[0].region, "default");
    T_EQ(c->models[0].pools[0].n_adapters, 1);
    T_STREQ(gw_config_split(c, "chat")->targets[1].model, "chat-v2");
    T_EQ(c->tenants[0].n_api_keys, 2);
    T_EQ(c->tenants[0].priority, 2);
    T_EQ(c->scrape_interval_ms, 50);
    T_EQ(c->scrape_stale_ms, 1000); /* default kept */
    T_NEAR(c->sat_max_kv, 0.9, 1e-12);
    T_STREQ(c->session_header, "x-session-id");
    gw_config_free(c);
}

/* Each bad config and the exact message it must give. */
static const struct {
    const char *json, *msg;
} bad[] = {
    {"{", "gw.json: line 1 column 1: string or '}' expected near end of file"},
    {"[]", "gw.json: (top): expected an object"},
    {"{}", "gw.json: models: missing"},
    {"{\"models\": []}", "gw.json: models: expected 1 to 4096 elements"},
    {"{\"modles\": []}", "gw.json: modles: unknown field"},
    {"{\"listen\": {\"client_timeout_ms\": 5}, \"models\": []}",
     "gw.json: listen.client_timeout_ms: expected an integer from 100 to 3600000"},
    {"{\"models\": [{\"name\": \"a\"}]}", "gw.json: models[0].pools: missing"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"ftp://x:1\"}]}]}]}",
     "gw.json: models[0].pools[0].endpoints[0].url: expected http://HOST:PORT"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": "
     "\"http://x:70000\"}]}]}]}",
     "gw.json: models[0].pools[0].endpoints[0].url: expected http://HOST:PORT with a port from 1 "
     "to 65535"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\", "
     "\"weight\": -1}]}]}]}",
     "gw.json: models[0].pools[0].endpoints[0].weight: expected a number from 1e-06 to 1e+06"},
    {"{\"models\": [{\"name\": \"a\", \"fallback\": \"b\", \"pools\": [{\"endpoints\": [{\"url\": "
     "\"http://x:1\"}]}]}]}",
     "gw.json: models[0].fallback: no model of that name"},
    {"{\"models\": [{\"name\": \"a\", \"fallback\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": "
     "\"http://x:1\"}]}]}]}",
     "gw.json: models[0].fallback: fallback cycle"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]},"
     " {\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:2\"}]}]}]}",
     "gw.json: models[1].name: duplicate model name"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]}],"
     " \"splits\": [{\"model\": \"s\", \"targets\": [{\"model\": \"zz\"}]}]}",
     "gw.json: splits[0].targets[0].model: no model of that name"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]}],"
     " \"tenants\": [{\"name\": \"t\", \"api_keys\": [\"k\", \"k\"]}]}",
     "gw.json: tenants[0].api_keys[1]: API key used twice"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]}],"
     " \"tenants\": [{\"name\": \"t\"}]}",
     "gw.json: tenants[0].api_keys: a tenant needs at least one API key"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]}],"
     " \"retry\": {\"attempts\": 0}}",
     "gw.json: retry.attempts: expected an integer from 1 to 10"},
    {"{\"models\": [{\"name\": \"\", \"pools\": []}]}",
     "gw.json: models[0].name: expected a string of 1 to 255 bytes"},
    {"{\"models\": [{\"name\": \"a\", \"pools\": [{\"endpoints\": [{\"url\": \"http://x:1\"}]}]}],"
     " \"region\": 5}",
     "gw.json: region: expected a string of 1 to 255 bytes"},
    {"{\"models\": [], \"models\": []}", NULL}, /* duplicate key: jansson's own message */
};

TEST(gateway_config_rejects_bad_configs)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_config *c = (gw_config *)1;
        kl_err err = {0};
        int rc = gw_config_parse(&c, bad[i].json, strlen(bad[i].json), "gw.json", &err);
        if (rc != KL_EINVAL) printf("# case %zu: rc %d\n", i, rc);
        T_EQ(rc, KL_EINVAL);
        T_ASSERT(c == NULL);
        if (bad[i].msg)
            T_STREQ(err.msg, bad[i].msg);
        else
            T_CONTAINS(err.msg, "duplicate");
    }
}
