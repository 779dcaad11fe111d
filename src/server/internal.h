/* server/internal.h: the server's state, shared by its files (not a public header).
 * Everything here belongs to the event loop's thread, except what is marked otherwise. */
#ifndef KILN_SERVER_INTERNAL_H
#define KILN_SERVER_INTERNAL_H
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/hist.h"
#include "net/calls.h"
#include "net/conns.h"
#include "net/reply.h"
#include "engine/engine.h"
#include "engine/open.h"
#include "server/request.h"
#include "server/server.h"
#include "tok/chat.h"
#include "tok/tok.h"

enum { SRV_LOADING = 0, SRV_READY = 1, SRV_FAILED = -1 };

#define SRV_TTFT_B 22
#define SRV_ITL_B  19
#define SRV_E2E_B  21

typedef struct srv_metrics {
    kl_hist ttft, itl, e2e, queue;
    uint64_t finished[4]; /* stop, length, abort, error */
    uint64_t http[6];     /* responses by status class 1xx..5xx (index 1..5) */
} srv_metrics;

/* One event copied off the engine thread. */
typedef struct srv_ev {
    struct srv_ev *next;
    struct srv_sub *sub;
    engine_event ev; /* text and top point into this struct */
    engine_logprob top[ENGINE_MAX_LOGPROBS];
    float *vec;  /* an embedding's vector, copied (malloc'd; NULL: none) */
    char text[]; /* (ev.text_len + 1) */
} srv_ev;

typedef struct srv_call srv_call;
typedef struct srv srv;
struct model_lora;

/* One adapter the server knows (server/lora.c). */
typedef struct srv_lora {
    struct srv_lora *next;
    char name[128];
    char path[4096];
    struct model_lora *a; /* resident weights, or NULL */
    bool loading;         /* a load on the adapter thread */
    bool registering;     /* being added by POST /v1/load_lora_adapter: not served yet */
    bool removed;         /* unloaded: freed when its last call ends */
    int refs;             /* calls submitted on it, not ended */
    uint64_t last_used;   /* LRU tick */
    srv_call *pending;    /* calls waiting for it to be resident (oldest first) */
} srv_lora;

typedef struct lora_job lora_job;

typedef struct srv_loras {
    srv_lora *head;
    int max;        /* resident at most */
    int n_resident; /* with weights, or loading them */
    uint64_t tick;
    uint64_t loads;  /* adapter loads since start (the --lora ones at start included) */
    char dir[4096];  /* --lora-dir, resolved */
    net_calls calls; /* POST /v1/load_lora_adapter requests waiting for their load */
    /* the adapter thread: jobs to it and back, under mu */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lora_job *todo, *done;
    bool stop;
    bool closing; /* the server is ending: no more loads */
    struct event *wake;
} srv_loras;

/* One engine request (a completions request with a list of prompts makes several). */
typedef struct srv_sub {
    srv_call *call;
    int k; /* prompt index */
    uint64_t eng_id;
    bool live;            /* submitted and its last event not seen yet */
    bool queue_seen;      /* its queue time is in the histogram */
    struct srv_ev *spare; /* carries the last event if copying it fails for want of memory */
    int prompt_tokens, completion_tokens, cached_tokens;
    float *vec; /* embeddings: the input's vector once computed (malloc'd) */
    int n_vec;
    int spec_draft_tokens, spec_accepted_tokens; /* speculation: proposed, kept */
} srv_sub;

typedef struct srv_choice {
    struct evbuffer *text; /* non-streaming: the text so far */
    json_t *lp;            /* logprobs: completions {tokens, ...}; chat [content...] */
    size_t text_off;
    int finish; /* engine_finish */
    int n_tokens;
    size_t sent;  /* streaming with tools: bytes of text sent as content */
    bool holding; /* streaming with tools: a call has begun (held, or named: sent as arguments) */
} srv_choice;

