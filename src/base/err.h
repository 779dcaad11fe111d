/* base/err.h: error codes and a human-readable reason beside them.
 * Every function that can fail returns 0 or a negative KL_E* code and, when given a kl_err,
 * fills its message. Bad input never aborts the process. */
#ifndef KILN_BASE_ERR_H
#define KILN_BASE_ERR_H

enum {
    KL_OK = 0,
    KL_EINVAL = -1,    /* invalid argument or parameter */
    KL_ENOMEM = -2,    /* allocation failed */
    KL_EIO = -3,       /* read/write/open failed */
    KL_EBADFILE = -4,  /* a file is malformed */
    KL_ENOSPC = -5,    /* a pool or queue is full */
    KL_ENOTFOUND = -6, /* no such key, tensor, model */
    KL_EUNSUP = -7,    /* understood but not supported */
    KL_ERANGE = -8,    /* a value is out of range */
    KL_EBUSY = -9,     /* try again later */
    KL_ECANCELED = -10,
};

typedef struct kl_err {
    int code;
    char msg[512];
    char param[64]; /* the request parameter at fault ("max_tokens"), "" when none: HTTP
                       layers report it as OpenAI's `param` without reading msg */
} kl_err;

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
int kl_errf(kl_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* kl_errf naming the parameter at fault. */
int kl_errp(kl_err *err, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A short name for a code, e.g. "EBADFILE". */
const char *kl_strerror(int code);

#endif
