/* server/tools.c: tool calling in /v1/chat/completions.
 *
 * In: `tools` (functions with a name, a description and a JSON Schema of their parameters),
 * `tool_choice` (none, auto, required, or one named function), `parallel_tool_calls`, and a
 * history whose assistant turns carry `tool_calls` and whose `tool` turns answer them.
 * These reach the model's chat template as its `tools` and `messages` variables (the Llama
 * 3.1/3.2, Qwen 2.5/3, Mistral and Hermes templates read them); a template that never reads
 * `tools` gets the server's own prompt instead (Hermes-style: the functions as JSON lines in
 * the system turn, calls written as <tool_call>{"name", "arguments"}</tool_call>).
 *
 * Out: the generated text parsed into `tool_calls`. With `required` or a named function the
 * output is constrained (as vLLM does): `required` generates a JSON array of {"name",
 * "arguments"} objects whose arguments follow each function's schema, a named function
 * generates its arguments alone; either always parses. With `auto` the text is searched
 * for the template's call syntax (Hermes tags, or a bare JSON call as Llama 3 and Mistral
 * write them, whose marker tokens are control tokens and print as nothing).
 *
 * Everything in the tools is data: names must match OpenAI's [a-zA-Z0-9_-]{1,64}, and a
 * string anywhere in a tool (a description, a property name, an enum value) that spells one
 * of the vocabulary's special tokens (<|im_end|>, <tool_call> ...: what the prompt's
 * tokenizer would turn into that token) or one of the tags of Kiln's own tool prompt is a
 * 400 naming `tools`: a tool cannot write the template's markup. Past calls' arguments in
 * the history (the model's own output, sent back) are not refused but defused: such text
 * gets a marker inside, so the prompt's tokenizer (srv_tools_encode) splits it there and
 * it is tokenized as plain text, never as the token itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "server/request.h"

#define MAX_TOOLS 128
/* U+FDD0, a noncharacter: the marker that splits a special token's text in client data */
#define MARK     "\xEF\xB7\x90"
#define MARK_LEN 3

static bool good_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* The tool named name, or NULL. */
static json_t *find_tool(const srv_req *r, const char *name)
{
    for (size_t i = 0; i < json_array_size(r->tools); i++) {
        json_t *f = json_object_get(json_array_get(r->tools, i), "function");
        if (!strcmp(json_string_value(json_object_get(f, "name")), name)) return f;
    }
    return NULL;
}

static int parse_tool_list(srv_req *r, json_t *tools, net_error *e)
{
    if (!json_is_array(tools) || !json_array_size(tools))
        return net_fail(e, 400, "tools", "tools: must be a non-empty list");
    if (json_array_size(tools) > MAX_TOOLS)
        return net_fail(e, 400, "tools", "tools: at most %d", MAX_TOOLS);
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *t = json_array_get(tools, i), *f = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || !type || strcmp(type, "function"))
            return net_fail(e, 400, "tools", "tools[%zu]: must be {\"type\": \"function\", ...}",
                            i);
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!json_is_object(f) || !name)
            return net_fail(e, 400, "tools", "tools[%zu].function: must be an object with a name",
                            i);
        if (!good_name(name))
            return net_fail(e, 400, "tools",
                            "tools[%zu].function.name: must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                            i);
        json_t *d = srv_json_member(f, "description"), *p = srv_json_member(f, "parameters"),
               *s = srv_json_member(f, "strict");
        if (d && !json_is_string(d))
            return net_fail(e, 400, "tools", "tools[%zu].function.description: must be a string",
                            i);
        if (p && !json_is_object(p))
            return net_fail(e, 400, "tools",
                            "tools[%zu].function.parameters: must be a JSON Schema (an object)", i);
        if (s && !json_is_boolean(s))
            return net_fail(e, 400, "tools", "tools[%zu].function.strict: must be a boolean", i);
        for (size_t k = 0; k < i; k++) {
            json_t *g = json_object_get(json_array_get(tools, k), "function");
            if (!strcmp(json_string_value(json_object_get(g, "name")), name))
                return net_fail(e, 400, "tools", "tools: two functions are named %s", name);
        }
    }
    r->tools = tools;
    return 0;
}

