/* net/cors.c: which origins a list allows, and which lists are refused. The headers a real
 * server sends are checked end to end in tests/e2e/cors.test.mjs. */
#include "net/cors.h"

#include "t.h"

TEST(net_cors_list_allows_exactly_its_origins)
{
    net_cors *c;
    kl_err err = {0};
    T_EQ(net_cors_parse(&c, "https://app.example.com, http://localhost:5173,http://[::1]:8000",
                        &err),
         0);
    T_ASSERT(net_cors_allows(c, "https://app.example.com"));
    T_ASSERT(net_cors_allows(c, "HTTPS://APP.EXAMPLE.COM")); /* scheme and host: any case */
    T_ASSERT(net_cors_allows(c, "http://localhost:5173"));
    T_ASSERT(net_cors_allows(c, "http://[::1]:8000"));
    T_ASSERT(!net_cors_allows(c, "http://app.example.com"));       /* another scheme */
    T_ASSERT(!net_cors_allows(c, "https://app.example.com:8443")); /* another port */
    T_ASSERT(!net_cors_allows(c, "https://evil.example.com"));
    T_ASSERT(!net_cors_allows(c, "https://app.example.com.evil.example"));
    T_ASSERT(!net_cors_allows(c, "http://localhost:51730"));
    T_ASSERT(!net_cors_allows(c, "null")); /* sandboxed frames, file: pages */
    T_ASSERT(!net_cors_allows(c, ""));
    T_ASSERT(!net_cors_allows(c, NULL));
    net_cors_free(c);

    T_EQ(net_cors_parse(&c, "*", &err), 0);
    T_ASSERT(net_cors_allows(c, "https://anything.example"));
    T_ASSERT(!net_cors_allows(c, "null"));
    T_ASSERT(!net_cors_allows(c, "not an origin"));
    net_cors_free(c);
    net_cors_free(NULL);

    const char *arr[] = {"https://a.example", "http://b.example:81"};
    T_EQ(net_cors_from(&c, arr, 2, &err), 0);
    T_ASSERT(net_cors_allows(c, "http://b.example:81"));
    T_ASSERT(!net_cors_allows(c, "http://b.example"));
    net_cors_free(c);
}

TEST(net_cors_refuses_what_is_not_an_origin)
{
    static const char *const bad[] = {
        "",
        ",",
        "app.example.com",          /* no scheme */
        "https://app.example.com/", /* a path: browsers never send one */
        "https://app.example.com/api",
        "ftp://app.example.com",
        "https://",
        "https://app.example.com:",
        "https://app.example.com:123456",
        "https://user@app.example.com",
        "null",
        "*,https://app.example.com", /* the wildcard must be alone */
        "https://app.example.com,*",
        "https://a.example,,https://b.example",
        "https://a.example\r\nX-Evil: 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        net_cors *c = (net_cors *)1;
        kl_err err = {0};
        int rc = net_cors_parse(&c, bad[i], &err);
        if (rc != KL_EINVAL) printf("# accepted: '%s'\n", bad[i]);
        T_EQ(rc, KL_EINVAL);
        T_ASSERT(c == NULL);
        T_ASSERT(err.msg[0]);
    }
}
