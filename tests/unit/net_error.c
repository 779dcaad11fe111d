#include "t.h"

#include <stdlib.h>

#include "net/error.h"
#include "net/reply.h"

/* One table gives every status its OpenAI type; serve and the gateway both read it. */
TEST(net_error_types_follow_the_status)
{
    T_STREQ(net_error_type(400), "invalid_request_error");
    T_STREQ(net_error_type(401), "authentication_error");
    T_STREQ(net_error_type(404), "not_found_error");
    T_STREQ(net_error_type(405), "invalid_request_error");
    T_STREQ(net_error_type(413), "request_too_large");
    T_STREQ(net_error_type(429), "rate_limit_error");
    T_STREQ(net_error_type(431), "invalid_request_error");
    T_STREQ(net_error_type(499), "client_closed");
    T_STREQ(net_error_type(500), "model_error");
    T_STREQ(net_error_type(501), "invalid_request_error");
    T_STREQ(net_error_type(502), "upstream_error");
    T_STREQ(net_error_type(503), "service_unavailable");
    net_error e;
    T_EQ(net_fail(&e, 429, NULL, "busy %d", 3), -1);
    T_EQ(e.retry_after_s, 1);
    T_STREQ(e.msg, "busy 3");
    T_STREQ(e.param, "");
    net_fail(&e, 400, "n", "n: too many");
    T_EQ(e.retry_after_s, 0);
}

/* An engine error carries its parameter: nobody cuts the message at a ':' any more. */
TEST(net_error_from_an_engine_error_keeps_its_param)
{
    kl_err err;
    kl_errp(&err, KL_EINVAL, "max_tokens", "prompt + max_tokens: %d tokens do not fit", 900);
    net_error e;
    net_fail_kl(&e, &err);
    T_EQ(e.status, 400);
    T_STREQ(e.type, "invalid_request_error");
    T_STREQ(e.param, "max_tokens");
    T_STREQ(e.msg, "prompt + max_tokens: 900 tokens do not fit");
    kl_errf(&err, KL_ENOSPC, "the waiting queue is full (%d requests)", 5);
    net_fail_kl(&e, &err);
    T_EQ(e.status, 429);
    T_STREQ(e.param, ""); /* kl_errf leaves no stale parameter behind */
    kl_errf(&err, KL_EIO, "the model can serve no more");
    net_fail_kl(&e, &err);
    T_EQ(e.status, 503);
    T_STREQ(e.type, "service_unavailable");
    T_EQ(e.retry_after_s, 1);
}

/* OpenAI's body: message, type, param (null when none), code; bad UTF-8 never breaks it. */
TEST(net_error_body_is_openai_shaped)
{
    net_error e;
    net_fail(&e, 404, "model", "The model `x\xff` does not exist.");
    char *t = net_error_text(&e);
    T_STREQ(t, "{\"error\":{\"message\":\"The model `x\xef\xbf\xbd` does not exist.\","
               "\"type\":\"not_found_error\",\"param\":\"model\",\"code\":404}}");
    free(t);
    net_fail(&e, 499, NULL, "client closed the connection");
    t = net_error_text(&e);
    T_STREQ(t, "{\"error\":{\"message\":\"client closed the connection\","
               "\"type\":\"client_closed\",\"param\":null,\"code\":499}}");
    free(t);
}