/* The assistant turns' tool_calls and the tool turns' ids, as the templates will read them. */
static int check_history(srv_req *r, net_error *e)
{
    json_t *m = json_object_get(r->root, "messages");
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *msg = json_array_get(m, i), *tc = srv_json_member(msg, "tool_calls");
        json_t *id = srv_json_member(msg, "tool_call_id");
        char param[48];
        if (tc) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
            if (strcmp(r->msgs[i].role, "assistant"))
                return net_fail(e, 400, param, "%s: only on assistant messages", param);
            if (!json_is_array(tc)) return net_fail(e, 400, param, "%s: must be a list", param);
            for (size_t k = 0; k < json_array_size(tc); k++) {
                json_t *c = json_array_get(tc, k), *f = json_object_get(c, "function");
                const char *name = json_string_value(json_object_get(f, "name"));
                json_t *args = json_object_get(f, "arguments"), *cid = srv_json_member(c, "id");
                if (!json_is_object(c) || !name || !good_name(name) || !json_is_string(args) ||
                    (cid && !json_is_string(cid)))
                    return net_fail(e, 400, param,
                                    "%s[%zu]: must be {id, type: function, function: {name, "
                                    "arguments (a JSON string)}} with a name of a-z, A-Z, 0-9, "
                                    "_ and -",
                                    param, k);
            }
            r->tool_history = true;
        }
        if (id) {
            snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
            if (!json_is_string(id)) return net_fail(e, 400, param, "%s: must be a string", param);
            r->tool_history = true;
        }
        if (!strcmp(r->msgs[i].role, "tool")) r->tool_history = true;
    }
    return 0;
}

/* The arguments schema of function f (any object when it has none). */
static json_t *params_of(const json_t *f)
{
    json_t *p = srv_json_member(f, "parameters");
    return p ? json_incref(p) : json_pack("{s:s}", "type", "object");
}

/* required: a list of calls, each {"name": one of the tools, "arguments": its schema}. */
static json_t *calls_schema(const srv_req *r)
{
    json_t *any = json_array();
    for (size_t i = 0; i < json_array_size(r->tools); i++) {
        json_t *f = json_object_get(json_array_get(r->tools, i), "function");
        json_array_append_new(
            any, json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s, s], s:b}", "type", "object", "properties",
                           "name", "const", json_object_get(f, "name"), "arguments", params_of(f),
                           "required", "name", "arguments", "additionalProperties", 0));
    }
    json_t *s =
        json_pack("{s:s, s:i, s:{s:o}}", "type", "array", "minItems", 1, "items", "anyOf", any);
    if (!r->parallel_tools) json_object_set_new(s, "maxItems", json_integer(1));
    return s;
}

