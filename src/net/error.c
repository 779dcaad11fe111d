/* net/error.c: statuses, OpenAI types and engine codes in one table (net/error.h). */
#include "net/error.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    int status;
    const char *type;
} types[] = {
    {400, "invalid_request_error"}, {401, "authentication_error"}, {404, "not_found_error"},
    {413, "request_too_large"},     {429, "rate_limit_error"},     {499, "client_closed"},
    {500, "model_error"},           /* the one 500 Kiln gives: the model failed on the request */
    {501, "invalid_request_error"}, /* a method or transfer encoding no one here knows */
    {502, "upstream_error"},        {503, "service_unavailable"},
};

const char *net_error_type(int status)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].status == status) return types[i].type;
    return status >= 500 ? "service_unavailable" : "invalid_request_error";
}

__attribute__((format(printf, 4, 0))) static int fill(net_error *e, int status, const char *param,
                                                      const char *fmt, va_list ap)
{
    e->status = status;
    e->type = net_error_type(status);
    e->retry_after_s = status == 429 || status == 503 ? 1 : 0;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return -1;
}

int net_fail(net_error *e, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fill(e, status, param, fmt, ap);
    va_end(ap);
    return -1;
}

int net_status_of(int code)
{
    switch (code) {
    case KL_EINVAL:
    case KL_ERANGE:
    case KL_EUNSUP:
        return 400;
    case KL_ENOTFOUND:
        return 404;
    case KL_ENOSPC:
    case KL_EBUSY:
        return 429;
    default:
        return 503;
    }
}

int net_fail_kl(net_error *e, const kl_err *err)
{
    return net_fail(e, net_status_of(err->code), err->param, "%s", err->msg);
}
