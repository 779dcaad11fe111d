/* server/request.c: parsing and validating request bodies (server/request.h). Every check
 * names the parameter it refuses; nothing here trusts a type, a range or a length. */
#include "server/request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void srv_req_free(srv_req *r)
{
    for (int i = 0; i < r->n_prompts; i++)
        free(r->prompts[i].ids);
    for (int i = 0; r->msg_bufs && i < r->n_msgs; i++)
        free(r->msg_bufs[i]);
    free(r->msg_bufs);
    free(r->msgs);
    free(r->bias_ids);
    free(r->bias);
    free(r->stop_ids);
    free(r->gram_src);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

json_t *srv_json_member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* The member key of r->root that is not null, or NULL. */
static json_t *member(const srv_req *r, const char *key)
{
    return srv_json_member(r->root, key);
}

/* An integer (or a real with an integral value) in lo..hi. Returns 1 when present and
 * valid, 0 when absent or null, -1 (e filled) otherwise. */
static int get_int(const srv_req *r, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   net_error *e)
{
    json_t *v = member(r, key);
    if (!v) return 0;
    double d;
    if (json_is_integer(v)) {
        int64_t x = json_integer_value(v);
        if (x < lo || x > hi)
            return net_fail(e, 400, key, "%s: must be an integer in %lld..%lld, got %lld", key,
                            (long long)lo, (long long)hi, (long long)x);
        *out = x;
        return 1;
    }
    if (!json_is_real(v)) return net_fail(e, 400, key, "%s: must be an integer", key);
    d = json_real_value(v);
    if (!isfinite(d) || d != floor(d)) return net_fail(e, 400, key, "%s: must be an integer", key);
    if (d < (double)lo || d > (double)hi)
        return net_fail(e, 400, key, "%s: must be an integer in %lld..%lld, got %g", key,
                        (long long)lo, (long long)hi, d);
    *out = (int64_t)d;
    return 1;
}

/* A finite number in [lo, hi]; same results as get_int. */
static int get_num(const srv_req *r, const char *key, double lo, double hi, float *out,
                   net_error *e)
{
    json_t *v = member(r, key);
    if (!v) return 0;
    if (!json_is_number(v)) return net_fail(e, 400, key, "%s: must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return net_fail(e, 400, key, "%s: must be a number in [%g, %g]", key, lo, hi);
    *out = (float)d;
    return 1;
}

static int get_bool(const srv_req *r, const char *key, bool *out, net_error *e)
{
    json_t *v = member(r, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return net_fail(e, 400, key, "%s: must be a boolean", key);
    *out = json_is_true(v);
    return 1;
}

static int get_str(const srv_req *r, const char *key, const char **out, net_error *e)
{
    json_t *v = member(r, key);
    if (!v) return 0;
    if (!json_is_string(v)) return net_fail(e, 400, key, "%s: must be a string", key);
    *out = json_string_value(v);
    return 1;
}

/* Loads body as a JSON object into r->root. */
static int load_root(srv_req *r, const char *body, size_t len, net_error *e)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    if (!body || !len) return net_fail(e, 400, "", "the request has no body (expected JSON)");
    r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!r->root)
        return net_fail(e, 400, "", "invalid JSON at line %d column %d: %s", je.line, je.column,
                        je.text);
    if (!json_is_object(r->root)) {
        srv_req_free(r);
        return net_fail(e, 400, "", "the request body must be a JSON object");
    }
    return 0;
}

/* A JSON array of token ids in 0..n_vocab-1 (at least one) into a malloc'd *ids. */
static int parse_ids(const json_t *a, int n_vocab, const char *param, int32_t **ids, int *n,
                     net_error *e)
{
    size_t k = json_array_size(a);
    if (!k) return net_fail(e, 400, param, "%s: must not be empty", param);
    if (k > (1u << 24)) return net_fail(e, 400, param, "%s: too many tokens", param);
    int32_t *p = malloc(sizeof *p * k);
    if (!p) return net_fail(e, 503, param, "out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_vocab) {
            free(p);
            return net_fail(e, 400, param, "%s: element %zu is not a token id in 0..%d", param, i,
                            n_vocab - 1);
        }
        p[i] = (int32_t)json_integer_value(v);
    }
    *ids = p;
    *n = (int)k;
    return 0;
}

/* The prompts of a completions request (`prompt`) or the inputs of an embeddings request
 * (`input`): a string, a list of strings, a list of token ids or a list of lists of them. */
