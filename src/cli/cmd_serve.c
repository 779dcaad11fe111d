/* cli/cmd_serve.c: `kiln serve [MODEL.gguf] [options]`: the OpenAI-compatible
 * server (server/server.h). Parses options only; everything else is in src/server. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/secret.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "server/server.h"

enum {
    O_HOST = CLI_LONG,
    O_PORT,
    O_KV_MEM,
    O_BLOCK_SIZE,
    O_KV_TYPE,
    O_MAX_SEQS,
    O_MAX_BATCH,
    O_MAX_QUEUE,
    O_CTX,
    O_API_KEY,
    O_API_KEY_FILE,
    O_DRAIN,
    O_NAME,
    O_TEMPLATE,
    O_MAX_BODY,
    O_TIMEOUT,
    O_MAX_CONNS,
    O_ORIGINS,
    O_MAX_UNSENT,
    O_METRICS_PORT,
    O_LOG_FORMAT,
    O_POOLING,
    O_SPEC,
    O_DRAFT,
    O_GRAMMAR_CACHE,
    O_LORA,
    O_MAX_LORAS,
    O_MAX_LORA_RANK,
    O_LORA_RUNTIME,
    O_LORA_DIR,
};

#define MAX_LORA_ARGS 256

static const cli_opt opts[] = {
    {'m', "model", "MODEL",
     "the GGUF model to serve, or give it as the only argument: a file, ORG/REPO[:TAG] or "
     "hf://ORG/REPO/FILE.gguf (downloaded once into the Hugging Face cache)"},
    {O_HOST, "host", "HOST", "address to listen on (default 127.0.0.1)"},
    {O_PORT, "port", "N", "TCP port; 0 picks a free one (default 8080)"},
    {'t', "threads", "N", "compute threads (default: one per core)"},
    {O_CTX, "ctx", "N", "context length of a sequence (default: the model's)"},
    {O_KV_MEM, "kv-mem", "MiB",
     "KV cache memory (default: every sequence at full context, at most 1 GiB and a quarter of "
     "the free memory)"},
    {O_BLOCK_SIZE, "block-size", "N", "tokens per KV cache block (default 16)"},
    {O_KV_TYPE, "kv-type", "TYPE", "KV cache element type: f16, f32 or q8_0 (default f16)"},
    {O_MAX_SEQS, "max-seqs", "N", "sequences decoding together at most (default 64)"},
    {O_MAX_BATCH, "max-batch-tokens", "N", "tokens per engine step at most (default 512)"},
    {O_MAX_QUEUE, "max-queue", "N",
     "requests waiting at most; past it a 429 with Retry-After (default 1024)"},
    {O_API_KEY, "api-key", "KEY",
     "require 'Authorization: Bearer KEY' on the API (default: no authentication; /health and "
     "/metrics stay open)"},
    {O_API_KEY_FILE, "api-key-file", "FILE", "the same, the key read from the first line of FILE"},
    {O_NAME, "served-model-name", "NAME", "the model's name in the API (default: the file name)"},
    {O_TEMPLATE, "chat-template", "NAME|FILE",
     "chat template: a built-in name or a Jinja file (default: the model's own, else chatml)"},
    {O_DRAIN, "drain-timeout", "S",
     "after SIGTERM, seconds the requests in flight get to finish before they are aborted "
     "(default 30)"},
    {O_MAX_BODY, "max-body", "BYTES", "largest request body (default 4194304, 4 MiB)"},
    {O_GRAMMAR_CACHE, "grammar-cache", "MIB",
     "compiled schemas and grammars kept (token tables included), least recently used dropped "
     "past it (default 256)"},
    {O_TIMEOUT, "timeout", "S",
     "seconds a connection has to send each whole request; streams are exempt (default 60)"},
    {O_MAX_CONNS, "max-conns", "N",
     "open client connections at most; past it accepting pauses (default 4096; lowered to what "
     "the open-file limit leaves)"},
    {O_MAX_UNSENT, "max-unsent", "BYTES",
     "a client that leaves more than this unread (it stopped reading its stream) is cut and "
     "its request aborted (default 8388608, 8 MiB)"},
    {O_METRICS_PORT, "metrics-port", "N",
     "serve /metrics only on this port, a listener of its own on the same host (default: "
     "/metrics on the main port)"},
    {O_LOG_FORMAT, "log-format", "text|json",
     "text lines (logfmt values) or one JSON object a line (default text)"},
    {O_POOLING, "pooling", "mean|cls|last",
     "how /v1/embeddings pools a prompt's tokens (default: the model's pooling_type, else mean)"},
    {O_SPEC, "spec", "KIND[:k=N,...]",
     "speculative decoding: ngram (prompt lookup: drafts continue an earlier match of the last "
     "n..min tokens; n=MAX (4), min=MIN (2)), k=N draft tokens at most (8), fixed: always k "
     "(default: adapts to acceptance and load); layerskip (the model's first layers=N (half) "
     "and its output head draft); draft (--draft-model drafts); off (default)"},
    {O_DRAFT, "draft-model", "FILE",
     "the draft model of --spec draft (same vocabulary as the model's, checked at load; "
     "--spec draft is implied)"},
    {O_LORA, "lora", "NAME=PATH",
     "serve the LoRA adapter at PATH (GGUF, as llama.cpp writes them) on the model as the model "
     "NAME; repeat for more"},
    {O_MAX_LORAS, "max-loras", "N",
     "adapters resident at once; others are loaded when a request needs them, in place of the "
     "least recently used one no request runs on (default: as many as --lora gives)"},
    {O_MAX_LORA_RANK, "max-lora-rank", "R", "largest adapter rank accepted (default 64)"},
    {O_LORA_RUNTIME, "enable-lora-runtime-updates", NULL,
     "turn on POST /v1/load_lora_adapter {lora_name, lora_path} and /v1/unload_lora_adapter "
     "{lora_name} (behind --api-key; paths only under --lora-dir) (default: off)"},
    {O_LORA_DIR, "lora-dir", "DIR",
     "the directory runtime loads may read adapters from (symlinks leading out of it refused)"},
    {O_ORIGINS, "allowed-origins", "LIST",
     "CORS: web pages from these origins may call the API from a browser, e.g. "
     "https://app.example.com,http://localhost:5173, or * for any (never with credentials) "
     "(default: none)"},
    {0},
};

static const cli_cmd cmd = {
    "serve", "[MODEL] [options]",
    "An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/embeddings,\n"
    "/v1/models, "
    "/tokenize, /detokenize, /health, /metrics) over one GGUF model. Without a model it serves a\n"
    "small random-weight model it makes on first start and caches (its text is noise).\n",
    opts,
    "SIGTERM drains (stops accepting, lets requests finish) and exits 0; a second SIGINT exits at\n"
    "once. See README 'kiln serve'.\n"};

int cmd_serve(int argc, char **argv)
{
    srv_opts o;
    srv_opts_defaults(&o);
    char *key_buf = NULL;
    net_cors *cors = NULL;
    const char *loras[MAX_LORA_ARGS];
    kl_err err = {0};
    int v, rc = 0;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; !rc && (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            rc = a.status ? a.status : -1; /* -1: help printed, exit 0 */
            break;
        case CLI_ARG: /* `kiln serve MODEL`, as `vllm serve MODEL` */
            if (o.model_path)
                rc = cli_usage_error(&cmd, "unexpected argument '%s' (the model is %s)", val,
                                     o.model_path);
            else
                o.model_path = val;
            break;
        case 'm':
            if (o.model_path)
                rc = cli_usage_error(&cmd, "two models: '%s' and '%s'", o.model_path, val);
            else
                o.model_path = val;
            break;
        case O_HOST:
            o.host = val;
            break;
        case O_PORT:
            if (!cli_int("--port", val, 0, 65535, &o.port)) rc = 1;
            break;
        case 't':
            if (!cli_int("-t", val, 1, 256, &o.threads)) rc = 1;
            break;
        case O_KV_MEM:
            if (!cli_int("--kv-mem", val, 1, 1 << 24, &v)) rc = 1;
            o.kv_mem_bytes = (size_t)v << 20;
            break;
        case O_BLOCK_SIZE:
            if (!cli_int("--block-size", val, 1, 1024, &o.block_size)) rc = 1;
            break;
        case O_KV_TYPE:
            if (!strcmp(val, "f16"))
                o.kv_type = KL_F16;
            else if (!strcmp(val, "f32"))
                o.kv_type = KL_F32;
            else if (!strcmp(val, "q8_0"))
                o.kv_type = KL_Q8_0;
            else {
                fprintf(stderr, "kiln: --kv-type: expected f16, f32 or q8_0, got '%s'\n", val);
                rc = 1;
            }
            break;
        case O_MAX_SEQS:
            if (!cli_int("--max-seqs", val, 1, 4096, &o.max_seqs)) rc = 1;
            break;
        case O_MAX_BATCH:
            if (!cli_int("--max-batch-tokens", val, 1, 1 << 20, &o.max_batch_tokens)) rc = 1;
            break;
        case O_MAX_QUEUE:
            if (!cli_int("--max-queue", val, 1, 1 << 20, &o.max_queue)) rc = 1;
            break;
        case O_CTX:
            if (!cli_int("--ctx", val, 2, 1 << 20, &o.ctx)) rc = 1;
            break;
        case O_API_KEY:
            o.api_key = val;
            break;
        case O_API_KEY_FILE:
            kl_secret_free(key_buf);
            if (kl_secret_from_file(val, &key_buf, &err)) {
                fprintf(stderr, "kiln: %s\n", err.msg);
                rc = 1;
            }
            o.api_key = key_buf;
            break;
        case O_DRAIN:
            if (!cli_int("--drain-timeout", val, 0, 86400, &o.drain_timeout_s)) rc = 1;
            break;
        case O_NAME:
            o.served_name = val;
            break;
        case O_TEMPLATE:
            o.chat_template = val;
            break;
        case O_MAX_BODY:
            if (!cli_int("--max-body", val, 1024, 1 << 30, &v)) rc = 1;
            o.max_body = (size_t)v;
            break;
        case O_GRAMMAR_CACHE:
            if (!cli_int("--grammar-cache", val, 1, 1 << 20, &v)) rc = 1;
            o.grammar_cache = (size_t)v << 20;
            break;
        case O_MAX_CONNS:
            if (!cli_int("--max-conns", val, 1, 1 << 20, &o.max_conns)) rc = 1;
            break;
        case O_TIMEOUT:
            if (!cli_int("--timeout", val, 1, 86400, &o.timeout_s)) rc = 1;
            break;
        case O_MAX_UNSENT:
            if (!cli_int("--max-unsent", val, 4096, 1 << 30, &v)) rc = 1;
            o.max_unsent = (size_t)v;
            break;
        case O_METRICS_PORT:
            if (!cli_int("--metrics-port", val, 0, 65535, &o.metrics_port)) rc = 1;
            break;
        case O_LOG_FORMAT:
            if ((v = kl_log_format_parse(val)) < 0) {
                fprintf(stderr, "kiln: --log-format: expected text or json, got '%s'\n", val);
                rc = 1;
            } else {
                kl_log_set_format(v);
            }
            break;
        case O_POOLING:
            if (!strcmp(val, "mean"))
                o.pooling = ENGINE_POOL_MEAN;
            else if (!strcmp(val, "cls"))
                o.pooling = ENGINE_POOL_CLS;
            else if (!strcmp(val, "last"))
                o.pooling = ENGINE_POOL_LAST;
            else {
                fprintf(stderr, "kiln: --pooling: expected mean, cls or last, got '%s'\n", val);
                rc = 1;
            }
            break;
        case O_SPEC:
            if (engine_spec_parse(&o.spec, val, &err)) {
                fprintf(stderr, "kiln: --spec: %s\n", err.msg);
                rc = 1;
            }
            break;
        case O_DRAFT:
            o.draft_model = val;
            break;
        case O_LORA:
            if (o.n_loras == MAX_LORA_ARGS)
                rc = cli_usage_error(&cmd, "--lora: at most %d adapters", MAX_LORA_ARGS);
            else if (!strchr(val, '=') || *val == '=')
                rc = cli_usage_error(&cmd, "--lora %s: expected NAME=PATH", val);
            else
                loras[o.n_loras++] = val;
            break;
        case O_MAX_LORAS:
            if (!cli_int("--max-loras", val, 1, 4096, &o.max_loras)) rc = 1;
            break;
        case O_MAX_LORA_RANK:
            if (!cli_int("--max-lora-rank", val, 1, 4096, &o.max_lora_rank)) rc = 1;
            break;
        case O_LORA_RUNTIME:
            o.lora_runtime = true;
            break;
        case O_LORA_DIR:
            o.lora_dir = val;
            break;
        case O_ORIGINS:
            net_cors_free(cors);
            if (net_cors_parse(&cors, val, &err)) {
                fprintf(stderr, "kiln: --allowed-origins: %s\n", err.msg);
                rc = 1;
            }
            break;
        }
    }
    if (!rc && o.api_key && !*o.api_key) {
        fprintf(stderr, "kiln: --api-key: must not be empty\n");
        rc = 1;
    }
    if (!rc && o.draft_model && o.spec.kind == ENGINE_SPEC_OFF) o.spec.kind = ENGINE_SPEC_DRAFT;
    if (!rc && o.draft_model && o.spec.kind != ENGINE_SPEC_DRAFT) {
        fprintf(stderr, "kiln: --draft-model: the draft model is for --spec draft\n");
        rc = 1;
    }
    char model_path[PATH_MAX];
    if (!rc && o.model_path) { /* a hub reference is downloaded (or found in the cache) first */
        if (cli_model_path(o.model_path, model_path, sizeof model_path))
            rc = 1;
        else
            o.model_path = model_path;
    }
    if (!rc && o.lora_runtime && !o.lora_dir)
        rc = cli_usage_error(&cmd, "--enable-lora-runtime-updates needs --lora-dir DIR");
    if (!rc) {
        o.cors = cors;
        o.loras = loras;
        rc = srv_run(&o, &err);
        if (rc == 1) cli_fail(&err);
    }
    kl_secret_free(key_buf);
    net_cors_free(cors);
    return rc < 0 ? 0 : rc; /* -1: --help was printed */
}
