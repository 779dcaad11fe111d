/* server/shape.c: the JSON of an answer, for both endpoints (completions: text_completion;
 * chat: chat.completion and chat.completion.chunk): the common fields, usage, a choice's
 * streamed chunk, the whole final body, and logprobs in each endpoint's layout. Pure
 * formatting: nothing here sends or decides. */
#include "server/internal.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *srv_finish_name(int f)
{
    switch (f) {
    case ENGINE_FINISH_STOP:
        return "stop";
    case ENGINE_FINISH_LENGTH:
        return "length";
    case ENGINE_FINISH_ABORT:
        return "abort";
    case ENGINE_FINISH_ERROR:
        return "error";
    default:
        return NULL;
    }
}

json_t *srv_chunk_base(const srv_call *c)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", c->id, "object",
                     c->r.kind == SRV_CHAT
                         ? (c->r.stream ? "chat.completion.chunk" : "chat.completion")
                         : "text_completion",
                     "created", (json_int_t)c->created, "model", srv_call_model(c));
}

json_t *srv_usage_json(const srv_call *c)
{
    int p = 0, g = 0, cached = 0;
    for (int i = 0; i < c->n_sub; i++) {
        p += c->sub[i].prompt_tokens;
        g += c->sub[i].completion_tokens;
        cached += c->sub[i].cached_tokens;
    }
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", p, "completion_tokens", g,
                     "total_tokens", p + g, "prompt_tokens_details", "cached_tokens", cached);
}

/* The prompt's text for echo: as given, or its ids detokenized. malloc'd. */
char *srv_prompt_text(const srv_call *c, int k, size_t *len)
{
    const srv_prompt *p = &c->r.prompts[k];
    if (p->text) {
        char *t = malloc(p->text_len + 1);
        if (t) memcpy(t, p->text, p->text_len), t[p->text_len] = 0;
        *len = p->text_len;
        return t;
    }
    size_t n = tok_decode(c->s->tk, p->ids, p->n_ids, 0, NULL, 0);
    char *t = malloc(n + 1);
    if (t) tok_decode(c->s->tk, p->ids, p->n_ids, 0, t, n + 1);
    *len = n;
    return t;
}

/* The logprobs entry of one sampled token (completions: parallel arrays appended to lp;
 * chat: one element appended to the content list lp). */
void srv_lp_add(srv_call *c, json_t *lp, const engine_event *ev, size_t text_off)
{
    char piece[256];
    size_t pl = tok_piece(c->s->tk, ev->token, 0, piece, sizeof piece);
    if (pl > sizeof piece) pl = sizeof piece;
    if (c->r.kind == SRV_COMPLETIONS) {
        json_array_append_new(json_object_get(lp, "tokens"), net_json_text(piece, pl));
        json_array_append_new(json_object_get(lp, "token_logprobs"),
                              json_real((double)ev->logprob));
        json_array_append_new(json_object_get(lp, "text_offset"),
                              json_integer((json_int_t)text_off));
        json_t *top = json_object();
        for (int i = 0; i < ev->n_top; i++) {
            char tp[256];
            size_t tl = tok_piece(c->s->tk, ev->top[i].token, 0, tp, sizeof tp - 1);
            if (tl > sizeof tp - 1) tl = sizeof tp - 1;
            json_t *key = net_json_text(tp, tl);
            json_object_set_new(top, json_string_value(key), json_real((double)ev->top[i].logprob));
            json_decref(key);
        }
        json_array_append_new(json_object_get(lp, "top_logprobs"),
                              c->r.logprobs > 0 ? top : json_null());
        if (c->r.logprobs <= 0) json_decref(top);
        return;
    }
    json_t *bytes = json_array();
    for (size_t i = 0; i < pl; i++)
        json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    json_t *top = json_array();
    for (int i = 0; i < ev->n_top; i++) {
        char tp[256];
        size_t tl = tok_piece(c->s->tk, ev->top[i].token, 0, tp, sizeof tp);
        if (tl > sizeof tp) tl = sizeof tp;
        json_t *tb = json_array();
        for (size_t j = 0; j < tl; j++)
            json_array_append_new(tb, json_integer((unsigned char)tp[j]));
        json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", net_json_text(tp, tl),
                                             "logprob", (double)ev->top[i].logprob, "bytes", tb));
    }
    json_array_append_new(lp, json_pack("{s:o, s:f, s:o, s:o}", "token", net_json_text(piece, pl),
                                        "logprob", (double)ev->logprob, "bytes", bytes,
                                        "top_logprobs", top));
}