static int parse_prompt(srv_req *r, const char *name, int n_vocab, net_error *e)
{
    json_t *p = member(r, name);
    if (!p) return net_fail(e, 400, name, "%s: required", name);
    if (json_is_string(p)) {
        r->prompts[0].text = json_string_value(p);
        r->prompts[0].text_len = json_string_length(p);
        r->n_prompts = 1;
        return 0;
    }
    if (!json_is_array(p) || !json_array_size(p))
        return net_fail(e, 400, name,
                        "%s: must be a string, a list of strings, a list of "
                        "token ids or a list of lists of token ids (non-empty)",
                        name);
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) {
        r->n_prompts = 1;
        return parse_ids(p, n_vocab, name, &r->prompts[0].ids, &r->prompts[0].n_ids, e);
    }
    if (json_array_size(p) > SRV_MAX_PROMPTS)
        return net_fail(e, 400, name, "%s: at most %d per request", name, SRV_MAX_PROMPTS);
    for (size_t i = 0; i < json_array_size(p); i++) {
        json_t *v = json_array_get(p, i);
        srv_prompt *sp = &r->prompts[r->n_prompts];
        if (json_is_string(v) && json_is_string(first)) {
            sp->text = json_string_value(v);
            sp->text_len = json_string_length(v);
        } else if (json_is_array(v) && json_is_array(first)) {
            if (parse_ids(v, n_vocab, name, &sp->ids, &sp->n_ids, e)) return -1;
        } else {
            return net_fail(e, 400, name, "%s: element %zu has the wrong type", name, i);
        }
        r->n_prompts++;
    }
    return 0;
}

static bool known_role(const char *s)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(s, roles[i])) return true;
    return false;
}

/* The content of message i: a string, an array of {type: "text", text} parts (joined), or
 * null (assistant turns only). */
static int parse_content(srv_req *r, int i, json_t *c, net_error *e)
{
    char param[32];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || json_is_null(c)) {
        if (strcmp(r->msgs[i].role, "assistant"))
            return net_fail(e, 400, param, "%s: required", param);
        r->msgs[i].content = "";
        return 0;
    }
    if (json_is_string(c)) {
        if (strlen(json_string_value(c)) != json_string_length(c))
            return net_fail(e, 400, param, "%s: contains a NUL character", param);
        r->msgs[i].content = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c))
        return net_fail(e, 400, param, "%s: must be a string or a list of parts", param);
    size_t total = 1;
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *part = json_array_get(c, k);
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return net_fail(e, 400, param, "%s[%zu]: must be an object with a type", param, k);
        if (strcmp(json_string_value(type), "text"))
            return net_fail(e, 400, param,
                            "%s[%zu]: content type '%s' is not supported (text only)", param, k,
                            json_string_value(type));
        if (!json_is_string(text))
            return net_fail(e, 400, param, "%s[%zu].text: must be a string", param, k);
        total += json_string_length(text);
    }
    char *buf = malloc(total);
    if (!buf) return net_fail(e, 503, param, "out of memory");
    size_t off = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *text = json_object_get(json_array_get(c, k), "text");
        memcpy(buf + off, json_string_value(text), json_string_length(text));
        off += json_string_length(text);
    }
    buf[off] = 0;
    r->msg_bufs[i] = buf;
    if (strlen(buf) != off) return net_fail(e, 400, param, "%s: contains a NUL character", param);
    r->msgs[i].content = buf;
    return 0;
}

static int parse_messages(srv_req *r, net_error *e)
{
    json_t *m = member(r, "messages");
    if (!m) return net_fail(e, 400, "messages", "messages: required");
    if (!json_is_array(m) || !json_array_size(m))
        return net_fail(e, 400, "messages", "messages: must be a non-empty list");
    if (json_array_size(m) > SRV_MAX_MESSAGES)
        return net_fail(e, 400, "messages", "messages: at most %d", SRV_MAX_MESSAGES);
    int n = (int)json_array_size(m);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    r->msg_bufs = calloc((size_t)n, sizeof *r->msg_bufs);
    if (!r->msgs || !r->msg_bufs) return net_fail(e, 503, "messages", "out of memory");
    r->n_msgs = n;
    for (int i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, (size_t)i);
        char param[32];
        snprintf(param, sizeof param, "messages[%d].role", i);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_object(msg))
            return net_fail(e, 400, "messages", "messages[%d]: must be an object", i);
        if (!json_is_string(role) || !known_role(json_string_value(role)))
            return net_fail(e, 400, param, "%s: must be system, user, assistant, tool or developer",
                            param);
        r->msgs[i].role = json_string_value(role);
        if (parse_content(r, i, json_object_get(msg, "content"), e)) return -1;
    }
    return 0;
}

