/* grammar/grammar.h: constrained decoding. Languages (any JSON, a JSON Schema, a regular
 * expression, a choice among strings, a GBNF grammar) compile into one representation, a
 * pushdown automaton over bytes (`gram`); a matcher (`gram_matcher`) follows one sequence's
 * output through it and says which tokens of a vocabulary may come next.
 *
 *   gram *g;  gram_compile_schema(&g, text, len, NULL, &err);        any thread, ~ms
 *   gram_vocab *v;  gram_vocab_create(&v, n_vocab, pieces, lens, ends, &err);  once
 *   gram_matcher *m;  gram_matcher_create(&m, g, v, &err);           per sequence
 *   loop: gram_matcher_mask(m, bits); gram_mask_apply(bits, logits, n_vocab);
 *         sample t; gram_matcher_accept(m, t);
 *
 * Masks are fast on large vocabularies: for each automaton state the tokens whose fate does
 * not depend on the stack below are computed once (lazily, the first time a matcher is in
 * that state) and kept with the grammar; the rest (tokens that run past the end of the
 * current rule) are found by walking a trie of the vocabulary from the real stack.
 *
 * Everything given to the compilers is hostile: depth, size and time are bounded
 * (gram_limits), and a failure is a KL_EINVAL / KL_EUNSUP with a message that names what
 * is wrong. */
#ifndef KILN_GRAMMAR_GRAMMAR_H
#define KILN_GRAMMAR_GRAMMAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct gram gram;                 /* compiled; immutable but for its token tables */
typedef struct gram_vocab gram_vocab;     /* a vocabulary's token bytes as a trie */
typedef struct gram_matcher gram_matcher; /* one sequence's position; one thread at a time */

typedef struct gram_limits {
    int max_states;    /* automaton states in all (default 200000) */
    int max_nesting;   /* nesting of the source: schema levels, regex groups (default 64) */
    int max_depth;     /* matcher stack depth, i.e. nesting of the output (default 512) */
    double max_ms;     /* compile budget, CPU milliseconds (default 100) */
    size_t max_tables; /* bytes of token tables kept per grammar (default 64 MiB) */
} gram_limits;

void gram_limits_defaults(gram_limits *lim);

/* Compilers. lim may be NULL (defaults). Return 0 and a grammar with one reference, or
 * KL_EINVAL (malformed input), KL_EUNSUP (valid but not supported: the message names the
 * keyword or construct), KL_ERANGE (over a limit), KL_ENOMEM. */

/* Any JSON value (object_only: any JSON object, as response_format json_object). */
int gram_compile_json(gram **out, bool object_only, const gram_limits *lim, kl_err *err);
/* A JSON Schema (draft 2020-12 / 7 subset, see schema.c), given as JSON text. */
int gram_compile_schema(gram **out, const char *text, size_t len, const gram_limits *lim,
                        kl_err *err);
/* A regular expression; the whole output must match it. */
int gram_compile_regex(gram **out, const char *re, size_t len, const gram_limits *lim, kl_err *err);
/* Exactly one of the strings. */
int gram_compile_choice(gram **out, const char *const *choices, const size_t *lens, int n,
                        const gram_limits *lim, kl_err *err);
/* A llama.cpp GBNF grammar (the rule `root` is the language). */
int gram_compile_gbnf(gram **out, const char *src, size_t len, const gram_limits *lim, kl_err *err);

gram *gram_ref(gram *g);
void gram_unref(gram *g); /* NULL is fine */
/* Bytes the grammar holds now (automaton + token tables so far). */
size_t gram_bytes(const gram *g);
int32_t gram_n_states(const gram *g);

/* Does the grammar's language contain s[0..len)? (Bytes, no tokens: for tests and tools.) */
bool gram_matches(const gram *g, const char *s, size_t len);

/* A vocabulary: piece[i] (len[i] bytes) is what token i adds to the output; tokens with an
 * empty piece are never allowed, except end tokens (is_end[i]: EOS, EOT ...) which are
 * allowed exactly when the output is complete. Everything is copied. */
int gram_vocab_create(gram_vocab **out, int32_t n_vocab, const char *const *piece,
                      const uint32_t *len, const bool *is_end, kl_err *err);
void gram_vocab_free(gram_vocab *v); /* NULL is fine; grammars used with it stay valid */
int32_t gram_vocab_n(const gram_vocab *v);
/* 32-bit words of a mask for this vocabulary: (n_vocab + 31) / 32. */
int32_t gram_mask_words(const gram_vocab *v);

/* A matcher at the start of g's language. Holds a reference to g; v must outlive it. */
int gram_matcher_create(gram_matcher **out, gram *g, const gram_vocab *v, kl_err *err);
void gram_matcher_free(gram_matcher *m); /* NULL is fine */
/* Writes the tokens allowed next into mask (gram_mask_words words, bit i%32 of word i/32).
 * End tokens are allowed when the output is complete; when nothing else can follow, only
 * they are. Returns the number of allowed tokens (0: a dead end; the caller stops). */
int32_t gram_matcher_mask(gram_matcher *m, uint32_t *mask);
/* Advances by token t. Returns false (and stays put) when t is not allowed here. After an
 * end token the matcher is finished and accepts nothing more. */
bool gram_matcher_accept(gram_matcher *m, int32_t t);
/* Advances by raw bytes (false and unchanged if they leave the language). */
bool gram_matcher_accept_bytes(gram_matcher *m, const char *s, size_t len);
/* The output so far is a complete sentence of the language. */
bool gram_matcher_can_end(const gram_matcher *m);
/* Complete and nothing may follow: only an end token is allowed. */
bool gram_matcher_must_end(const gram_matcher *m);
/* Undoes the last n accepted tokens (n <= gram_matcher_history(m)): for speculative
 * decoding, whose rejected draft tokens were accepted to compute the masks after them. */
bool gram_matcher_rollback(gram_matcher *m, int n);
/* How many tokens rollback can undo now (the most recent ones, up to GRAM_HISTORY). */
int gram_matcher_history(const gram_matcher *m);
#define GRAM_HISTORY 32

/* Sets logits[i] = -inf for every token i the mask does not allow (i < n). */
void gram_mask_apply(const uint32_t *mask, float *logits, int32_t n);
static inline bool gram_mask_has(const uint32_t *mask, int32_t t)
{
    return (mask[t >> 5] >> (t & 31)) & 1u;
}

/* ---- cache ---- */

/* Compiled grammars by source, least recently used evicted past max_bytes (of
 * gram_bytes, token tables included). Thread-safe. */
typedef struct gram_cache gram_cache;
typedef enum gram_kind {
    GRAM_JSON,        /* src ignored: any JSON value */
    GRAM_JSON_OBJECT, /* src ignored: any JSON object */
    GRAM_SCHEMA,
    GRAM_REGEX,
    GRAM_CHOICE, /* src: the choices as a JSON array of strings */
    GRAM_GBNF,
} gram_kind;

gram_cache *gram_cache_create(size_t max_bytes, const gram_limits *lim);
void gram_cache_free(gram_cache *c); /* NULL is fine; grammars handed out stay valid */
/* The grammar of (kind, src), compiled on a miss. Returns 0 and a new reference in *out, or
 * the compiler's error. Failed compilations are not cached. */
int gram_cache_get(gram_cache *c, gram_kind kind, const char *src, size_t len, gram **out,
                   kl_err *err);
typedef struct gram_cache_stats {
    uint64_t hits, misses, evictions;
    size_t bytes, entries;
} gram_cache_stats;
void gram_cache_stats_get(gram_cache *c, gram_cache_stats *out);
#endif
