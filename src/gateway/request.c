/* gateway/request.c: parsing a client's request body (see request.h). Hostile input: the
 * JSON parser is jansson's; everything read from it is type-checked and bounded. */
#include "gateway/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends up to n bytes of s to the routing text, bounded by GW_ROUTE_TEXT_MAX. */
static void append(gw_request_info *r, const char *s, size_t n)
{
    size_t room = GW_ROUTE_TEXT_MAX - r->text_len;
    if (n > room) n = room;
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
}

static void route_text(gw_request_info *r, bool chat)
{
    if (chat) {
        json_t *msgs = json_object_get(r->body, "messages"), *m;
        size_t i;
        json_array_foreach(msgs, i, m)
        {
            json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
            append(r, "<", 1);
            if (json_is_string(role)) append(r, json_string_value(role), json_string_length(role));
            append(r, ">", 1);
            if (json_is_string(content)) {
                append(r, json_string_value(content), json_string_length(content));
            } else if (json_is_array(content)) { /* content parts: their text */
                json_t *part;
                size_t k;
                json_array_foreach(content, k, part)
                {
                    json_t *t = json_object_get(part, "text");
                    if (json_is_string(t)) append(r, json_string_value(t), json_string_length(t));
                }
            }
        }
        return;
    }
    json_t *p = json_object_get(r->body, "prompt");
    if (json_is_array(p)) p = json_array_get(p, 0); /* a list of prompts: route by the first */
    if (json_is_string(p)) append(r, json_string_value(p), json_string_length(p));
}

int gw_request_parse(gw_request_info *out, const char *data, size_t len, bool chat, kl_err *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    out->body = data && len ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(out->body)) {
        gw_request_info_free(out);
        return kl_errf(err, KL_EINVAL, "the body must be a JSON object");
    }
    json_t *model = json_object_get(out->body, "model"); /* absent: "" (the caller decides) */
    if (model && (!json_is_string(model) || json_string_length(model) == 0 ||
                  json_string_length(model) >= sizeof out->model)) {
        gw_request_info_free(out);
        return kl_errp(err, KL_EINVAL, "model", "'model' must be a non-empty string");
    }
    if (model) snprintf(out->model, sizeof out->model, "%s", json_string_value(model));
    json_t *salt = json_object_get(out->body, "cache_salt"); /* as a replica would check it */
    if (salt && (!json_is_string(salt) || json_string_length(salt) == 0 ||
                 strlen(json_string_value(salt)) != json_string_length(salt))) {
        gw_request_info_free(out);
        return kl_errp(err, KL_EINVAL, "cache_salt", "'cache_salt' must be a non-empty string");
    }
    out->stream = json_is_true(json_object_get(out->body, "stream"));
    json_t *user = json_object_get(out->body, "user");
    if (json_is_string(user) && json_string_length(user) < sizeof out->user)
        snprintf(out->user, sizeof out->user, "%s", json_string_value(user));
    out->text = malloc(GW_ROUTE_TEXT_MAX);
    if (!out->text) {
        gw_request_info_free(out);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    route_text(out, chat);
    json_t *mt = json_object_get(out->body, "max_tokens");
    if (!mt) mt = json_object_get(out->body, "max_completion_tokens");
    double max_tokens =
        json_is_integer(mt) && json_integer_value(mt) > 0 ? (double)json_integer_value(mt) : 16;
    out->est_tokens = (double)out->text_len / 4 + max_tokens;
    return 0;
}

void gw_request_info_free(gw_request_info *r)
{
    if (!r) return;
    json_decref(r->body);
    free(r->text);
    r->body = NULL;
    r->text = NULL;
}