struct srv_call {
    struct srv *s;
    net_call nc; /* the client's request (NULL once answered or gone) and its connection */
    srv_req r;
    gram *gram; /* the request's compiled grammar (a reference), or NULL */
    char id[48];
    long long created;
    int n_sub, n_live;
    srv_sub sub[SRV_MAX_PROMPTS];
    int n_choices;
    srv_choice ch[SRV_MAX_CHOICES];
    bool started;        /* streaming: headers sent */
    bool gone;           /* the client went away: aborted */
    bool failed;         /* answered with an error already */
    srv_lora *lora;      /* the adapter it runs on (NULL: the base model) */
    bool lora_ref;       /* holds a reference on lora (submitted on it) */
    srv_call *pend_next; /* in lora's pending list while it waits for the adapter */
    const char *error;   /* why the model failed on it (an engine event's error), or NULL */
    int status;
    double t0, t_submit, t_first, t_last;
};

typedef struct srv {
    srv_opts o;
    struct event_base *base;
    struct evhttp *http;
    int port;
    struct evhttp *admin_http; /* --metrics-port: /metrics alone; NULL without it */
    net_conns *admin_conns;
    int metrics_port;
    /* the model: written by the loader thread before load_state becomes READY */
    engine_stack st; /* owns what the pointers below borrow */
    tok *tk;
    chat_tmpl *tmpl;
    engine *eng;
    gram_cache *grams; /* compiled grammars of requests, at most o.grammar_cache bytes: a flood
                          of distinct schemas holds that plus what calls in flight reference */
    int n_ctx, n_vocab;
    char name[256];
    pthread_t loader;
    bool loader_started;
    _Atomic int load_state;
    kl_err load_err;
    int exit_code;
    net_conns *tracked; /* the listener and every accepted connection (net/conns.h) */
    bool draining, aborted_all;
    double drain_deadline;
    int sigint_count;
    struct event *wake, *tick, *sigterm, *sigint;
    /* events from the engine thread: under mu */
    pthread_mutex_t mu;
    srv_ev *q_head, *q_tail;
    net_calls calls; /* the generation calls in progress (owner: srv_call) */
    srv_loras loras;
    uint64_t next_id;
    srv_metrics met;
} srv;

/* The model a call runs on as the API names it: its adapter's name, else the served name. */
static inline const char *srv_call_model(const srv_call *c)
{
    return c->lora ? c->lora->name : c->s->name;
}
/* True when name is a model this server serves: the served name or an adapter's. */
bool srv_serves(srv *s, const char *name);

/* server/http.c */
void srv_send_json(srv *s, struct evhttp_request *req, int status, json_t *v);
void srv_send_error(srv *s, struct evhttp_request *req, const net_error *e);
void srv_count_status(srv *s, int status);

/* server/gen.c */
void srv_gen_handle(srv *s, struct evhttp_request *req, srv_kind kind);
void srv_gen_drain_events(srv *s);
void srv_gen_poll_disconnects(srv *s);
void srv_gen_abort_all(srv *s);
void srv_gen_free_all(srv *s);

/* server/shape.c: an answer's JSON, both endpoints */
const char *srv_finish_name(int finish);   /* engine_finish -> "stop", "length", ...; NULL */
json_t *srv_chunk_base(const srv_call *c); /* id, object, created, model */
json_t *srv_usage_json(const srv_call *c);
/* The prompt's text for echo: as given, or its ids detokenized. malloc'd. */
char *srv_prompt_text(const srv_call *c, int k, size_t *len);
json_t *srv_lp_new(const srv_call *c);
/* Appends one sampled token's logprobs entry to lp (completions: parallel arrays; chat: the
 * content list). */
void srv_lp_add(srv_call *c, json_t *lp, const engine_event *ev, size_t text_off);
json_t *srv_lp_wrap(const srv_call *c, json_t *lp);
/* The whole non-streamed answer, sent on req with status 200. */
void srv_send_final_json(srv_call *c, struct evhttp_request *req);
/* POST /v1/embeddings' body: one unit-length vector per input (each sub's vec), cut to
 * `dimensions` and scaled back to unit length when asked, as floats or base64. */
