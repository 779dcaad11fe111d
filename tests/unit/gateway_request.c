#include "t.h"

#include "gateway/request.h"

TEST(gateway_request_reads_what_routes)
{
    const char *chat =
        "{\"model\": \"m\", \"stream\": true, \"user\": \"u1\", \"max_tokens\": 100,"
        " \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}]}";
    gw_request_info r;
    kl_err err = {0};
    T_EQ(gw_request_parse(&r, chat, strlen(chat), true, &err), 0);
    T_STREQ(r.model, "m");
    T_ASSERT(r.stream);
    T_STREQ(r.user, "u1");
    T_EQ(r.text_len, strlen("<system>be brief<user>hi"));
    T_ASSERT(!memcmp(r.text, "<system>be brief<user>hi", r.text_len));
    T_NEAR(r.est_tokens, 24.0 / 4 + 100, 1e-9);
    gw_request_info_free(&r);
    const char *comp = "{\"model\": \"m\", \"prompt\": [\"first\", \"second\"]}";
    T_EQ(gw_request_parse(&r, comp, strlen(comp), false, &err), 0);
    T_EQ(r.text_len, 5);
    T_ASSERT(!r.stream);
    T_NEAR(r.est_tokens, 5.0 / 4 + 16, 1e-9);
    gw_request_info_free(&r);
    /* no "model": the gateway picks one when it serves only one (proxy.c) */
    const char *anon = "{\"prompt\": \"x\"}";
    T_EQ(gw_request_parse(&r, anon, strlen(anon), false, &err), 0);
    T_STREQ(r.model, "");
    gw_request_info_free(&r);
}

TEST(gateway_request_rejects_bad_bodies)
{
    const char *bad[] = {"",
                         "{",
                         "[]",
                         "null",
                         "{\"model\": null}",
                         "{\"model\": 5}",
                         "{\"model\": \"\"}",
                         "{\"model\": \"a\", \"model\": \"b\"}",
                         "{\"model\": \"a\", \"cache_salt\": 5}",
                         "{\"model\": \"a\", \"cache_salt\": \"\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_request_info r;
        kl_err err = {0};
        T_EQ(gw_request_parse(&r, bad[i], strlen(bad[i]), false, &err), KL_EINVAL);
        T_ASSERT(r.body == NULL && r.text == NULL);
    }
    /* A long prompt is routed by its start only. */
    size_t n = 1 << 20;
    char *big = malloc(n + 64);
    int off = snprintf(big, 64, "{\"model\": \"m\", \"prompt\": \"");
    memset(big + off, 'a', n);
    strcpy(big + off + n, "\"}");
    gw_request_info r;
    kl_err err = {0};
    T_EQ(gw_request_parse(&r, big, strlen(big), false, &err), 0);
    T_EQ(r.text_len, GW_ROUTE_TEXT_MAX);
    gw_request_info_free(&r);
    free(big);
}
