/* cli/cli.h: one entry point per subcommand (cli/cmd_*.c). Each takes argv after the
 * subcommand name (argv[0] is the subcommand) and returns the process exit code. Errors are
 * printed as "kiln: <what>" on stderr. */
#ifndef KILN_CLI_CLI_H
#define KILN_CLI_CLI_H
#include "base/err.h"

int cmd_model(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_model_bench(int argc, char **argv);     /* `kiln model bench` */
int cmd_engine_bench(int argc, char **argv);    /* `kiln model bench-engine` */
int cmd_model_make_lora(int argc, char **argv); /* `kiln model make-lora` */
int cmd_pull(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);

/* Prints "kiln: <err->msg>" to stderr and returns 1. */
int cli_fail(const kl_err *err);
#endif
