/* bench/vocab.h: prompts of an exact number of tokens, built with the server's own tokenizer.
 *
 * Before a run, kiln bench asks the endpoint's POST /tokenize (kiln serve and vLLM have it)
 * which words of its list are one token after a space (single letters too, for small
 * vocabularies that split most words), checks on two sample prompts that n such words make
 * n tokens plus a constant (BOS, the chat template), and then writes a prompt of N tokens as
 * N minus that constant such words. A server without /tokenize (kiln gateway, llama-server),
 * or a tokenizer where the count does not add up, gets the word approximation (about one
 * token a word), and kiln bench says so. */
#ifndef KILN_BENCH_VOCAB_H
#define KILN_BENCH_VOCAB_H
#include <stdbool.h>

#include "bench/bench.h"

#define KB_VOCAB_MAX 160 /* candidate words and letters */
#define KB_VOCAB_MIN 8   /* fewer one-token words than this: approximate */

struct kb_vocab {
    bool exact;
    const char *units[KB_VOCAB_MAX]; /* one-token words (static strings) */
    int n_units;
    const char *lead; /* the first word of every prompt (one of units) */
    int overhead;     /* tokens the server adds to a prompt of n units starting with lead (BOS,
                         the chat template, a start that takes more than one token) */
    char note[768];   /* what was found, for the user and results.json (a URL: 511 at most) */
};

/* Probes the tokenizer of c->target[0] (for c's first model, else the one GET /v1/models
 * names) into v. Never fails a run: v->exact says whether lengths will be exact, v->note why
 * or why not. */
void kb_vocab_probe(kb_vocab *v, const kb_config *c);
/* Before a run or a sweep: probes into v and points c->vocab at it (synthetic prompts only;
 * a dataset is real text), and says on stderr whether input lengths are exact. */
void kb_vocab_setup(kb_config *c, kb_vocab *v);
#endif