int srv_req_parse_tools(srv_req *r, net_error *e)
{
    static const char *const legacy[] = {"functions", "function_call"};
    for (size_t k = 0; k < 2; k++)
        if (srv_json_member(r->root, legacy[k]))
            return net_fail(e, 400, legacy[k], "%s: deprecated and not supported (use tools)",
                            legacy[k]);
    json_t *tools = srv_json_member(r->root, "tools"),
           *tc = srv_json_member(r->root, "tool_choice");
    json_t *par = srv_json_member(r->root, "parallel_tool_calls");
    if (tools && parse_tool_list(r, tools, e)) return -1;
    if (par && !json_is_boolean(par))
        return net_fail(e, 400, "parallel_tool_calls", "parallel_tool_calls: must be a boolean");
    r->parallel_tools = !par || json_is_true(par);
    r->tool_choice = tools ? SRV_TOOL_AUTO : SRV_TOOL_NONE;
    if (tc) {
        const char *s = json_string_value(tc);
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name =
            json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
        if (s && !strcmp(s, "none")) {
            r->tool_choice = SRV_TOOL_NONE;
        } else if (s && !strcmp(s, "auto")) {
            r->tool_choice = SRV_TOOL_AUTO;
        } else if (s && !strcmp(s, "required")) {
            r->tool_choice = SRV_TOOL_REQUIRED;
        } else if (type && !strcmp(type, "function") && name) { /* an object: only it has these */
            r->tool_choice = SRV_TOOL_NAMED;
            r->tool_name = name;
        } else {
            return net_fail(e, 400, "tool_choice",
                            "tool_choice: must be none, auto, required or {\"type\": "
                            "\"function\", \"function\": {\"name\": ...}}");
        }
        if (r->tool_choice != SRV_TOOL_NONE && !tools)
            return net_fail(e, 400, "tool_choice", "tool_choice: only allowed with tools");
        if (r->tool_choice == SRV_TOOL_NAMED && !find_tool(r, r->tool_name))
            return net_fail(e, 400, "tool_choice", "tool_choice: no function named %.64s in tools",
                            r->tool_name);
    }
    if (check_history(r, e)) return -1;
    if (r->tool_choice != SRV_TOOL_REQUIRED && r->tool_choice != SRV_TOOL_NAMED) return 0;
    json_t *schema =
        r->tool_choice == SRV_TOOL_NAMED ? params_of(find_tool(r, r->tool_name)) : calls_schema(r);
    char *txt = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    if (!txt) return net_fail(e, 503, "", "out of memory");
    int rc = srv_req_set_grammar(r, "tools", GRAM_SCHEMA, txt, strlen(txt), e);
    free(txt);
    return rc;
}

/* ---------------------------------------------------------------- the prompt ---- */

/* The texts a client string must not spell: the vocabulary's control tokens (<|im_end|>,
 * <|eot_id|>, [TOOL_CALLS] ...: tok_encode turns their text into them), its user-defined
 * tokens that the template writes (Qwen's <tool_call>: always cut out of a text), and the
 * tags of Kiln's own tool prompt. */
typedef struct specials {
    const char **text;
    int n;
} specials;

static const char *const prompt_tags[] = {"<tools>",      "</tools>",        "<tool_call>",
                                          "</tool_call>", "<tool_response>", "</tool_response>"};
#define N_PROMPT_TAGS (int)(sizeof prompt_tags / sizeof *prompt_tags)

static bool is_markup(const tok *tk, const chat_tmpl *tm, int32_t id)
{
    const char *t = tok_text(tk, id);
    if (!t || strlen(t) < 2) return false;
    return tok_is_control(tk, id) || (tok_is_user_defined(tk, id) && chat_tmpl_mentions(tm, t));
}

/* Fills sp (texts borrowed from tk); 0, or -1 when out of memory. Walks the tokenizer's
 * special tokens (hundreds), not the vocabulary: this runs per request with tools. */
static int specials_of(const tok *tk, const chat_tmpl *tm, specials *sp)
{
    int32_t ns;
    const int32_t *ids = tok_specials(tk, &ns);
    sp->n = 0;
    sp->text = malloc(sizeof *sp->text * (size_t)(N_PROMPT_TAGS + ns));
    if (!sp->text) return -1;
    for (int k = 0; k < N_PROMPT_TAGS; k++)
        sp->text[sp->n++] = prompt_tags[k];
    for (int32_t i = 0; i < ns; i++)
        if (is_markup(tk, tm, ids[i])) sp->text[sp->n++] = tok_text(tk, ids[i]);
    return 0;
}

/* The special text s[0..len) spells first (leftmost, then longest), or NULL. */
static const char *spelled(const char *s, size_t len, const specials *sp)
{
    const char *best = NULL, *at = NULL;
    for (int k = 0; k < sp->n; k++) {
        const char *p = memmem(s, len, sp->text[k], strlen(sp->text[k]));
        if (p && (!at || p < at || (p == at && strlen(sp->text[k]) > strlen(best))))
            best = sp->text[k], at = p;
    }
    return best;
}

/* The first special text a string of v (keys included) spells, or NULL; *deep when v nests
 * deeper than a template should be asked to render. */
