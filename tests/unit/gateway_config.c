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

/* Upstream keys: read from a file or the environment when the config loads; an endpoint's own
 * over its pool's; errors name the field and the source, never the key. */
TEST(gateway_config_reads_upstream_keys)
{
    char path[600], json[2048];
    snprintf(path, sizeof path, "%s/replica.key", t_tmpdir());
    FILE *f = fopen(path, "w");
    T_ASSERT(f != NULL);
    fputs("sk-from-file\r\nsecond line ignored\n", f);
    fclose(f);
    T_EQ(setenv("KILN_T_UPSTREAM_KEY", "sk-from-env", 1), 0);
    snprintf(json, sizeof json,
             "{\"models\": [{\"name\": \"a\", \"pools\": ["
             " {\"api_key_file\": \"%s\", \"endpoints\": [{\"url\": \"http://x:1\"},"
             "   {\"url\": \"http://x:2\", \"api_key_env\": \"KILN_T_UPSTREAM_KEY\"}]},"
             " {\"endpoints\": [{\"url\": \"http://x:3\"}]}]}]}",
             path);
    gw_config *c;
    kl_err err = {0};
    T_EQ(gw_config_parse(&c, json, strlen(json), "gw.json", &err), 0);
    T_STREQ(c->models[0].pools[0].endpoints[0].api_key, "sk-from-file");
    T_STREQ(c->models[0].pools[0].endpoints[1].api_key, "sk-from-env");
    T_ASSERT(c->models[0].pools[1].endpoints[0].api_key == NULL);
    gw_config_free(c);

    const char *cases[][2] = {
        {"{\"api_key_env\": \"KILN_T_UNSET_VAR\"",
         "gw.json: models[0].pools[0].api_key_env: $KILN_T_UNSET_VAR: not set"},
        {"{\"api_key_env\": \"KILN_T_EMPTY_VAR\"",
         "gw.json: models[0].pools[0].api_key_env: $KILN_T_EMPTY_VAR: empty (expected an API "
         "key)"},
        {"{\"api_key_env\": \"KILN_T_CTRL_VAR\"",
         "gw.json: models[0].pools[0].api_key_env: $KILN_T_CTRL_VAR: the key has a control "
         "character"},
        {"{\"api_key_file\": \"/nonexistent/key\"",
         "gw.json: models[0].pools[0].api_key_file: /nonexistent/key: No such file or directory"},
        {"{\"api_key_file\": \"/tmp\"",
         "gw.json: models[0].pools[0].api_key_file: /tmp: not a regular file"},
        {"{\"api_key_file\": \"/x\", \"api_key_env\": \"KILN_T_UPSTREAM_KEY\"",
         "gw.json: models[0].pools[0].api_key_file: give api_key_file or api_key_env, not both"},
        {"{\"api_key\": \"sk-inline\"", "gw.json: models[0].pools[0].api_key: unknown field"},
        {"{\"endpoints\": [{\"url\": \"http://x:1\", \"api_key_env\": \"KILN_T_UPSTREAM_KEY\"}]}, "
         "{\"region\": \"b\"",
         "gw.json: models[0].pools[1].endpoints[0]: listed before with another upstream key"},
    };
    T_EQ(unsetenv("KILN_T_UNSET_VAR"), 0);
    T_EQ(setenv("KILN_T_EMPTY_VAR", "", 1), 0);
    T_EQ(setenv("KILN_T_CTRL_VAR", "sk-\nInjected: 1", 1), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(json, sizeof json,
                 "{\"models\": [{\"name\": \"a\", \"pools\": [%s, \"endpoints\": [{\"url\": "
                 "\"http://x:1\"}]}]}]}",
                 cases[i][0]);
        T_EQ(gw_config_parse(&c, json, strlen(json), "gw.json", &err), KL_EINVAL);
        T_STREQ(err.msg, cases[i][1]);
    }
    unsetenv("KILN_T_UPSTREAM_KEY");
    unsetenv("KILN_T_EMPTY_VAR");
    unsetenv("KILN_T_CTRL_VAR");
}
