/* server/structured.c: the request fields that constrain the output to a language
 * (grammar/grammar.h): OpenAI's response_format (json_object, json_schema), vLLM's
 * guided_json / guided_regex / guided_choice / guided_grammar, llama-server's json_schema /
 * grammar. At most one per request. The source is only copied here; compiling (and the
 * errors of a bad schema, regex or grammar) happens against the server's grammar cache. */
#include <stdlib.h>
#include <string.h>

#include "server/request.h"

int srv_req_set_grammar(srv_req *r, const char *param, gram_kind kind, const char *src, size_t len,
                        net_error *e)
{
    if (r->has_grammar)
        return net_fail(e, 400, param,
                        "%s: only one of response_format, guided_json, guided_regex, "
                        "guided_choice, guided_grammar, json_schema, grammar and a forced tool "
                        "call may be given (%s is set too)",
                        param, r->gram_param);
    r->gram_src = malloc(len + 1);
    if (!r->gram_src) return net_fail(e, 503, "", "out of memory");
    memcpy(r->gram_src, src, len);
    r->gram_src[len] = 0;
    r->gram_len = len;
    r->gram_kind = kind;
    r->gram_param = param;
    r->has_grammar = true;
    return 0;
}

/* A schema given as an object (or, where text_ok, as JSON text) into the grammar. */
static int set_schema(srv_req *r, const char *param, const json_t *v, bool text_ok, net_error *e)
{
    if (text_ok && json_is_string(v))
        return srv_req_set_grammar(r, param, GRAM_SCHEMA, json_string_value(v),
                                   json_string_length(v), e);
    if (!json_is_object(v) && !json_is_boolean(v))
        return net_fail(e, 400, param, "%s: must be a JSON Schema (an object)", param);
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt) return net_fail(e, 503, "", "out of memory");
    int rc = srv_req_set_grammar(r, param, GRAM_SCHEMA, txt, strlen(txt), e);
    free(txt);
    return rc;
}

static int parse_response_format(srv_req *r, const json_t *rf, net_error *e)
{
    const char *t = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !t)
        return net_fail(e, 400, "response_format",
                        "response_format: must be an object with a type");
    if (!strcmp(t, "text")) return 0;
    if (!strcmp(t, "json_object"))
        return srv_req_set_grammar(r, "response_format", GRAM_JSON_OBJECT, "", 0, e);
    if (strcmp(t, "json_schema"))
        return net_fail(e, 400, "response_format",
                        "response_format: type must be text, json_object or json_schema");
    json_t *js = json_object_get(rf, "json_schema"), *strict = json_object_get(js, "strict");
    if (!json_is_object(js) || !json_is_string(json_object_get(js, "name")))
        return net_fail(e, 400, "response_format",
                        "response_format.json_schema: must be an object with a name");
    if (strict && !json_is_null(strict) && !json_is_boolean(strict))
        return net_fail(e, 400, "response_format",
                        "response_format.json_schema.strict: must be a boolean");
    json_t *sc = json_object_get(js, "schema");
    if (!sc || json_is_null(sc)) /* OpenAI: no schema allows any JSON */
        return srv_req_set_grammar(r, "response_format", GRAM_JSON, "", 0, e);
    return set_schema(r, "response_format", sc, false, e);
}

int srv_req_parse_grammar(srv_req *r, net_error *e)
{
    json_t *v = srv_json_member(r->root, "response_format");
    if (v && r->kind != SRV_CHAT)
        return net_fail(e, 400, "response_format",
                        "response_format: only for chat completions (use guided_json)");
    if (v && parse_response_format(r, v, e)) return -1;
    if ((v = srv_json_member(r->root, "guided_json")) && set_schema(r, "guided_json", v, true, e))
        return -1;
    if ((v = srv_json_member(r->root, "json_schema")) && set_schema(r, "json_schema", v, false, e))
        return -1;
    static const struct {
        const char *key;
        gram_kind kind;
    } text[] = {
        {"guided_regex", GRAM_REGEX}, {"guided_grammar", GRAM_GBNF}, {"grammar", GRAM_GBNF}};
    for (size_t k = 0; k < sizeof text / sizeof *text; k++) {
        if (!(v = srv_json_member(r->root, text[k].key))) continue;
        if (!json_is_string(v))
            return net_fail(e, 400, text[k].key, "%s: must be a string", text[k].key);
        if (srv_req_set_grammar(r, text[k].key, text[k].kind, json_string_value(v),
                                json_string_length(v), e))
            return -1;
    }
    if ((v = srv_json_member(r->root, "guided_choice"))) {
        bool ok = json_is_array(v) && json_array_size(v) > 0;
        for (size_t i = 0; ok && i < json_array_size(v); i++)
            ok = json_is_string(json_array_get(v, i));
        if (!ok)
            return net_fail(e, 400, "guided_choice",
                            "guided_choice: must be a non-empty array of strings");
        char *txt = json_dumps(v, JSON_COMPACT);
        if (!txt) return net_fail(e, 503, "", "out of memory");
        int rc = srv_req_set_grammar(r, "guided_choice", GRAM_CHOICE, txt, strlen(txt), e);
        free(txt);
        if (rc) return -1;
    }
    return 0;
}