static const char *spelled_json(const json_t *v, const specials *sp, int depth, bool *deep)
{
    if (depth > 128) {
        *deep = true;
        return NULL;
    }
    if (json_is_string(v)) return spelled(json_string_value(v), json_string_length(v), sp);
    const char *hit = NULL;
    if (json_is_array(v))
        for (size_t i = 0; !hit && !*deep && i < json_array_size(v); i++)
            hit = spelled_json(json_array_get(v, i), sp, depth + 1, deep);
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!hit && !*deep) hit = spelled(k, strlen(k), sp);
            if (!hit && !*deep) hit = spelled_json(x, sp, depth + 1, deep);
        }
    }
    return hit;
}

/* s with every special text split by MARK after its first byte (and any MARK of the client's
 * own replaced by U+FFFD), or NULL when s needs no change. */
static char *defuse(const char *s, size_t len, const specials *sp)
{
    size_t extra = 0;
    for (int k = 0; k < sp->n; k++)
        for (const char *p = s;
             (p = memmem(p, len - (size_t)(p - s), sp->text[k], strlen(sp->text[k]))); p++)
            extra += MARK_LEN;
    bool own = memmem(s, len, MARK, MARK_LEN) != NULL;
    if (!extra && !own) return NULL;
    char *out = malloc(len + extra + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        if (i + MARK_LEN <= len && !memcmp(s + i, MARK, MARK_LEN)) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += MARK_LEN;
            continue;
        }
        bool hit = false;
        for (int k = 0; k < sp->n && !hit; k++) {
            size_t n = strlen(sp->text[k]);
            hit = i + n <= len && !memcmp(s + i, sp->text[k], n);
        }
        *o++ = s[i++];
        if (hit) {
            memcpy(o, MARK, MARK_LEN);
            o += MARK_LEN;
        }
    }
    *o = 0;
    return out;
}

/* A deep copy of v whose strings (keys included) are defused. Sets *marked when any is. */
static json_t *defuse_json(const json_t *v, const specials *sp, bool *marked, int depth)
{
    if (depth > 256) return json_null();
    if (json_is_string(v)) {
        char *d = defuse(json_string_value(v), json_string_length(v), sp);
        if (!d) return json_copy((json_t *)v);
        *marked = true;
        json_t *o = json_string(d);
        free(d);
        return o ? o : json_null();
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_append_new(a, defuse_json(json_array_get(v, i), sp, marked, depth + 1));
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            char *d = defuse(k, strlen(k), sp);
            if (d) *marked = true;
            json_object_set_new(o, d ? d : k, defuse_json(x, sp, marked, depth + 1));
            free(d);
        }
        return o;
    }
    return json_copy((json_t *)v);
}

/* One message for the template: role, content (joined), and tool_calls with their
 * arguments as objects (as Hugging Face templates expect), tool_call_id, name. */
static json_t *message_json(const srv_req *r, int i, const specials *sp, bool *marked)
{
    json_t *src = json_array_get(json_object_get(r->root, "messages"), (size_t)i);
    json_t *m = json_pack("{s:s, s:s}", "role", r->msgs[i].role, "content", r->msgs[i].content);
    json_t *tc = srv_json_member(src, "tool_calls"), *v;
    if (tc) {
        json_t *calls = json_array();
        for (size_t k = 0; k < json_array_size(tc); k++) {
            json_t *c = json_array_get(tc, k), *f = json_object_get(c, "function");
            const char *a = json_string_value(json_object_get(f, "arguments"));
            json_t *args = json_loads(a, JSON_DECODE_ANY, NULL);
            if (!args) args = json_string(a);
            json_t *call = json_pack("{s:s, s:{s:O, s:o}}", "type", "function", "function", "name",
                                     json_object_get(f, "name"), "arguments", args);
            if ((v = srv_json_member(c, "id"))) json_object_set(call, "id", v);
            json_array_append_new(calls, call);
        }
        json_t *d = defuse_json(calls, sp, marked, 0);
        json_decref(calls);
        json_object_set_new(m, "tool_calls", d);
    }
    if ((v = srv_json_member(src, "tool_call_id"))) json_object_set(m, "tool_call_id", v);
    if ((v = srv_json_member(src, "name")) && json_is_string(v)) json_object_set(m, "name", v);
    return m;
}

