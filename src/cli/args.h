/* cli/args.h: a subcommand's options as one table, read by one parser and printed by
 * `--help`, so an option cannot exist without its line of help (meaning and default).
 *
 *   static const cli_opt opts[] = {{'m', "model", "FILE", "the GGUF model"}, ..., {0}};
 *   static const cli_cmd cmd = {"run", "-m FILE -p PROMPT [options]", "Generates ...", opts};
 *   cli_args a;
 *   cli_args_init(&a, &cmd, argc, argv);
 *   for (int k; (k = cli_args_next(&a, &val)) != CLI_END;)
 *       switch (k) { case 'm': ...; case CLI_ARG: ...; case CLI_EXIT: return a.status; }
 *
 * Accepted forms: -m VALUE, -mVALUE, --model VALUE, --model=VALUE, flags alone; "--" ends the
 * options; -h and --help print the help to stdout (status 0); an unknown option or a missing
 * value prints "kiln CMD: <what>" and a pointer to the help on stderr (status 2). */
#ifndef KILN_CLI_ARGS_H
#define KILN_CLI_ARGS_H
#include <stdbool.h>
#include <stdio.h>

#define CLI_END  (-1) /* no argument left */
#define CLI_ARG  (-2) /* a positional argument, in *val */
#define CLI_EXIT (-3) /* help or a usage error was printed: exit with cli_args.status */

/* Keys below 256 are also the short option (-m); long-only options use keys from CLI_LONG. */
#define CLI_LONG 256

typedef struct cli_opt {
    int key;          /* what cli_args_next returns for it; < 256: also "-<key>" */
    const char *name; /* long name without "--"; NULL: short only */
    const char *arg;  /* the value's name in the help ("N", "FILE"); NULL: a flag; "[LIST]": an
                         optional value, taken when the next argument does not start with '-' */
    const char *help; /* what it does, and its default */
} cli_opt;

typedef struct cli_cmd {
    const char *name;    /* "serve", "model make": printed as "kiln <name>" */
    const char *usage;   /* what follows "usage: kiln <name> " */
    const char *about;   /* a paragraph on what the command does (or NULL) */
    const cli_opt *opts; /* ends with a {0} entry; NULL: no options */
    const char *notes;   /* printed after the options (or NULL) */
} cli_cmd;

typedef struct cli_args {
    const cli_cmd *cmd;
    int argc;
    char **argv;
    int i;         /* the next argv index */
    bool only_pos; /* after "--" */
    int status;    /* with CLI_EXIT: 0 after --help, 2 after a usage error */
    char opt[64];  /* the last option as written, without "=VALUE" ("--port", "-m") */
} cli_args;

/* argv[0] is the subcommand itself (as cli.h's entry points receive it). */
void cli_args_init(cli_args *a, const cli_cmd *cmd, int argc, char **argv);
/* The next option's key (its value in *val, NULL for a flag), CLI_ARG (*val the argument),
 * CLI_END, or CLI_EXIT after printing the help or a usage error. */
int cli_args_next(cli_args *a, const char **val);
/* Prints the help of c: usage, about and notes as written (each line ending in \n), the
 * options one per entry, their help folded at 100 columns. */
void cli_help_print(const cli_cmd *c, FILE *f);
/* Prints "kiln <cmd>: <what>" and "Try 'kiln <cmd> --help'." on stderr; returns 2. */
int cli_usage_error(const cli_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
