/* cli/cmd_serve.c: `kiln serve [-m FILE] [--host H] [--port P] ...`: the OpenAI-compatible
 * server (server/server.h). Parses options only; everything else is in src/server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/loaded.h"
#include "server/server.h"

static int usage(FILE *out)
{
    fprintf(out,
            "usage: kiln serve [-m FILE|ORG/REPO[:TAG]|hf://ORG/REPO/FILE.gguf] [--host 127.0.0.1] "
            "[--port 8080] [-t N]\n"
            "                  [--kv-mem MiB] [--block-size N] [--kv-type f16|f32|q8_0]\n"
            "                  [--max-seqs N] [--max-batch-tokens N] [--max-queue N] [--ctx N]\n"
            "                  [--api-key K | --api-key-file F] [--drain-timeout S]\n"
            "                  [--served-model-name NAME] [--chat-template NAME|FILE]\n"
            "                  [--max-body BYTES] [--timeout S] [--max-conns N]\n"
            "Without -m, serves a small synthetic model made on first start and cached.\n");
    return out == stdout ? 0 : 2;
}

/* The first line of path (the key), malloc'd; NULL after printing an error. */
static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[4096];
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    if (line) line[strcspn(line, "\r\n")] = 0;
    if (!line || !*line) {
        fprintf(stderr, "kiln: %s: no API key in the file\n", path);
        return NULL;
    }
    return strdup(line);
}

int cmd_serve(int argc, char **argv)
{
    srv_opts o;
    srv_opts_defaults(&o);
    char *key_buf = NULL;
    int v;
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"kv-mem", required_argument, NULL, 'k'},
                                         {"block-size", required_argument, NULL, 'b'},
                                         {"kv-type", required_argument, NULL, 'K'},
                                         {"max-seqs", required_argument, NULL, 's'},
                                         {"max-batch-tokens", required_argument, NULL, 'B'},
                                         {"max-queue", required_argument, NULL, 'q'},
                                         {"ctx", required_argument, NULL, 'c'},
                                         {"api-key", required_argument, NULL, 'a'},
                                         {"api-key-file", required_argument, NULL, 'A'},
                                         {"drain-timeout", required_argument, NULL, 'd'},
                                         {"served-model-name", required_argument, NULL, 'n'},
                                         {"chat-template", required_argument, NULL, 'T'},
                                         {"max-body", required_argument, NULL, 'M'},
                                         {"timeout", required_argument, NULL, 'o'},
                                         {"max-conns", required_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o.model_path = optarg;
            break;
        case 'H':
            o.host = optarg;
            break;
        case 'p':
            if (!cli_int("--port", optarg, 0, 65535, &o.port)) return 1;
            break;
        case 't':
            if (!cli_int("-t", optarg, 1, 256, &o.threads)) return 1;
            break;
        case 'k':
            if (!cli_int("--kv-mem", optarg, 1, 1 << 24, &v)) return 1;
            o.kv_mem_bytes = (size_t)v << 20;
            break;
        case 'b':
            if (!cli_int("--block-size", optarg, 1, 1024, &o.block_size)) return 1;
            break;
        case 'K':
            if (!strcmp(optarg, "f16"))
                o.kv_type = KL_F16;
            else if (!strcmp(optarg, "f32"))
                o.kv_type = KL_F32;
            else if (!strcmp(optarg, "q8_0"))
                o.kv_type = KL_Q8_0;
            else {
                fprintf(stderr, "kiln: --kv-type: expected f16, f32 or q8_0, got '%s'\n", optarg);
                return 1;
            }
            break;
        case 's':
            if (!cli_int("--max-seqs", optarg, 1, 4096, &o.max_seqs)) return 1;
            break;
        case 'B':
            if (!cli_int("--max-batch-tokens", optarg, 1, 1 << 20, &o.max_batch_tokens)) return 1;
            break;
        case 'q':
            if (!cli_int("--max-queue", optarg, 1, 1 << 20, &o.max_queue)) return 1;
            break;
        case 'c':
            if (!cli_int("--ctx", optarg, 2, 1 << 20, &o.ctx)) return 1;
            break;
        case 'a':
            o.api_key = optarg;
            break;
        case 'A':
            free(key_buf);
            if (!(key_buf = read_key_file(optarg))) return 1;
            o.api_key = key_buf;
            break;
        case 'd':
            if (!cli_int("--drain-timeout", optarg, 0, 86400, &o.drain_timeout_s)) return 1;
            break;
        case 'n':
            o.served_name = optarg;
            break;
        case 'T':
            o.chat_template = optarg;
            break;
        case 'M':
            if (!cli_int("--max-body", optarg, 1024, 1 << 30, &v)) return 1;
            o.max_body = (size_t)v;
            break;
        case 'C':
            if (!cli_int("--max-conns", optarg, 1, 1 << 20, &o.max_conns)) return 1;
            break;
        case 'o':
            if (!cli_int("--timeout", optarg, 1, 86400, &o.timeout_s)) return 1;
            break;
        case 'h':
            free(key_buf);
            return usage(stdout);
        default:
            free(key_buf);
            return usage(stderr);
        }
    }
    if (optind < argc) {
        free(key_buf);
        return usage(stderr);
    }
    if (o.api_key && !*o.api_key) {
        fprintf(stderr, "kiln: --api-key: must not be empty\n");
        return 1;
    }
    char model_path[PATH_MAX];
    if (o.model_path) { /* a hub reference is downloaded (or found in the cache) first */
        if (cli_model_path(o.model_path, model_path, sizeof model_path)) {
            free(key_buf);
            return 1;
        }
        o.model_path = model_path;
    }
    kl_err err = {0};
    int rc = srv_run(&o, &err);
    if (rc == 1) cli_fail(&err);
    free(key_buf);
    return rc;
}
