/* cli/main.c: `kiln <subcommand> …` dispatch. Argument parsing for each subcommand lives in
 * its own cli/cmd_*.c; this file only picks one. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"model", cmd_model, "inspect | make | quantize | convert-llama2c | bench: model files"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (-m FILE [--special] [--pieces])"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text (-m FILE [--special])"},
    {"run", cmd_run, "generate a continuation (-m FILE -p PROMPT [-n N] [--temp T] ...)"},
    {"perplexity", cmd_perplexity, "log-probabilities of a text (-m FILE -f TEXT [--per-token])"},
    {"pull", cmd_pull, "download a GGUF model from a Hugging Face hub (ORG/REPO[:TAG] | hf://...)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server ([-m FILE] [--port 8080] ...)"},
    {"gateway", cmd_gateway, "route OpenAI API traffic across replicas (-c CONFIG.json)"},
    {"bench", cmd_bench, "load-test an OpenAI-compatible endpoint (--url URL [--sweep])"},
};

static int usage(FILE *out)
{
    fprintf(out, "usage: kiln <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\n'kiln <command> --help' describes a command.\n");
    return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    /* A peer that goes away must cost one connection, never the process: serve, gateway and
     * bench all write to sockets (libevent writes with writev, which has no MSG_NOSIGNAL), so
     * a write to a reset connection must fail with EPIPE instead of raising SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
        return usage(stdout);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kiln 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