/* Kiln's own tool prompt for a template that never reads `tools`. */
static char *default_prompt(const json_t *tools)
{
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    static const char head[] =
        "# Tools\n\nYou may call one or more functions to answer. Their signatures, one JSON "
        "object per line, are within <tools></tools>:\n<tools>";
    static const char tail[] =
        "\n</tools>\n\nTo call a function, write a JSON object with its name and arguments "
        "within <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, "
        "\"arguments\": <args-json-object>}\n</tool_call>";
    if (!out) return NULL;
    memcpy(out, head, sizeof head - 1);
    n = sizeof head - 1;
    for (size_t i = 0; i <= json_array_size(tools); i++) {
        char *t = i < json_array_size(tools)
                      ? json_dumps(json_array_get(tools, i), JSON_COMPACT | JSON_ENSURE_ASCII)
                      : strdup(tail);
        if (!t) {
            free(out);
            return NULL;
        }
        size_t tl = strlen(t);
        if (n + tl + 2 > cap) {
            cap = (n + tl + 2) * 2;
            char *no = realloc(out, cap);
            if (!no) {
                free(t);
                free(out);
                return NULL;
            }
            out = no;
        }
        if (i < json_array_size(tools)) out[n++] = '\n';
        memcpy(out + n, t, tl);
        n += tl;
        free(t);
    }
    out[n] = 0;
    return out;
}

/* The default (Hermes) layout: the tool prompt in the system turn, calls as <tool_call> text
 * in the assistant turns, tool results as <tool_response> in user turns (a template without
 * tool support may know no `tool` role). */
static int default_messages(json_t *msgs, json_t *tools, bool in_user)
{
    char *prompt = tools ? default_prompt(tools) : NULL;
    if (tools && !prompt) return -1;
    json_t *out = json_array();
    char *lead = NULL;
    size_t i0 = 0;
    if (prompt) {
        json_t *first = json_array_get(msgs, 0);
        const char *role = json_string_value(json_object_get(first, "role"));
        bool sys = role && (!strcmp(role, "system") || !strcmp(role, "developer"));
        const char *c = sys ? json_string_value(json_object_get(first, "content")) : "";
        size_t len = strlen(c) + strlen(prompt) + 3;
        char *joined = malloc(len);
        if (!joined) {
            free(prompt);
            json_decref(out);
            return -1;
        }
        snprintf(joined, len, "%s%s%s", c, *c ? "\n\n" : "", prompt);
        if (sys || !in_user)
            json_array_append_new(out,
                                  json_pack("{s:s, s:s}", "role", "system", "content", joined));
        else
            lead = strdup(joined); /* goes before the first user turn */
        free(joined);
        free(prompt);
        i0 = sys ? 1 : 0;
    }
    for (size_t i = i0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i), *tc = json_object_get(m, "tool_calls");
        json_t *last = json_array_get(out, json_array_size(out) - 1);
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        bool tool = !strcmp(role, "tool");
        if (tool || (lead && !strcmp(role, "user"))) {
            /* a result in a user turn (one turn for results in a row), or the lead */
            const char *prev = json_string_value(json_object_get(last, "content"));
            bool merge = tool && last && json_is_true(json_object_get(last, "_results"));
            size_t len =
                strlen(content) + (merge ? strlen(prev) : 0) + (lead ? strlen(lead) : 0) + 48;
            char *t = malloc(len);
            if (!t) {
                free(lead);
                return json_decref(out), -1;
            }
            if (tool)
                snprintf(t, len, "%s%s<tool_response>\n%s\n</tool_response>", merge ? prev : "",
                         merge ? "\n" : "", content);
            else
                snprintf(t, len, "%s\n\n%s", lead, content);
            if (merge) json_array_remove(out, json_array_size(out) - 1);
            json_array_append_new(
                out, json_pack("{s:s, s:s, s:b}", "role", "user", "content", t, "_results", tool));
            free(t);
            if (!tool) {
                free(lead);
                lead = NULL;
            }
            continue;
        }
        if (!tc) {
            json_array_append(out, m);
            continue;
        }
        size_t cap = strlen(content) + 1;
        char *t = strdup(content);
        for (size_t k = 0; t && k < json_array_size(tc); k++) {
            json_t *f = json_object_get(json_array_get(tc, k), "function");
            char *call = json_dumps(f, JSON_COMPACT);
            char *nt = call ? realloc(t, cap + strlen(call) + 32) : NULL;
            if (!nt) {
                free(call);
                free(t);
                t = NULL;
                break;
            }
            t = nt;
            cap += strlen(call) + 32;
            strcat(t, *t ? "\n<tool_call>\n" : "<tool_call>\n");
            strcat(t, call);
            strcat(t, "\n</tool_call>");
            free(call);
        }
        if (!t) return json_decref(out), -1;
        json_array_append_new(out, json_pack("{s:s, s:s}", "role", "assistant", "content", t));
        free(t);
    }
    free(lead);
    json_array_clear(msgs);
    json_array_extend(msgs, out);
    json_decref(out);
    return 0;
}

