/* gateway/request.h: what the gateway reads from a client's request body, parsed once:
 * the model, whether it streams, the text that routes it (the prompt, or the messages), an
 * estimate of its tokens for rate limits, and the user (a session key). The body itself is
 * kept (as JSON) to be forwarded, with "model" or "cache_salt" rewritten when needed. */
#ifndef KILN_GATEWAY_REQUEST_H
#define KILN_GATEWAY_REQUEST_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"

#define GW_ROUTE_TEXT_MAX (32 * 1024) /* routing looks at most this much of the prompt */

typedef struct gw_request_info {
    json_t *body;    /* owned */
    char model[256]; /* "" when the body has no "model" */
    bool stream;
    char *text; /* (text_len) the start of the prompt or of the rendered messages; owned */
    size_t text_len;
    double est_tokens; /* prompt bytes / 4 + max_tokens (16 when absent) */
    char user[256];    /* "" when absent */
} gw_request_info;

/* Parses len bytes of a /v1/completions (chat false) or /v1/chat/completions body. Returns 0,
 * or KL_EINVAL with a client-facing reason in err and err->param set when one parameter
 * is at fault (and nothing to free). */
int gw_request_parse(gw_request_info *out, const char *data, size_t len, bool chat, kl_err *err);
void gw_request_info_free(gw_request_info *r); /* NULL is fine */
#endif
