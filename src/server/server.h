/* server/server.h: `kiln serve`, an OpenAI-compatible HTTP server over one engine
 * (DESIGN.md "The request path"). HTTP listens first; the model loads on a thread while
 * /health answers 503; then /v1/completions, /v1/chat/completions, /v1/models, /tokenize,
 * /detokenize, /metrics and /health serve. SIGTERM drains; a second SIGINT exits at once. */
#ifndef KILN_SERVER_SERVER_H
#define KILN_SERVER_SERVER_H
#include <stdbool.h>
#include <stddef.h>

#include "base/dtype.h"
#include "base/err.h"
#include "engine/engine.h"
#include "net/cors.h"

typedef struct srv_opts {
    const char *model_path; /* NULL: a small synthetic model, made once and cached */
    const char *host;       /* default 127.0.0.1 */
    int port;               /* default 8080; 0: any free port (printed at start) */
    int threads;            /* compute workers (0: cores) */
    size_t kv_mem_bytes;    /* 0: engine default */
    int block_size;         /* KV block tokens (default 16) */
    kl_dtype kv_type;       /* default F16 */
    int max_seqs, max_batch_tokens, max_queue, ctx; /* 0: engine/model defaults */
    const char *api_key;                            /* NULL: no authentication */
    int drain_timeout_s;                            /* default 30 */
    const char *served_name;                        /* NULL: the model file's base name */
    const char *chat_template; /* NULL: the model's own, else a built-in name or a file */
    size_t max_body;           /* request body bytes at most (default 4 MiB) */
    size_t grammar_cache;      /* bytes of compiled grammars kept (default 256 MiB) */
    int timeout_s;             /* idle / slow-client timeout (default 60) */
    int max_conns;             /* open client connections at most (default 4096): past it,
                                  accepting pauses until some close */
    const net_cors *cors;      /* --allowed-origins: CORS for browser pages (NULL: off) */
    size_t max_unsent;         /* a client leaving more unread is cut, its request aborted
                                  (default 8 MiB) */
    int pooling;               /* /v1/embeddings: ENGINE_POOL_* (0: the model's, else mean) */
    int metrics_port;          /* -1 (default): /metrics on the main port; else only on this
                                  one, a separate listener on the same host (0: any port) */
    engine_spec spec;          /* --spec: speculative decoding (default off) */
    const char *draft_model;   /* --draft-model: the draft of --spec draft */
    const char *const *loras;  /* --lora NAME=PATH (n_loras): adapters served as models */
    int n_loras;
    int max_loras;        /* adapters resident at once (0: as many as --lora gives, at least 1) */
    int max_lora_rank;    /* largest rank an adapter may have (0: the model's default, 64) */
    bool lora_runtime;    /* --enable-lora-runtime-updates: POST /v1/load_lora_adapter and
                             /v1/unload_lora_adapter (needs lora_dir) */
    const char *lora_dir; /* --lora-dir: the only directory runtime loads may read */
} srv_opts;

void srv_opts_defaults(srv_opts *o);

/* Runs the server until it is drained (SIGTERM) or interrupted twice. Returns the process
 * exit code: 0 after a drain, 1 when it could not listen or the model failed to load (err
 * says why), 130 after a second SIGINT. */
int srv_run(const srv_opts *o, kl_err *err);
#endif
