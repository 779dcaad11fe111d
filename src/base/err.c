#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

/* the format attribute lets clang check the callers instead of refusing the vsnprintf */
__attribute__((format(printf, 4, 0))) static void fill(kl_err *err, int code, const char *param,
                                                       const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
}

int kl_errf(kl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, NULL, fmt, ap);
        va_end(ap);
    }
    return code;
}

int kl_errp(kl_err *err, int code, const char *param, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, param, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *kl_strerror(int code)
{
    switch (code) {
    case KL_OK:
        return "ok";
    case KL_EINVAL:
        return "invalid argument";
    case KL_ENOMEM:
        return "out of memory";
    case KL_EIO:
        return "i/o error";
    case KL_EBADFILE:
        return "malformed file";
    case KL_ENOSPC:
        return "no space";
    case KL_ENOTFOUND:
        return "not found";
    case KL_EUNSUP:
        return "unsupported";
    case KL_ERANGE:
        return "out of range";
    case KL_EBUSY:
        return "busy";
    case KL_ECANCELED:
        return "canceled";
    }
    return "unknown error";
}