static int parse_stop(srv_req *r, int n_vocab, net_error *e)
{
    json_t *s = member(r, "stop");
    if (s && json_is_string(s)) {
        if (json_string_length(s)) r->sp.stop[r->sp.n_stop++] = json_string_value(s);
    } else if (s && json_is_array(s)) {
        if (json_array_size(s) > ENGINE_MAX_STOP)
            return net_fail(e, 400, "stop", "stop: at most %d strings", ENGINE_MAX_STOP);
        for (size_t i = 0; i < json_array_size(s); i++) {
            json_t *v = json_array_get(s, i);
            if (!json_is_string(v)) return net_fail(e, 400, "stop", "stop: must be strings");
            if (json_string_length(v)) r->sp.stop[r->sp.n_stop++] = json_string_value(v);
        }
    } else if (s) {
        return net_fail(e, 400, "stop", "stop: must be a string or a list of strings");
    }
    for (int i = 0; i < r->sp.n_stop; i++)
        if (strlen(r->sp.stop[i]) > 128)
            return net_fail(e, 400, "stop", "stop: strings must be at most 128 bytes");
    json_t *ids = member(r, "stop_token_ids");
    if (ids) {
        if (!json_is_array(ids) || json_array_size(ids) > SRV_MAX_STOP_IDS)
            return net_fail(e, 400, "stop_token_ids",
                            "stop_token_ids: must be a list of at most "
                            "%d token ids",
                            SRV_MAX_STOP_IDS);
        if (json_array_size(ids)) {
            if (parse_ids(ids, n_vocab, "stop_token_ids", &r->stop_ids, &r->sp.n_stop_ids, e))
                return -1;
            r->sp.stop_ids = r->stop_ids;
        }
    }
    return 0;
}

static int parse_logit_bias(srv_req *r, int n_vocab, net_error *e)
{
    json_t *b = member(r, "logit_bias");
    if (!b) return 0;
    if (!json_is_object(b)) return net_fail(e, 400, "logit_bias", "logit_bias: must be an object");
    size_t k = json_object_size(b);
    if (k > SRV_MAX_BIAS)
        return net_fail(e, 400, "logit_bias", "logit_bias: at most %d entries", SRV_MAX_BIAS);
    if (!k) return 0;
    r->bias_ids = malloc(sizeof *r->bias_ids * k);
    r->bias = malloc(sizeof *r->bias * k);
    if (!r->bias_ids || !r->bias) return net_fail(e, 503, "logit_bias", "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(b, key, v)
    {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!*key || *end || errno || key[0] == '-' || key[0] == '+' || key[0] == ' ' ||
            id >= n_vocab)
            return net_fail(e, 400, "logit_bias",
                            "logit_bias: key '%.40s' is not a token id in 0..%d", key, n_vocab - 1);
        double d = json_is_number(v) ? json_number_value(v) : (double)NAN;
        if (!(d >= -100 && d <= 100))
            return net_fail(e, 400, "logit_bias",
                            "logit_bias: values must be numbers in [-100, 100]");
        r->bias_ids[r->sp.n_logit_bias] = (int32_t)id;
        r->bias[r->sp.n_logit_bias++] = (float)d;
    }
    r->sp.logit_bias_ids = r->bias_ids;
    r->sp.logit_bias = r->bias;
    return 0;
}

