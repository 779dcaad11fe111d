/* net/error.h: the one error vocabulary of Kiln's HTTP answers (kiln serve and kiln gateway).
 *
 * An error a client gets is an HTTP status, an OpenAI `type`, the parameter at fault and a
 * message, sent as OpenAI's body {"error": {"message", "type", "param", "code"}} (net/reply.h).
 * The type follows from the status through one table (net_error_type); an engine error
 * (kl_err) maps to a status by its code (net_fail_kl) and brings its parameter along, so no
 * code reads message text. docs/errors.md lists every error a client can get. */
#ifndef KILN_NET_ERROR_H
#define KILN_NET_ERROR_H
#include "base/err.h"

typedef struct net_error {
    int status;        /* HTTP status: 400, 404, 413 ... */
    const char *type;  /* OpenAI error type: "invalid_request_error" ... (a constant string) */
    char param[64];    /* the parameter at fault, "" when none */
    char msg[384];     /* for the client: never a path or an address of this machine */
    int retry_after_s; /* > 0: sent as Retry-After (429 and 503 get 1 by default) */
} net_error;

/* The OpenAI type of an error status (the table: 400 invalid_request_error, 401
 * authentication_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 499
 * client_closed, 500 model_error, 501 invalid_request_error, 502 upstream_error, 503
 * service_unavailable; any other 4xx invalid_request_error, 5xx service_unavailable). */
const char *net_error_type(int status);
/* Fills e with status, its type, param ("" or NULL: none) and a printf-style message; a
 * Retry-After of 1 s for 429 and 503. Returns -1, so parsers can `return net_fail(...)`. */
int net_fail(net_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The status a KL_E* code answers with: KL_EINVAL, KL_ERANGE, KL_EUNSUP 400; KL_ENOTFOUND 404;
 * KL_ENOSPC, KL_EBUSY 429; anything else (out of memory, a failed model) 503. */
int net_status_of(int code);
/* net_fail from an engine error: its code's status, its parameter, its message. */
int net_fail_kl(net_error *e, const kl_err *err);
#endif