json_t *srv_lp_new(const srv_call *c)
{
    if (c->r.kind == SRV_CHAT) return json_array();
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs",
                     "text_offset");
}

json_t *srv_lp_wrap(const srv_call *c, json_t *lp)
{
    if (!lp) return json_null();
    return c->r.kind == SRV_CHAT ? json_pack("{s:o}", "content", lp) : lp;
}

void srv_send_final_json(srv_call *c, struct evhttp_request *req)
{
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        srv_choice *ch = &c->ch[i];
        size_t len = evbuffer_get_length(ch->text);
        const char *t = len ? (const char *)evbuffer_pullup(ch->text, -1) : "";
        json_t *o = json_pack("{s:i}", "index", i);
        size_t content_len = len;
        json_t *calls = srv_tool_calls_json(c, i, t, len, ch->finish, &content_len);
        if (c->r.kind == SRV_CHAT) {
            json_t *m =
                json_pack("{s:s, s:o}", "role", "assistant", "content",
                          calls && !content_len ? json_null() : net_json_text(t, content_len));
            if (calls) json_object_set_new(m, "tool_calls", calls);
            json_object_set_new(o, "message", m);
        } else {
            json_object_set_new(o, "text", net_json_text(t, len));
        }
        json_object_set_new(o, "logprobs", srv_lp_wrap(c, json_incref(ch->lp)));
        const char *fn =
            calls && ch->finish == ENGINE_FINISH_STOP ? "tool_calls" : srv_finish_name(ch->finish);
        json_object_set_new(o, "finish_reason", fn ? json_string(fn) : json_null());
        json_array_append_new(choices, o);
    }
    json_t *v = srv_chunk_base(c);
    json_object_set_new(v, "choices", choices);
    json_object_set_new(v, "usage", srv_usage_json(c));
    srv_send_json(c->s, req, 200, v);
    c->status = 200;
}

/* The bytes of v (n little-endian float32, as x86 holds them) in base64. malloc'd. */
static char *base64_floats(const float *v, int n)
{
    static const char dig[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = (const unsigned char *)v;
    size_t len = sizeof(float) * (size_t)n, o = 0;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < len; i += 3) {
        unsigned x = (unsigned)b[i] << 16 | (i + 1 < len ? (unsigned)b[i + 1] << 8 : 0) |
                     (i + 2 < len ? b[i + 2] : 0);
        out[o++] = dig[x >> 18 & 63];
        out[o++] = dig[x >> 12 & 63];
        out[o++] = i + 1 < len ? dig[x >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? dig[x & 63] : '=';
    }
    out[o] = 0;
    return out;
}

json_t *srv_embeddings_json(srv_call *c)
{
    json_t *data = json_array();
    int p = 0;
    for (int k = 0; k < c->n_sub; k++) {
        srv_sub *sub = &c->sub[k];
        int n = c->r.dimensions ? c->r.dimensions : sub->n_vec;
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)sub->vec[i] * (double)sub->vec[i];
        float scale = n < sub->n_vec && ss > 0 ? (float)(1.0 / sqrt(ss)) : 1.f;
        for (int i = 0; i < n; i++)
            sub->vec[i] *= scale;
        json_t *emb;
        if (c->r.base64) {
            char *t = base64_floats(sub->vec, n);
            emb = t ? json_string(t) : json_null();
            free(t);
        } else {
            emb = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(emb, json_real((double)sub->vec[i]));
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", k,
                                              "embedding", emb));
        p += sub->prompt_tokens;
    }
    return json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list", "data", data, "model",
                     srv_call_model(c), "usage", "prompt_tokens", p, "total_tokens", p);
}
