/* cli/main.c: `kiln <subcommand> …` dispatch. Argument parsing for each subcommand lives in
 * its own cli/cmd_*.c; this file only picks one. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/version.h"
#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (kiln serve [MODEL.gguf] [options])"},
    {"gateway", cmd_gateway, "route OpenAI API traffic across replicas (-c CONFIG.json)"},
    {"bench", cmd_bench, "load-test an OpenAI-compatible endpoint (--url URL [--sweep])"},
    {"run", cmd_run, "generate a continuation (-m FILE -p PROMPT [options])"},
    {"perplexity", cmd_perplexity, "log-probabilities of a text (-m FILE -f TEXT [options])"},
    {"model", cmd_model, "model files: inspect | make | quantize | convert-llama2c | bench"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (-m FILE [options])"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text (-m FILE [--special])"},
    {"pull", cmd_pull, "download a GGUF model from a Hugging Face hub (ORG/REPO[:TAG] | hf://...)"},
};

static int usage(FILE *out)
{
    fprintf(out, "usage: kiln <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\n'kiln <command> --help' (or 'kiln help <command>') describes a command and its\n"
            "options; 'kiln --version' prints the version.\n");
    return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    /* A peer that goes away must cost one connection, never the process: serve, gateway and
     * bench all write to sockets (libevent writes with writev, which has no MSG_NOSIGNAL), so
     * a write to a reset connection must fail with EPIPE instead of raising SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    static char help[] = "--help";
    char *help_argv[8];
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "help") && argc > 2) { /* `kiln help model make` = `kiln model make -h` */
        int n = 1;
        help_argv[0] = argv[0];
        for (int i = 2; i < argc && n < 6; i++)
            help_argv[n++] = argv[i];
        help_argv[n++] = help;
        argc = n;
        argv = help_argv; /* argv[1] is the command again */
    } else if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
        return usage(stdout);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kiln " KILN_VERSION "\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
