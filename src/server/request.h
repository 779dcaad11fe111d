/* server/request.h: an OpenAI / vLLM request body → what the engine needs, with strict
 * validation. Pure functions (no I/O, no server state): JSON text in, a srv_req or a
 * net_error naming the bad parameter out. Tokenizing is a second step (srv_req_tokenize)
 * that needs the tokenizer and, for chat, the chat template. */
#ifndef KILN_SERVER_REQUEST_H
#define KILN_SERVER_REQUEST_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "net/error.h"
#include "tok/chat.h"
#include "tok/tok.h"

#define SRV_MAX_N        16 /* choices per prompt */
#define SRV_MAX_PROMPTS  16 /* prompts in one completions request */
#define SRV_MAX_CHOICES  16 /* prompts x n */
#define SRV_MAX_MESSAGES 1024
#define SRV_MAX_BIAS     1024
#define SRV_MAX_STOP_IDS 64

typedef enum srv_kind { SRV_COMPLETIONS, SRV_CHAT, SRV_EMBEDDINGS } srv_kind;

/* tool_choice (server/tools.c) */
typedef enum srv_tool_choice {
    SRV_TOOL_NONE,     /* no tools, or "none": plain text */
    SRV_TOOL_AUTO,     /* the model may call: its text is parsed for calls */
    SRV_TOOL_REQUIRED, /* constrained to a list of one or more calls */
    SRV_TOOL_NAMED,    /* constrained to the arguments of tool_name */
} srv_tool_choice;

typedef struct srv_prompt {
    const char *text; /* borrowed from the JSON (NULL when given as token ids) */
    size_t text_len;
    int32_t *ids; /* malloc'd: given ids, or filled by srv_req_tokenize */
    int n_ids;
} srv_prompt;

typedef struct srv_req {
    srv_kind kind;
    json_t *root;      /* owns every borrowed string below */
    const char *model; /* NULL when not given */
    int n_prompts;
    srv_prompt prompts[SRV_MAX_PROMPTS];
    int n_msgs;
    chat_msg *msgs;  /* (n_msgs) malloc'd; contents of part arrays joined */
    char **msg_bufs; /* (n_msgs) malloc'd joined contents, or NULL */
    int n;           /* choices per prompt */
    bool stream, include_usage, echo;
    bool max_tokens_set;
    int logprobs;       /* -1: none; else top N alternatives (chat: top_logprobs) */
    engine_sampling sp; /* stop strings borrowed from root */
    int32_t *bias_ids;  /* (sp.n_logit_bias) */
    float *bias;
    int32_t *stop_ids; /* (sp.n_stop_ids) */
    int priority;
    uint64_t cache_salt; /* 0: none */
    bool add_special;    /* /tokenize: add BOS (default true) */
    int dimensions;      /* /v1/embeddings: keep the first N (renormalised); 0: all */
    bool base64;         /* /v1/embeddings: encoding_format "base64" (little-endian float32) */
    /* constrained decoding (server/structured.c): one language per request */
    bool has_grammar;
    gram_kind gram_kind;
    char *gram_src; /* malloc'd source (a schema or choices as compact JSON), "" for JSON */
    size_t gram_len;
    const char *gram_param; /* the parameter it came from (static), for errors */
    /* tool calling (server/tools.c) */
    json_t *tools; /* borrowed from root: the checked list, or NULL */
    srv_tool_choice tool_choice;
    const char *tool_name; /* SRV_TOOL_NAMED: the function */
    bool parallel_tools;   /* parallel_tool_calls (default true) */
    bool tool_history;     /* a message carries tool_calls or answers one */
} srv_req;

/* Parses and validates body[0..len) as a request of kind. Returns 0 with *r filled (free it
 * with srv_req_free), or -1 with e filled (status 400 and the parameter) and nothing left
 * allocated. Token ids are checked against n_vocab. */
int srv_req_parse(srv_req *r, srv_kind kind, const char *body, size_t len, int n_vocab,
                  net_error *e);