int srv_tools_vars(const srv_req *r, const tok *tk, const chat_tmpl *tm, bool in_user,
                   json_t **vars, bool *marked, net_error *e)
{
    *vars = NULL;
    *marked = false;
    if (!r->tools && !r->tool_history) return 0;
    chat_tool_format fmt = chat_tmpl_tool_format(tm);
    specials sp;
    if (specials_of(tk, tm, &sp)) return net_fail(e, 503, "", "out of memory");
    for (size_t i = 0; i < json_array_size(r->tools); i++) {
        bool deep = false;
        const char *hit = spelled_json(json_array_get(r->tools, i), &sp, 0, &deep);
        if (hit || deep) {
            net_fail(e, 400, "tools",
                     deep ? "tools[%zu]: nested deeper than 128 levels"
                          : "tools[%zu]: a string spells %.64s, markup of the model's prompt "
                            "(tools are data: they cannot write the template's tokens or tags)",
                     i, hit);
            free(sp.text);
            return -1;
        }
    }
    json_t *v = json_object(), *msgs = json_array(), *tools = NULL;
    for (int i = 0; i < r->n_msgs; i++)
        json_array_append_new(msgs, message_json(r, i, &sp, marked));
    if (r->tools) tools = json_incref(r->tools);
    free(sp.text);
    int rc = 0;
    if (fmt == CHAT_TOOLS_NONE) {
        rc = default_messages(msgs, tools, in_user);
    } else if (tools) {
        json_object_set(v, "tools", tools);
    }
    json_decref(tools);
    json_object_set_new(v, "messages", msgs);
    if (rc) {
        json_decref(v);
        return net_fail(e, 503, "", "out of memory");
    }
    *vars = v;
    return 0;
}

int64_t srv_tools_encode(const tok *tk, const char *text, size_t len, unsigned flags, int32_t *out,
                         int64_t cap)
{
    int64_t n = 0;
    const char *p = text, *end = text + len;
    while (p <= end) {
        const char *m = memmem(p, (size_t)(end - p), MARK, MARK_LEN);
        const char *q = m ? m : end;
        int64_t k = tok_encode(tk, p, (size_t)(q - p), flags, out ? out + n : NULL,
                               out && n < cap ? cap - n : 0);
        n += k;
        flags &= ~(unsigned)TOK_ADD_BOS;
        if (!m) break;
        p = m + MARK_LEN;
    }
    return n;
}

/* ---------------------------------------------------------------- the answer ---- */

