/* cli/loaded.h: a model file opened for a command: the GGUF mapping, its tokenizer and the
 * bound model, loaded and freed together. */
#ifndef KILN_CLI_LOADED_H
#define KILN_CLI_LOADED_H
#include "model/model.h"
#include "tok/tok.h"

typedef struct cli_loaded {
    gguf_file *f;
    tok *tk; /* NULL when with_tok was false */
    model *m;
} cli_loaded;

/* Opens path and binds the model with opts (and its tokenizer when with_tok). Returns 0, or
 * prints "kiln: <path>: <what>" and returns 1 with nothing left open. */
int cli_load(cli_loaded *l, const char *path, const model_opts *opts, bool with_tok);
void cli_unload(cli_loaded *l);
/* The local path of a -m argument: arg itself, or for a hub reference (hf://..., ORG/REPO[:TAG]
 * that is not a local file) the cached file, downloaded first when needed (cli/cmd_pull.c).
 * Returns 0, or prints "kiln: <what>" and returns 1. */
int cli_model_path(const char *arg, char *out, size_t cap);
/* KILN_NO_REPACK=1: keep the weights in the file's layout (model_opts.no_repack). */
bool cli_no_repack(void);
/* Parses a positive int option value; prints an error and returns false when it is not. */
bool cli_int(const char *opt, const char *val, int lo, int hi, int *out);
bool cli_float(const char *opt, const char *val, float *out);
#endif