/* The sampling parameters shared by both endpoints. */
static int parse_sampling(srv_req *r, int n_vocab, net_error *e)
{
    engine_sampling *sp = &r->sp;
    int64_t v;
    int rc;
    if (get_num(r, "temperature", 0, 2, &sp->temperature, e) < 0) return -1;
    if (get_num(r, "top_p", 0, 1, &sp->top_p, e) < 0) return -1;
    if (!(sp->top_p > 0)) return net_fail(e, 400, "top_p", "top_p: must be in (0, 1]");
    if (get_num(r, "min_p", 0, 1, &sp->min_p, e) < 0) return -1;
    if (get_num(r, "presence_penalty", -2, 2, &sp->presence_penalty, e) < 0) return -1;
    if (get_num(r, "frequency_penalty", -2, 2, &sp->frequency_penalty, e) < 0) return -1;
    if (get_num(r, "repetition_penalty", 0, 2, &sp->repetition_penalty, e) < 0) return -1;
    if (!(sp->repetition_penalty > 0))
        return net_fail(e, 400, "repetition_penalty", "repetition_penalty: must be in (0, 2]");
    if ((rc = get_int(r, "top_k", -1, n_vocab, &v, e)) < 0) return -1;
    if (rc) sp->top_k = v < 0 ? 0 : (int)v;
    if ((rc = get_int(r, "seed", INT64_MIN, INT64_MAX, &v, e)) < 0) return -1;
    if (rc) sp->seed = (uint64_t)v;
    if (get_bool(r, "ignore_eos", &sp->ignore_eos, e) < 0) return -1;
    r->n = 1;
    if ((rc = get_int(r, "n", 1, SRV_MAX_N, &v, e)) < 0) return -1;
    if (rc) r->n = (int)v;
    if ((rc = get_int(r, "best_of", 1, SRV_MAX_N, &v, e)) < 0) return -1;
    if (rc && v != r->n)
        return net_fail(e, 400, "best_of", "best_of: only best_of = n is supported");
    int64_t mt = 0;
    int has_mt = get_int(r, "max_tokens", 1, 1 << 24, &mt, e);
    if (has_mt < 0) return -1;
    int has_mct = get_int(r, "max_completion_tokens", 1, 1 << 24, &mt, e);
    if (has_mct < 0) return -1;
    if (has_mt || has_mct) {
        sp->max_tokens = (int)mt;
        r->max_tokens_set = true;
    }
    if ((rc = get_int(r, "priority", -1000000, 1000000, &v, e)) < 0) return -1;
    if (rc) r->priority = (int)-v; /* vLLM: a lower value is served first */
    const char *s;
    if ((rc = get_str(r, "cache_salt", &s, e)) < 0) return -1;
    if (rc) {
        if (!*s) return net_fail(e, 400, "cache_salt", "cache_salt: must not be empty");
        r->cache_salt = XXH3_64bits(s, strlen(s)) | 1;
    }
    if (get_str(r, "user", &s, e) < 0) return -1;
    if (get_str(r, "model", &r->model, e) < 0) return -1;
    if (get_bool(r, "stream", &r->stream, e) < 0) return -1;
    json_t *so = member(r, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return net_fail(e, 400, "stream_options", "stream_options: must be an object");
        if (!r->stream)
            return net_fail(e, 400, "stream_options",
                            "stream_options: only allowed with stream = true");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu) && !json_is_boolean(iu))
            return net_fail(e, 400, "stream_options",
                            "stream_options.include_usage: must be a boolean");
        r->include_usage = json_is_true(iu);
    }
    if (parse_stop(r, n_vocab, e)) return -1;
    return parse_logit_bias(r, n_vocab, e);
}

/* POST /v1/embeddings: {model, input, encoding_format, dimensions, user}. Every input is
 * one engine request with a single choice; sampling fields do not apply. */
