/* cli/bench_spec.h: `kiln model bench --spec KIND`: generation with and without speculative
 * decoding through the engine (cli/bench_spec.c). */
#ifndef KILN_CLI_BENCH_SPEC_H
#define KILN_CLI_BENCH_SPEC_H
#include "base/err.h"
#include "engine/engine.h"

typedef struct bench_spec_opts {
    const char *path;     /* the model */
    const char *doc_file; /* the document the prompts hold (NULL: a built-in one) */
    const char *draft;    /* --spec draft: the draft model (NULL: the target itself) */
    engine_spec spec;
    const int *bs; /* batch sizes: streams decoding together */
    int nbs;
    int n;       /* tokens generated per stream */
    int threads; /* compute workers */
    int reps;    /* runs of each, alternated */
} bench_spec_opts;

/* Prints one line per batch size and setting, and their ratio. Returns 0 or a KL_E* code
 * with err set. */
int bench_spec(const bench_spec_opts *o, kl_err *err);
#endif
