/* grammar/vocab.c: a vocabulary's token bytes as a trie, flattened in preorder.
 *
 * Node i has the byte that leads to it, its depth, and end[i], the index just past its
 * subtree, so a walk that finds a prefix dead skips everything under it with i = end[i].
 * The tokens whose bytes end exactly at node i are toks[tok_off[i] .. tok_off[i + 1]). Node
 * 0 is the root (the empty prefix). Built by sorting the pieces: in sorted order each token
 * shares its longest common prefix with the one before, so nodes come out in preorder. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/vocab.h"

#define PIECE_MAX 1024 /* bytes; longer pieces are never allowed */

static _Atomic uint64_t serials;

typedef struct sort_ctx {
    const char *bytes;
    const uint32_t *off;
} sort_ctx;

static int by_bytes(const void *a, const void *b, void *arg)
{
    const sort_ctx *c = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = c->off[x + 1] - c->off[x], ly = c->off[y + 1] - c->off[y];
    int r = memcmp(c->bytes + c->off[x], c->bytes + c->off[y], lx < ly ? lx : ly);
    if (r) return r;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y; /* equal pieces: by id */
}

void gram_vocab_free(gram_vocab *v)
{
    if (!v) return;
    free(v->byte);
    free(v->depth);
    free(v->end);
    free(v->tok_off);
    free(v->toks);
    free(v->ends);
    free(v->poff);
    free(v->pbytes);
    free(v);
}

int32_t gram_vocab_n(const gram_vocab *v)
{
    return v->n_vocab;
}

int32_t gram_mask_words(const gram_vocab *v)
{
    return (v->n_vocab + 31) / 32;
}

int gram_vocab_create(gram_vocab **out, int32_t n_vocab, const char *const *piece,
                      const uint32_t *len, const bool *is_end, kl_err *err)
{
    *out = NULL;
    if (n_vocab < 1) return kl_errf(err, KL_EINVAL, "grammar: empty vocabulary");
    gram_vocab *v = calloc(1, sizeof *v);
    if (!v) return kl_errf(err, KL_ENOMEM, "out of memory");
    v->serial = atomic_fetch_add(&serials, 1) + 1;
    v->n_vocab = n_vocab;
    size_t total = 0;
    int32_t n_tok = 0, n_ends = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (len[i] && len[i] <= PIECE_MAX) total += len[i], n_tok++;
        if (is_end && is_end[i]) n_ends++;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)(n_tok + 1));
    v->poff = malloc(sizeof *v->poff * ((size_t)n_vocab + 1));
    v->pbytes = malloc(total + 1);
    v->ends = malloc(sizeof *v->ends * (size_t)(n_ends + 1));
    v->byte = malloc(total + 1);
    v->depth = malloc(sizeof *v->depth * (total + 1));
    v->end = malloc(sizeof *v->end * (total + 1));
    v->tok_off = calloc(total + 2, sizeof *v->tok_off);
    v->toks = malloc(sizeof *v->toks * (size_t)(n_tok + 1));
    int32_t *path = malloc(sizeof *path * (PIECE_MAX + 1));
    if (!ids || !v->poff || !v->pbytes || !v->ends || !v->byte || !v->depth || !v->end ||
        !v->tok_off || !v->toks || !path) {
        free(ids);
        free(path);
        gram_vocab_free(v);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    size_t o = 0;
    n_tok = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        v->poff[i] = (uint32_t)o;
        if (len[i] && len[i] <= PIECE_MAX) {
            memcpy(v->pbytes + o, piece[i], len[i]);
            o += len[i];
            ids[n_tok++] = i;
            if ((int32_t)len[i] > v->max_len) v->max_len = (int32_t)len[i];
        }
        if (is_end && is_end[i]) v->ends[v->n_ends++] = i;
    }
    v->poff[n_vocab] = (uint32_t)o;
    sort_ctx sc = {v->pbytes, v->poff};
    qsort_r(ids, (size_t)n_tok, sizeof *ids, by_bytes, &sc);
    /* the trie: path[d] is the open node at depth d */
    int32_t nn = 1, depth = 0;
    v->byte[0] = 0;
    v->depth[0] = 0;
    path[0] = 0;
    const char *prev = NULL;
    uint32_t prev_len = 0;
    for (int32_t k = 0; k < n_tok; k++) {
        int32_t id = ids[k];
        const char *p = v->pbytes + v->poff[id];
        uint32_t l = v->poff[id + 1] - v->poff[id], lcp = 0;
        while (prev && lcp < l && lcp < prev_len && p[lcp] == prev[lcp])
            lcp++;
        for (; depth > (int32_t)lcp; depth--)
            v->end[path[depth]] = nn;
        for (; depth < (int32_t)l; depth++) {
            v->byte[nn] = (uint8_t)p[depth];
            v->depth[nn] = (uint16_t)(depth + 1);
            path[depth + 1] = nn++;
        }
        v->tok_off[path[l] + 1]++;
        v->toks[k] = id;
        prev = p;
        prev_len = l;
    }
    for (; depth >= 0; depth--)
        v->end[path[depth]] = nn;
    v->n_nodes = nn;
    for (int32_t i = 0; i < nn; i++)
        v->tok_off[i + 1] += v->tok_off[i];
    free(ids);
    free(path);
    *out = v;
    return 0;
}