static int parse_embeddings(srv_req *r, int n_vocab, net_error *e)
{
    if (get_str(r, "model", &r->model, e) < 0) return -1;
    if (parse_prompt(r, "input", n_vocab, e)) return -1;
    for (int i = 0; i < r->n_prompts; i++)
        if (r->prompts[i].text && !r->prompts[i].text_len)
            return net_fail(e, 400, "input", "input: an empty string has no embedding");
    const char *fmt = NULL;
    if (get_str(r, "encoding_format", &fmt, e) < 0) return -1;
    if (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64"))
        return net_fail(e, 400, "encoding_format",
                        "encoding_format: must be \"float\" or \"base64\"");
    r->base64 = fmt && !strcmp(fmt, "base64");
    int64_t v;
    int rc = get_int(r, "dimensions", 1, 1 << 20, &v, e);
    if (rc < 0) return -1;
    r->dimensions = rc ? (int)v : 0;
    r->n = 1;
    r->sp.max_tokens = 1; /* the context check keeps the one position the engine needs */
    return 0;
}

int srv_req_parse(srv_req *r, srv_kind kind, const char *body, size_t len, int n_vocab,
                  net_error *e)
{
    if (load_root(r, body, len, e)) return -1;
    r->kind = kind;
    engine_sampling_defaults(&r->sp);
    r->logprobs = -1;
    r->add_special = true;
    if (kind == SRV_EMBEDDINGS) {
        if (parse_embeddings(r, n_vocab, e)) goto fail;
        return 0;
    }
    int64_t v;
    int rc;
    if (parse_sampling(r, n_vocab, e)) goto fail;
    if (kind == SRV_COMPLETIONS) {
        if (parse_prompt(r, "prompt", n_vocab, e)) goto fail;
        if (get_bool(r, "echo", &r->echo, e) < 0) goto fail;
        if ((rc = get_int(r, "logprobs", 0, ENGINE_MAX_LOGPROBS, &v, e)) < 0) goto fail;
        if (rc) r->logprobs = (int)v;
        if (member(r, "suffix")) {
            net_fail(e, 400, "suffix", "suffix: not supported");
            goto fail;
        }
    } else {
        if (parse_messages(r, e)) goto fail;
        bool lp = false;
        if (get_bool(r, "logprobs", &lp, e) < 0) goto fail;
        if ((rc = get_int(r, "top_logprobs", 0, ENGINE_MAX_LOGPROBS, &v, e)) < 0) goto fail;
        if (rc && !lp) {
            net_fail(e, 400, "top_logprobs", "top_logprobs: needs logprobs = true");
            goto fail;
        }
        if (lp) r->logprobs = rc ? (int)v : 0;
        r->n_prompts = 1;
    }
    if (srv_req_parse_grammar(r, e)) goto fail;
    if (kind == SRV_CHAT && srv_req_parse_tools(r, e)) goto fail;
    if (r->n_prompts * r->n > SRV_MAX_CHOICES) {
        net_fail(e, 400, "n", "n: %d prompts x n = %d exceeds %d choices", r->n_prompts,
                 r->n_prompts * r->n, SRV_MAX_CHOICES);
        goto fail;
    }
    r->sp.logprobs = r->logprobs;
    return 0;
fail:
    srv_req_free(r);
    return -1;
}

int srv_tokenize_parse(srv_req *r, const char *body, size_t len, int n_vocab, net_error *e)
{
    (void)n_vocab;
    if (load_root(r, body, len, e)) return -1;
    r->add_special = true;
    bool has_msgs = member(r, "messages") != NULL;
    if (get_str(r, "model", &r->model, e) < 0) goto fail;
    if (has_msgs) { /* BOS as a chat request adds it (render_chat): the same count */
        r->kind = SRV_CHAT;
        if (parse_messages(r, e)) goto fail;
        r->n_prompts = 1;
    } else {
        r->kind = SRV_COMPLETIONS;
        const char *s;
        int rc = get_str(r, "prompt", &s, e);
        if (rc <= 0) {
            if (!rc) net_fail(e, 400, "prompt", "prompt: required (or messages)");
            goto fail;
        }
        r->prompts[0].text = s;
        r->prompts[0].text_len = json_string_length(member(r, "prompt"));
        r->n_prompts = 1;
    }
    if (get_bool(r, "add_special_tokens", &r->add_special, e) < 0) goto fail;
    return 0;
fail:
    srv_req_free(r);
    return -1;
}

int srv_detokenize_parse(srv_req *r, const char *body, size_t len, int n_vocab, net_error *e)
{
    if (load_root(r, body, len, e)) return -1;
    json_t *t = member(r, "tokens");
    if (get_str(r, "model", &r->model, e) < 0) goto fail;
    if (!t || !json_is_array(t)) {
        net_fail(e, 400, "tokens", "tokens: required, a list of token ids");
        goto fail;
    }
    r->n_prompts = 1;
    if (json_array_size(t) &&
        parse_ids(t, n_vocab, "tokens", &r->prompts[0].ids, &r->prompts[0].n_ids, e))
        goto fail;
    return 0;
fail:
    srv_req_free(r);
    return -1;
}

/* Tokenizes text with flags into p->ids; split: at the markers server/tools.c puts in client
 * data (srv_tools_encode). */
static int encode(srv_prompt *p, const tok *tk, const char *text, size_t len, unsigned flags,
                  bool split, net_error *e)
{
    int64_t (*enc)(const tok *, const char *, size_t, unsigned, int32_t *, int64_t) =
        split ? srv_tools_encode : tok_encode;
    int64_t n = enc(tk, text, len, flags, NULL, 0);
    if (n > (1 << 24)) return net_fail(e, 400, "prompt", "prompt: too many tokens");
    p->ids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!p->ids) return net_fail(e, 503, "prompt", "out of memory");
    enc(tk, text, len, flags, p->ids, n);
    p->n_ids = (int)n;
    return 0;
}

