/* tests/t_grammar.h: grammars and vocabularies for tests (tests/unit/t_grammar.c). */
#ifndef KILN_TESTS_T_GRAMMAR_H
#define KILN_TESTS_T_GRAMMAR_H
#include "grammar/grammar.h"

struct tok;
/* The grammar of a JSON Schema; fails the test (printing the message) if it does not compile. */
gram *t_schema(const char *text);
/* The grammar of a GBNF source, likewise. */
gram *t_gbnf(const char *text);
/* The vocabulary of a ../shared file as the engine builds it (tok_piece of each id, the
 * end-of-generation ids as end tokens); its tokenizer in *tk (free both). */
gram_vocab *t_gram_vocab(const char *rel, struct tok **tk);
#endif
