/* cli/cmd_gateway.c: `kiln gateway -c FILE [--port N]`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gateway/gateway.h"

static int usage(void)
{
    fprintf(stderr, "usage: kiln gateway -c CONFIG.json [--host H] [--port N]\n"
                    "  Routes OpenAI API traffic across replicas; see README 'kiln gateway'.\n"
                    "  SIGHUP reloads the config, SIGTERM drains and exits.\n");
    return 2;
}

int cmd_gateway(int argc, char **argv)
{
    const char *path = NULL, *host = NULL;
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            char *end;
            long p = strtol(argv[++i], &end, 10);
            if (*end || p < 0 || p > 65535) return usage();
            port = (int)p;
        } else
            return usage();
    }
    if (!path) return usage();
    kl_err err = {0};
    gw_config *cfg;
    if (gw_config_load(&cfg, path, &err)) return cli_fail(&err);
    if (port >= 0) cfg->listen_port = port;
    if (host) {
        char *h = strdup(host);
        if (h) {
            free(cfg->listen_host);
            cfg->listen_host = h;
        }
    }
    gw *g;
    if (gw_create(&g, cfg, path, &err)) return cli_fail(&err);
    int rc = gw_run(g);
    gw_destroy(g);
    return rc;
}