void srv_tool_call_id(char *out, size_t cap, const char *seed, int k, chat_tool_format fmt)
{
    static const char dig[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    /* ten 6-bit digits per hash: three hashes for 24 (shifts past 63 are undefined) */
    uint64_t h[3];
    for (int j = 0; j < 3; j++)
        h[j] = XXH3_64bits_withSeed(seed, strlen(seed), (uint64_t)k + 1 + 1000 * (uint64_t)j);
    /* Mistral's template wants ids of 9 letters and digits; OpenAI's are call_ + 24 */
    int n = fmt == CHAT_TOOLS_MISTRAL ? 9 : 24, o = 0;
    if (fmt != CHAT_TOOLS_MISTRAL && cap > 5) o = snprintf(out, cap, "call_");
    for (int i = 0; i < n && (size_t)o + 1 < cap; i++) {
        uint64_t x = h[i / 10] >> (6 * (i % 10));
        out[o++] = dig[x % 62];
    }
    out[o] = 0;
}

/* One call from a JSON object {"name", "arguments" | "parameters"} naming one of the tools;
 * NULL otherwise. */
static json_t *call_of(const srv_req *r, const json_t *o)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    json_t *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    if (!name || !find_tool(r, name) || !json_is_object(args)) return NULL;
    char *a = json_dumps(args, JSON_COMPACT);
    if (!a) return NULL;
    json_t *c = json_pack("{s:s, s:s}", "name", name, "arguments", a);
    free(a);
    return c;
}

/* Appends the calls of JSON text t (an object or a list of them) to calls. False when t is
 * not that. */
static bool json_calls(const srv_req *r, const char *t, size_t len, json_t *calls)
{
    json_t *v = json_loadb(t, len, JSON_DECODE_ANY, NULL);
    bool ok = v != NULL;
    size_t n0 = json_array_size(calls);
    if (json_is_object(v)) {
        json_t *c = call_of(r, v);
        ok = c != NULL;
        if (c) json_array_append_new(calls, c);
    } else if (json_is_array(v) && json_array_size(v)) {
        for (size_t i = 0; ok && i < json_array_size(v); i++) {
            json_t *c = call_of(r, json_array_get(v, i));
            ok = c != NULL;
            if (c) json_array_append_new(calls, c);
        }
    } else {
        ok = false;
    }
    json_decref(v);
    if (!ok)
        while (json_array_size(calls) > n0)
            json_array_remove(calls, json_array_size(calls) - 1);
    return ok;
}

static size_t skip_space(const char *t, size_t i, size_t len)
{
    while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r'))
        i++;
    return i;
}

/* n less the spaces and newlines that end t[0..n) (those before a call are not content) */
static size_t trim_end(const char *t, size_t n)
{
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\n'))
        n--;
    return n;
}

/* One past the closing bracket of the JSON object or list that opens at t[i], or 0 when t
 * ends first (a call cut short). Follows only strings and brackets: what it delimits is
 * parsed by the caller, so mismatched brackets fail there. */