json_t *srv_embeddings_json(srv_call *c);

/* server/stream.c: delivery as it happens */
/* The engine's event callback (engine thread): copies ev to s's queue and wakes the loop. */
void srv_on_engine_event(void *ctx, const engine_event *ev);
/* 200 text/event-stream; chat: each choice's role chunk; echo: the prompts. */
void srv_stream_start(srv_call *c);
/* One streamed chunk for choice idx: text (may be empty), logprobs (or NULL), finish. */
void srv_stream_choice(srv_call *c, int idx, const char *text, size_t len, json_t *lp, int finish,
                       bool role);

/* server/toolshape.c: tool calls in answers (the parsing is server/tools.c) */
/* The calls of choice idx's text t[0..len), finished with finish (engine_finish), as
 * OpenAI's tool_calls list, or NULL when the request has no tools, the text holds no call,
 * or finish is neither stop nor length; *content_len as srv_tools_parse. */
json_t *srv_tool_calls_json(const srv_call *c, int idx, const char *t, size_t len, int finish,
                            size_t *content_len);
/* Streaming with tools: choice idx's new text ev_text (already appended to its text). */
void srv_stream_tool_text(srv_call *c, int idx);
/* Streaming with tools: choice idx finished (finish: engine_finish, not an error). */
void srv_stream_tool_end(srv_call *c, int idx, int finish);

/* server/accesslog.c */
void srv_log_call(const srv_call *c, double now);
void srv_log_refused(const srv_call *c, const net_error *e);

/* server/metrics.c */
void srv_metrics_init(srv_metrics *m);
void srv_metrics_handle(srv *s, struct evhttp_request *req);

/* Submits a call (parsed, tokenized, holding its adapter's reference if any) to the engine;
 * answers and frees it when that fails or its client is gone. */
void srv_gen_submit(srv *s, srv_call *c);
/* Answers a call that never ran with e and frees it. */
void srv_gen_refuse(srv *s, srv_call *c, const net_error *e);

/* server/lora.c */
/* The adapters of --lora, each checked against the model (a bad one fails the start); the
 * first --max-loras stay resident. On the model loader thread, before the server is ready. */
int srv_lora_startup(srv *s, kl_err *err);
bool srv_lora_name_ok(const char *name);
/* The adapter a request names, or NULL. */
srv_lora *srv_lora_find(srv *s, const char *name);
/* True when l is resident: c holds a reference and may be submitted. Else c waits on l's
 * pending list (and a load starts when a slot can be made): srv_gen_submit comes later. */
bool srv_lora_acquire(srv *s, srv_lora *l, srv_call *c);
/* c's call ended: its reference dropped (an unloaded adapter freed with its last one). */
void srv_lora_release(srv *s, srv_call *c);
/* c leaves its adapter's pending list (freed before it ran). */
void srv_lora_forget_pending(srv *s, srv_call *c);
/* Starts the loads that waiting calls need, as far as slots can be made. */
void srv_lora_pump(srv *s);
/* POST /v1/load_lora_adapter (load) or /v1/unload_lora_adapter. */
void srv_lora_handle(srv *s, struct evhttp_request *req, bool load);
/* Appends the adapters to /v1/models' data. */
void srv_lora_models(srv *s, json_t *data);
/* /metrics: vllm:lora_requests_info (value: the time now, as vLLM's), the resident adapters
 * and the loads so far; nothing when the server has no adapters. */
void srv_lora_metrics(srv *s, struct evbuffer *b, const char *mname);
/* Stops the adapter thread and frees every adapter (after the engine is closed). */
void srv_lora_close(srv *s);

/* server/load.c: runs on the loader thread; fills s->f ... s->eng or s->load_err. */
void *srv_load_main(void *arg);
#endif
