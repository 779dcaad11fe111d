/* server/toolshape.c: tool calls in chat answers, as OpenAI shapes them. Not streamed:
 * message.tool_calls [{id, type: "function", function: {name, arguments}}] beside the content
 * before the calls (or null), finish_reason "tool_calls". Streamed: content goes out until a
 * call may have begun (srv_tools_hold); a named function's arguments stream as they come;
 * other calls are sent once the output is complete: per call a delta with its index, id,
 * type and name (arguments ""), then its arguments in pieces, then finish_reason
 * "tool_calls". An output that holds no call after all goes out as content. Cut short by
 * max_tokens, the calls complete by then are answered the same way (streamed or not), the
 * one the cut fell in is dropped, and finish_reason is "length". */
#include "server/internal.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <string.h>

#define ARG_PIECE 32 /* bytes of arguments per streamed delta */

static chat_tool_format fmt_of(const srv_call *c)
{
    return c->s->tmpl ? chat_tmpl_tool_format(c->s->tmpl) : CHAT_TOOLS_NONE;
}

static json_t *call_json(const srv_call *c, int idx, int k, const char *name, const char *args)
{
    char id[40];
    srv_tool_call_id(id, sizeof id, c->id, idx * 1024 + k, fmt_of(c));
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                     name, "arguments", args);
}

json_t *srv_tool_calls_json(const srv_call *c, int idx, const char *t, size_t len, int finish,
                            size_t *content_len)
{
    *content_len = len;
    if (c->r.kind != SRV_CHAT || c->r.tool_choice == SRV_TOOL_NONE) return NULL;
    if (finish != ENGINE_FINISH_STOP && finish != ENGINE_FINISH_LENGTH) return NULL;
    json_t *calls = srv_tools_parse(&c->r, t, len, finish == ENGINE_FINISH_LENGTH, content_len);
    if (!json_array_size(calls)) {
        json_decref(calls);
        *content_len = len;
        return NULL;
    }
    json_t *out = json_array();
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *x = json_array_get(calls, k);
        json_array_append_new(out, call_json(c, idx, (int)k,
                                             json_string_value(json_object_get(x, "name")),
                                             json_string_value(json_object_get(x, "arguments"))));
    }
    json_decref(calls);
    return out;
}

/* One chunk for choice idx whose delta is delta (taken). */
static void send_delta(srv_call *c, int idx, json_t *delta, const char *finish)
{
    json_t *ch = json_pack("{s:i, s:o, s:n}", "index", idx, "delta", delta, "logprobs");
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *v = srv_chunk_base(c);
    json_object_set_new(v, "choices", json_pack("[o]", ch));
    net_sse_send(c->nc.req, v);
}

/* The content t[from..to) as one delta, when there is any. */
static void send_content(srv_call *c, int idx, const char *t, size_t from, size_t to)
{
    if (to > from)
        send_delta(c, idx, json_pack("{s:o}", "content", net_json_text(t + from, to - from)), NULL);
}

/* A call's first delta (index, id, type, name, arguments "") or one piece of its arguments. */
static void send_call_part(srv_call *c, int idx, int k, const json_t *head, const char *args,
                           size_t len)
{
    json_t *tc = json_pack("{s:i}", "index", k);
    if (head) {
        json_object_set(tc, "id", json_object_get(head, "id"));
        json_object_set_new(tc, "type", json_string("function"));
        json_object_set_new(tc, "function",
                            json_pack("{s:O, s:s}", "name",
                                      json_object_get(json_object_get(head, "function"), "name"),
                                      "arguments", ""));
    } else {
        json_object_set_new(tc, "function",
                            json_pack("{s:o}", "arguments", net_json_text(args, len)));
    }
    send_delta(c, idx, json_pack("{s:[o]}", "tool_calls", tc), NULL);
}

/* args in pieces of about ARG_PIECE bytes, never inside a UTF-8 sequence */
static void send_args(srv_call *c, int idx, int k, const char *a, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = len - i < ARG_PIECE ? len - i : ARG_PIECE;
        while (i + n < len && ((unsigned char)a[i + n] & 0xC0) == 0x80)
            n++;
        send_call_part(c, idx, k, NULL, a + i, n);
        i += n;
    }
}

void srv_stream_tool_text(srv_call *c, int idx)
{
    srv_choice *ch = &c->ch[idx];
    size_t len = evbuffer_get_length(ch->text);
    const char *t = len ? (const char *)evbuffer_pullup(ch->text, -1) : "";
    if (c->r.tool_choice == SRV_TOOL_NAMED) { /* the output is the arguments: stream them */
        if (!ch->holding) {
            json_t *head = call_json(c, idx, 0, c->r.tool_name, "");
            send_call_part(c, idx, 0, head, "", 0);
            json_decref(head);
            ch->holding = true;
        }
        if (len > ch->sent) send_args(c, idx, 0, t + ch->sent, len - ch->sent);
        ch->sent = len;
        return;
    }
    size_t safe = srv_tools_hold(&c->r, t, len, ch->sent, &ch->holding);
    send_content(c, idx, t, ch->sent, safe);
    if (safe > ch->sent) ch->sent = safe;
}

void srv_stream_tool_end(srv_call *c, int idx, int finish)
{
    srv_choice *ch = &c->ch[idx];
    size_t len = evbuffer_get_length(ch->text);
    const char *t = len ? (const char *)evbuffer_pullup(ch->text, -1) : "";
    if (c->r.tool_choice == SRV_TOOL_NAMED) {
        if (!ch->holding) srv_stream_tool_text(c, idx);
        send_delta(c, idx, json_object(),
                   finish == ENGINE_FINISH_STOP ? "tool_calls" : srv_finish_name(finish));
        return;
    }
    size_t content_len = len;
    json_t *calls = srv_tool_calls_json(c, idx, t, len, finish, &content_len);
    if (!calls) { /* no call after all: the rest is content */
        send_content(c, idx, t, ch->sent, len);
        send_delta(c, idx, json_object(), srv_finish_name(finish));
        return;
    }
    send_content(c, idx, t, ch->sent, content_len);
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *x = json_array_get(calls, k);
        const char *a =
            json_string_value(json_object_get(json_object_get(x, "function"), "arguments"));
        send_call_part(c, idx, (int)k, x, "", 0);
        send_args(c, idx, (int)k, a, strlen(a));
    }
    json_decref(calls);
    send_delta(c, idx, json_object(),
               finish == ENGINE_FINISH_STOP ? "tool_calls" : srv_finish_name(finish));
}