/* The chat messages rendered and tokenized into prompts[0]. */
static int render_chat(srv_req *r, const tok *tk, const chat_tmpl *tmpl, net_error *e)
{
    int32_t bos = tok_bos(tk), eos = tok_eos(tk);
    const char *bos_s = bos >= 0 ? tok_text(tk, bos) : "",
               *eos_s = eos >= 0 ? tok_text(tk, eos) : "";
    char *text = NULL;
    kl_err err = {0};
    json_t *vars;
    bool marked;
    chat_tool_format fmt = chat_tmpl_tool_format(tmpl);
    if (srv_tools_vars(r, tk, tmpl, false, &vars, &marked, e)) return -1;
    int rc = vars ? chat_render_ex(tmpl, NULL, 0, true, bos_s, eos_s, vars, &text, &err)
                  : chat_render(tmpl, r->msgs, r->n_msgs, true, bos_s, eos_s, &text, &err);
    json_decref(vars);
    if (rc == KL_EINVAL && vars && fmt == CHAT_TOOLS_NONE && r->tools) {
        /* the template refused Kiln's system turn (Gemma's do): the tools in a user turn */
        if (srv_tools_vars(r, tk, tmpl, true, &vars, &marked, e)) return -1;
        rc = chat_render_ex(tmpl, NULL, 0, true, bos_s, eos_s, vars, &text, &err);
        json_decref(vars);
    }
    if (rc) return net_fail(e, rc == KL_ENOMEM ? 503 : 400, "messages", "messages: %s", err.msg);
    unsigned flags = TOK_PARSE_SPECIAL;
    /* the template usually writes BOS itself; add it only when it did not and the model wants it */
    if (r->add_special && tok_wants_bos(tk) && bos >= 0 && strncmp(text, bos_s, strlen(bos_s)))
        flags |= TOK_ADD_BOS;
    rc = encode(&r->prompts[0], tk, text, strlen(text), flags, marked, e);
    free(text);
    return rc;
}

int srv_req_tokenize(srv_req *r, const tok *tk, const chat_tmpl *tmpl, int n_ctx, net_error *e)
{
    if (r->kind == SRV_CHAT) {
        if (!tmpl) return net_fail(e, 400, "messages", "this model has no chat template");
        if (r->prompts[0].ids) {
            free(r->prompts[0].ids);
            r->prompts[0].ids = NULL;
        }
        if (render_chat(r, tk, tmpl, e)) return -1;
    } else {
        unsigned flags =
            TOK_PARSE_SPECIAL | (r->add_special && tok_wants_bos(tk) ? TOK_ADD_BOS : 0);
        for (int i = 0; i < r->n_prompts; i++)
            if (!r->prompts[i].ids && encode(&r->prompts[i], tk, r->prompts[i].text,
                                             r->prompts[i].text_len, flags, false, e))
                return -1;
    }
    if (n_ctx <= 0) return 0; /* /tokenize: no context check */
    for (int i = 0; i < r->n_prompts; i++) {
        int n = r->prompts[i].n_ids;
        const char *what = r->kind == SRV_CHAT         ? "messages"
                           : r->kind == SRV_EMBEDDINGS ? "input"
                                                       : "prompt";
        if (n < 1) return net_fail(e, 400, what, "%s: empty after tokenization", what);
        if (r->kind == SRV_EMBEDDINGS) { /* n_ctx: the longest input the model embeds */
            if (n > n_ctx)
                return net_fail(e, 400, what,
                                "This model's maximum input length is %d tokens. However, your "
                                "input has %d tokens",
                                n_ctx, n);
            continue;
        }
        if (n >= n_ctx)
            return net_fail(e, 400, what,
                            "This model's maximum context length is %d tokens. However, your %s "
                            "has %d tokens (no room for any completion)",
                            n_ctx, what, n);
        if (r->max_tokens_set && (int64_t)n + r->sp.max_tokens > n_ctx)
            return net_fail(e, 400, "max_tokens",
                            "This model's maximum context length is %d tokens. However, you "
                            "requested %lld tokens (%d in the %s, %d for the completion)",
                            n_ctx, (long long)n + r->sp.max_tokens, n, what, r->sp.max_tokens);
    }
    if (!r->max_tokens_set && r->kind == SRV_CHAT) r->sp.max_tokens = n_ctx - r->prompts[0].n_ids;
    return 0;
}