/* Parses a /tokenize body ({prompt | messages, add_special_tokens}) or a /detokenize body
 * ({tokens}); same results as srv_req_parse. For /detokenize, prompts[0].ids holds the ids. */
int srv_tokenize_parse(srv_req *r, const char *body, size_t len, int n_vocab, net_error *e);
int srv_detokenize_parse(srv_req *r, const char *body, size_t len, int n_vocab, net_error *e);

/* Renders chat messages (through tmpl) and tokenizes every text prompt. Then checks each
 * prompt against n_ctx: a prompt that leaves no room for max_tokens is a 400, never a
 * truncation. When max_tokens was not given it becomes what fits (completions: at most 16).
 * Embeddings: n_ctx is the longest input the model embeds (engine_embed_max_tokens).
 * Returns 0, or -1 with e filled. */
int srv_req_tokenize(srv_req *r, const tok *tk, const chat_tmpl *tmpl, int n_ctx, net_error *e);

void srv_req_free(srv_req *r); /* leaves *r zeroed; a zeroed r is fine */
/* The member key of object o, or NULL when it is absent or null (as OpenAI reads null). */
json_t *srv_json_member(const json_t *o, const char *key);

/* server/structured.c: response_format, guided_*, json_schema, grammar into r->gram_*.
 * Returns 0, or -1 with e filled (r left for srv_req_free). */
int srv_req_parse_grammar(srv_req *r, net_error *e);
/* server/tools.c: tools, tool_choice, parallel_tool_calls and the messages' tool_calls /
 * tool_call_id (after the messages are parsed). required or a named function sets the
 * grammar (param "tools"). Returns 0, or -1 with e filled. */
int srv_req_parse_tools(srv_req *r, net_error *e);
/* The template's variables for a request with tools or tool history ({"tools", "messages"};
 * NULL when it has neither). A tool with a string that spells the prompt's markup (a control
 * token, a user-defined token tm writes, a tag of Kiln's tool prompt) is a 400 naming tools;
 * past calls' arguments that do are defused (*marked: tokenize with srv_tools_encode then).
 * in_user: Kiln's own tool prompt (tm without tools support) goes in a user turn of its own,
 * for templates that refuse a system turn. Returns 0, or -1 with e filled. */
int srv_tools_vars(const srv_req *r, const tok *tk, const chat_tmpl *tm, bool in_user,
                   json_t **vars, bool *marked, net_error *e);
/* tok_encode of a rendered prompt, split at the markers srv_tools_vars put in client data. */
int64_t srv_tools_encode(const tok *tk, const char *text, size_t len, unsigned flags, int32_t *out,
                         int64_t cap);
/* The calls in a finished output t[0..len): a list of {name, arguments (JSON text)}, empty
 * when there are none; *content_len: the bytes of t that are the message's content. cut: the
 * output was cut short (max_tokens): the complete calls count, the one the cut fell in is
 * dropped (neither a call nor content). */
json_t *srv_tools_parse(const srv_req *r, const char *t, size_t len, bool cut, size_t *content_len);
/* Streaming: how many bytes of the output so far t[0..len) may go out as content now (the
 * rest may be or become a call). Sets *holding once a call has begun (then returns 0).
 * sent: what an earlier call returned (none of it can begin a call): the search for a call
 * starts there, so a streamed answer is scanned once, not once per token. */
size_t srv_tools_hold(const srv_req *r, const char *t, size_t len, size_t sent, bool *holding);
/* A call's id ("call_" + 24 letters and digits; 9 for Mistral's template), from seed, k. */
void srv_tool_call_id(char *out, size_t cap, const char *seed, int k, chat_tool_format fmt);

/* Sets the request's one language (src copied); a second one is a 400 naming param. */
int srv_req_set_grammar(srv_req *r, const char *param, gram_kind kind, const char *src, size_t len,
                        net_error *e);
#endif
