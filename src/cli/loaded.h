/* cli/loaded.h: a model file opened for a command (through engine_open), and option value
 * parsing. */
#ifndef KILN_CLI_LOADED_H
#define KILN_CLI_LOADED_H
#include "engine/open.h"

/* Opens path (a file or a hub reference, see cli_model_path) with the command's model
 * options; the tokenizer and chat template too when with_tok, and an engine configured by
 * ec when ec is not NULL (its model and tok are filled in). Returns 0, or prints
 * "kiln: <path>: <what>" and returns 1 with *st zeroed. Close with engine_close. */
int cli_open(engine_stack *st, const char *path, const model_opts *mo, bool with_tok,
             const engine_config *ec);
struct model_lora;
/* Loads the LoRA adapter at path for st's model (engine_lora_open). Returns 0, or prints
 * "kiln: <path>: <what>" and returns 1. */
int cli_load_lora(const engine_stack *st, const char *path, float scale, struct model_lora **out);
/* The local path of a -m argument: arg itself, or for a hub reference (hf://..., ORG/REPO[:TAG]
 * that is not a local file) the cached file, downloaded first when needed (cli/cmd_pull.c).
 * Returns 0, or prints "kiln: <what>" and returns 1. */
int cli_model_path(const char *arg, char *out, size_t cap);
/* Parses a positive int option value; prints an error and returns false when it is not. */
bool cli_int(const char *opt, const char *val, int lo, int hi, int *out);
bool cli_float(const char *opt, const char *val, float *out);
/* --seed S (an unsigned integer) and --type TYPE (a dtype name); print the error and return
 * false when val is not one. */
bool cli_seed(const char *val, uint64_t *out);
bool cli_dtype(const char *val, kl_dtype *out);
#endif
