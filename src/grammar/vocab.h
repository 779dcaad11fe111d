/* grammar/vocab.h: the vocabulary trie (vocab.c) as the matcher and the token tables read
 * it. Internal to the grammar layer. */
#ifndef KILN_GRAMMAR_VOCAB_H
#define KILN_GRAMMAR_VOCAB_H
#include <stdint.h>

#include "grammar/grammar.h"

struct gram_vocab {
    uint64_t serial; /* unique per vocabulary ever created: keys the grammars' token tables */
    int32_t n_vocab;
    int32_t n_nodes;  /* trie nodes, preorder; 0 is the root */
    uint8_t *byte;    /* (n_nodes) the byte leading to the node */
    uint16_t *depth;  /* (n_nodes) bytes from the root */
    int32_t *end;     /* (n_nodes) index past the node's subtree */
    int32_t *tok_off; /* (n_nodes + 1) tokens ending at node i: toks[tok_off[i] .. [i+1]) */
    int32_t *toks;    /* token ids in trie order */
    int32_t *ends;    /* (n_ends) end tokens */
    int32_t n_ends;
    uint32_t *poff; /* (n_vocab + 1) piece of token i: pbytes[poff[i] .. poff[i + 1]) */
    char *pbytes;
    int32_t max_len; /* longest piece in the trie */
};
#endif
