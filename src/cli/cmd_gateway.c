/* cli/cmd_gateway.c: `kiln gateway -c CONFIG.json [--host H] [--port N]`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "gateway/gateway.h"

enum { O_HOST = CLI_LONG, O_PORT, O_ORIGINS, O_MAX_CONNS, O_METRICS_PORT, O_LOG_FORMAT };

static const cli_opt opts[] = {
    {'c', "config", "FILE",
     "the gateway's JSON config (required; or give it as the only argument)"},
    {O_HOST, "host", "HOST",
     "address to listen on (default: the config's listen.host, else 127.0.0.1)"},
    {O_PORT, "port", "N",
     "TCP port; 0 picks a free one (default: the config's listen.port, else 9000)"},
    {O_ORIGINS, "allowed-origins", "LIST",
     "CORS origins, e.g. https://app.example.com,http://localhost:5173, or * (default: the "
     "config's listen.allowed_origins, else none)"},
    {O_MAX_CONNS, "max-conns", "N",
     "open client connections at most; past it accepting pauses (default: the config's "
     "listen.max_conns, else what the open-file limit allows, two descriptors a client)"},
    {O_METRICS_PORT, "metrics-port", "N",
     "serve /metrics only on this port, a listener of its own on the same host (default: the "
     "config's listen.metrics_port, else /metrics on the main port)"},
    {O_LOG_FORMAT, "log-format", "text|json",
     "text lines (logfmt values) or one JSON object a line (default text)"},
    {0},
};

static const cli_cmd cmd = {
    "gateway", "-c CONFIG.json [options]",
    "Routes OpenAI API traffic (/v1/completions, /v1/chat/completions) across replicas: kiln\n"
    "serve processes, or anything that speaks the OpenAI API with vLLM's /metrics names.\n",
    opts,
    "SIGHUP reloads the config (a file that does not validate is refused, the old one kept);\n"
    "SIGTERM drains and exits. The config's fields: README 'kiln gateway', "
    "src/gateway/config.h.\n"};

int cmd_gateway(int argc, char **argv)
{
    const char *path = NULL, *host = NULL;
    int port = -1, rc = 0, max_conns = 0, metrics_port = -1;
    net_cors *cors = NULL;
    kl_err err = {0};
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; !rc && (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            rc = a.status ? a.status : -1; /* -1: help printed, exit 0 */
            break;
        case CLI_ARG:
        case 'c':
            if (path)
                rc =
                    cli_usage_error(&cmd, "unexpected argument '%s' (the config is %s)", val, path);
            path = val;
            break;
        case O_HOST:
            host = val;
            break;
        case O_PORT:
            if (!cli_int("--port", val, 0, 65535, &port)) rc = 1;
            break;
        case O_MAX_CONNS:
            if (!cli_int("--max-conns", val, 1, 1 << 20, &max_conns)) rc = 1;
            break;
        case O_METRICS_PORT:
            if (!cli_int("--metrics-port", val, 0, 65535, &metrics_port)) rc = 1;
            break;
        case O_LOG_FORMAT: {
            int f = kl_log_format_parse(val);
            if (f < 0) {
                fprintf(stderr, "kiln: --log-format: expected text or json, got '%s'\n", val);
                rc = 1;
            } else {
                kl_log_set_format(f);
            }
            break;
        }
        case O_ORIGINS:
            net_cors_free(cors);
            if (net_cors_parse(&cors, val, &err)) {
                fprintf(stderr, "kiln: --allowed-origins: %s\n", err.msg);
                rc = 1;
            }
            break;
        }
    }
    if (!rc && !path) rc = cli_usage_error(&cmd, "-c CONFIG.json is required");
    gw_config *cfg = NULL;
    if (!rc && gw_config_load(&cfg, path, &err)) rc = cli_fail(&err);
    if (rc) {
        net_cors_free(cors);
        return rc < 0 ? 0 : rc;
    }
    if (port >= 0) cfg->listen_port = port;
    if (max_conns > 0) cfg->max_conns = max_conns;
    if (metrics_port >= 0) cfg->metrics_port = metrics_port;
    if (host) {
        char *h = strdup(host);
        if (h) {
            free(cfg->listen_host);
            cfg->listen_host = h;
        }
    }
    gw *g;
    if (gw_create(&g, cfg, path, &err)) {
        net_cors_free(cors);
        return cli_fail(&err);
    }
    if (cors) gw_set_cors(g, cors); /* over the config's, reloads included */
    rc = gw_run(g);
    gw_destroy(g);
    return rc;
}
