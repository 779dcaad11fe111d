/* tests/fuzz/fuzz_grammar_gbnf.c: random GBNF grammars (and, when the first byte is odd,
 * regular expressions: the rest of the input) through their compilers under a small
 * budget; what compiles is walked with a small vocabulary (fuzz_grammar_walk.h). Checks: no
 * crash, no leak, no hang, an error always has a message. Seed corpus idea:
 * the .gbnf files of llama.cpp's grammars folder (read for the format, not copied). */
#include <stdint.h>
#include <stdio.h>

#include "fuzz/fuzz_grammar_walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16 * 1024) return 0;
    gram_limits lim;
    fuzz_grammar_limits(&lim);
    kl_err err = {0};
    gram *g = NULL;
    const char *src = (const char *)data + 1;
    int rc = (data[0] & 1) ? gram_compile_regex(&g, src, size - 1, &lim, &err)
                           : gram_compile_gbnf(&g, src, size - 1, &lim, &err);
    if (rc) {
        if (!err.msg[0] || g) abort();
        return 0;
    }
    fuzz_grammar_walk(g, data, size);
    gram_unref(g);
    return 0;
}
