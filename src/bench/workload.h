/* bench/workload.h: the requests of a benchmark, item by item. Item i is built from its own
 * random stream (seed, i), so the same seed gives the same prompts in any order, and --vs
 * sends both endpoints identical bodies. */
#ifndef KILN_BENCH_WORKLOAD_H
#define KILN_BENCH_WORKLOAD_H
#include <stddef.h>

#include "bench/bench.h"

typedef struct kb_workload kb_workload;

typedef struct kb_item {
    char *body; /* JSON request body, NUL-terminated (caller frees) */
    size_t len;
    int in_expected, out_expected;
    int model;
} kb_item;

/* Prepares the workload of c (loads and checks --dataset). Returns 0, or KL_EBADFILE /
 * KL_EIO / KL_ENOMEM with "<path>: <what>"; *w is NULL on failure. */
int kb_workload_open(kb_workload **w, const kb_config *c, kl_err *err);
void kb_workload_close(kb_workload *w);
/* Builds item i (0-based). `model` names the model for each index of c->models (resolved
 * names). Returns 0 or KL_ENOMEM (out untouched). */
int kb_workload_item(const kb_workload *w, int i, char (*model)[128], kb_item *out);
/* The synthetic prompt of n words from r into a new string (caller frees); NULL on OOM. */
char *kb_words(kl_rng *r, int n);
/* The words synthetic prompts are made of (n of them, static). */
const char *const *kb_word_list(int *n);
#endif
