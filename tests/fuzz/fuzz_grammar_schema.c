/* tests/fuzz/fuzz_grammar_schema.c: random JSON Schemas through the schema compiler (the
 * input is the schema text) under a small budget; what compiles is walked with a small
 * vocabulary (fuzz_grammar_walk.h). Checks: no crash, no leak, no hang, an error always
 * has a message. Seeds: tests/fuzz/corpus/grammar_schema/ (one schema using most keywords). */
#include <stdint.h>
#include <stdio.h>

#include "fuzz/fuzz_grammar_walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16 * 1024) return 0;
    gram_limits lim;
    fuzz_grammar_limits(&lim);
    kl_err err = {0};
    gram *g = NULL;
    if (gram_compile_schema(&g, (const char *)data, size, &lim, &err)) {
        if (!err.msg[0] || g) abort();
        return 0;
    }
    fuzz_grammar_walk(g, data, size);
    gram_unref(g);
    return 0;
}
