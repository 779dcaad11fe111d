/* grammar/table.h: token tables (table.c) and trie walks, internal to the grammar layer.
 *
 * For each automaton state s, the entry says what is known about every token from s alone,
 * whatever the stack below:
 *   - acc: tokens that are valid (their bytes are read inside s's rule and the rules it
 *     calls, or the rule ends exactly after them);
 *   - esc: trie nodes after whose bytes s's rule may end while longer tokens go on: those
 *     tokens depend on what the caller accepts next, and the matcher walks the node's
 *     subtree from the caller's configuration (usually a few nodes: after a JSON string's
 *     closing quote only ',' '}' or whitespace survive);
 *   - every other token is invalid from s.
 * Entries are computed the first time a matcher stands in s, under the grammar's lock, and
 * kept with the grammar (identical token sets stored once), up to gram_limits.max_tables
 * bytes; past that they are computed per use and not kept. */
#ifndef KILN_GRAMMAR_TABLE_H
#define KILN_GRAMMAR_TABLE_H
#include "grammar/internal.h"
#include "grammar/vocab.h"

typedef struct gentry {
    const uint32_t *acc; /* token ids (n_acc), or a bitmap of n_words words when bitmap */
    int32_t n_acc;
    uint8_t bitmap;
    uint8_t full;     /* the walk was cut (depth or work): use a whole-trie walk instead */
    int32_t max_push; /* stack height reached above s's own level by any walk */
    int32_t n_esc;
    const int32_t *esc; /* (n_esc) trie nodes, each with a subtree below */
} gentry;

/* Buffers of one walk: configurations per trie depth (a stack), node-pool marks. */
typedef struct gwalk {
    gconf *buf;
    int32_t n, cap;
    int32_t *off, *cnt, *nodes; /* (max_len + 2) per level */
    int32_t cap_levels;
} gwalk;

void gwalk_free(gwalk *w);

/* Sets the bits of the tokens in the subtree strictly below trie node y that are valid
 * after reading their bytes (beyond y's) from the configurations start[0..n) (real
 * parents: GP_UNKNOWN never appears). Nodes the walk creates are dropped afterwards.
 * Returns 0 or KL_ENOMEM. */
int gwalk_subtree(gsim *sim, gwalk *w, const gram_vocab *v, int32_t y, const gconf *start,
                  int32_t n, uint32_t *mask);

typedef struct gtable gtable;
/* The grammar's tables for vocabulary v (created on first use). NULL: out of memory. */
gtable *gtable_for(gram *g, const gram_vocab *v);
/* The entry of state s, computed if needed. When it cannot be kept (over the grammar's
 * budget) it is computed into *own, whose buffers belong to the caller (free them with
 * gentry_own_free). NULL: out of memory. */
const gentry *gtable_entry(gram *g, gtable *t, const gram_vocab *v, int32_t s, gentry *own);
void gentry_own_free(gentry *own);
void gtable_free_all(gram *g);
#endif