static size_t value_end(const char *t, size_t i, size_t len)
{
    int depth = 0;
    bool str = false;
    for (; i < len; i++) {
        if (str) {
            if (t[i] == '\\')
                i++;
            else if (t[i] == '"')
                str = false;
        } else if (t[i] == '"') {
            str = true;
        } else if (t[i] == '{' || t[i] == '[') {
            depth++;
        } else if ((t[i] == '}' || t[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return 0;
}

/* Output cut short (max_tokens): appends the complete calls of the JSON text t[0..len) (a
 * call or a list of calls, from its first bracket on) and drops the one the cut fell in.
 * Returns the bytes of t read: the whole value when it is complete (what follows is the
 * caller's), len when the cut fell inside it; 0 (nothing appended) when t is not a call or
 * a list of calls. */
static size_t cut_calls(const srv_req *r, const char *t, size_t len, json_t *calls)
{
    size_t e = value_end(t, 0, len);
    if (e) return json_calls(r, t, e, calls) ? e : 0; /* whole: only what follows was cut */
    if (t[0] == '{') return len;                      /* one call, cut */
    size_t n0 = json_array_size(calls), i = skip_space(t, 1, len);
    while (i < len && t[i] == '{') {
        if (!(e = value_end(t, i, len))) return len; /* the call the cut fell in */
        if (!json_calls(r, t + i, e - i, calls)) break;
        i = skip_space(t, e, len);
        if (i == len) return len;
        if (t[i] != ',') break;
        i = skip_space(t, i + 1, len);
    }
    if (i == len) return len;
    while (json_array_size(calls) > n0) /* something else than a call: not a list of calls */
        json_array_remove(calls, json_array_size(calls) - 1);
    return 0;
}

/* Whether t[0..len) is space and then the start of (or all of) tag. */
static bool tag_start(const char *t, size_t len, const char *tag)
{
    size_t i = skip_space(t, 0, len);
    return len - i <= strlen(tag) && !memcmp(t + i, tag, len - i);
}

json_t *srv_tools_parse(const srv_req *r, const char *t, size_t len, bool cut, size_t *content_len)
{
    json_t *calls = json_array();
    *content_len = len;
    if (r->tool_choice == SRV_TOOL_NAMED) {
        /* the output is the arguments, as generated (and as they were streamed): a call when
         * they are complete */
        json_t *v = json_loadb(t, len, 0, NULL);
        json_t *a = json_is_object(v) ? json_stringn(t, len) : NULL;
        if (a)
            json_array_append_new(calls,
                                  json_pack("{s:s, s:o}", "name", r->tool_name, "arguments", a));
        json_decref(v);
        if (json_array_size(calls)) *content_len = 0;
        return calls;
    }
    /* Hermes tags: content before the first, each holding one call; cut short, the last
     * tag's call may be incomplete (dropped) or complete with its closing tag cut */
    const char *open = "<tool_call>", *close = "</tool_call>";
    const char *first = memmem(t, len, open, strlen(open));
    if (first) {
        const char *p = first;
        bool ok = true;
        while (ok && p) {
            const char *b = p + strlen(open), *end = t + len;
            const char *q = memmem(b, (size_t)(end - b), close, strlen(close));
            if (!q && cut) {
                size_t n = (size_t)(end - b), i = skip_space(b, 0, n);
                if (i == n) break; /* cut before its call began */
                size_t used = b[i] == '{' || b[i] == '[' ? cut_calls(r, b + i, n - i, calls) : 0;
                ok = used && tag_start(b + i + used, n - i - used, close);
                break;
            }
            ok = json_calls(r, b, (size_t)((q ? q : end) - b), calls);
            if (!q) break;
            p = memmem(q, (size_t)(end - q), open, strlen(open));
        }
        if (ok && json_array_size(calls)) {
            *content_len = trim_end(t, (size_t)(first - t));
            return calls;
        }
        json_array_clear(calls);
    }
    /* a bare call: the whole output is a JSON call or a list of calls (Llama 3, Mistral,
     * required) */
    size_t i = skip_space(t, 0, len);
    if (i < len && (t[i] == '{' || t[i] == '[')) {
        bool ok;
        if (cut) {
            size_t used = cut_calls(r, t + i, len - i, calls);
            ok = used && skip_space(t, i + used, len) == len;
        } else {
            ok = json_calls(r, t + i, len - i, calls);
        }
        if (ok && json_array_size(calls))
            *content_len = 0;
        else
            json_array_clear(calls);
    }
    return calls;
}

size_t srv_tools_hold(const srv_req *r, const char *t, size_t len, size_t sent, bool *holding)
{
    if (*holding) return 0;
    if (r->tool_choice == SRV_TOOL_NAMED || r->tool_choice == SRV_TOOL_REQUIRED) {
        *holding = true;
        return 0;
    }
    const char *open = "<tool_call>";
    size_t ol = strlen(open);
    const char *m = memmem(t + sent, len - sent, open, ol);
    if (m) {
        *holding = true;
        return trim_end(t, (size_t)(m - t));
    }
    size_t i = skip_space(t, 0, len);
    if (i == len) return 0; /* only space so far: it may start a call */
    if (t[i] == '{' || t[i] == '[') {
        *holding = true;
        return 0;
    }
    /* hold back what could be the start of a tag, and the space that would precede it */
    size_t n = len;
    for (size_t k = ol - 1; k > 0; k--)
        if (len >= k && !memcmp(t + len - k, open, k)) {
            n = len - k;
            break;
        }
    return trim_end(t, n);
}
