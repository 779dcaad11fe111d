/* tok/bpe.c: byte-level BPE over one pre-tokenized word. Every byte starts as the token of
 * its bytes_to_unicode stand-in; the adjacent pair with the lowest merge rank (leftmost on
 * ties) merges until no pair has a rank. Pairs wait in a binary heap keyed (rank, left) and
 * are looked up by (left id, right id) in a hash table, so a word of n bytes costs
 * O(n log n) and no strings are built. */
#include <string.h>

#include "tok/internal.h"

static void bpe_try_pair(const tok *t, tok_out *o, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    int32_t a = o->sym[left].id, b = o->sym[right].id;
    if (a < 0 || b < 0) return;
    const tok_pair *p = tok_pairmap_get(&t->merges, a, b);
    if (!p) return;
    tok_heap_push(o, (tok_heap_item){.key = (uint64_t)(uint32_t)p->rank << 32 | (uint32_t)left,
                                     .right = right,
                                     .aux = b});
}

/* Tokenizes the word s[0..len) (raw bytes) and appends its ids to o. Bytes whose stand-in is
 * not in the vocabulary produce no token (as llama.cpp). */
void tok_bpe_word(const tok *t, const char *s, size_t len, tok_out *o)
{
    if (!len) return;
    if (t->pre.ignore_merges && tok_out_buf(o, 2 * len)) {
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
            n += tok_byte_to_utf8((uint8_t)s[i], o->buf + n);
        int32_t id = tok_map_find(t, o->buf, n);
        if (id >= 0) {
            tok_out_push(o, id);
            return;
        }
    }
    if (len == 1) {
        if (t->byte_tok[(uint8_t)s[0]] >= 0) tok_out_push(o, t->byte_tok[(uint8_t)s[0]]);
        return;
    }
    if (!tok_out_syms(o, len) || !tok_out_heap(o, 3 * len)) {
        for (size_t i = 0; i < len; i++)
            if (t->byte_tok[(uint8_t)s[i]] >= 0) tok_out_push(o, t->byte_tok[(uint8_t)s[i]]);
        return;
    }
    int32_t n_sym = (int32_t)len;
    for (int32_t i = 0; i < n_sym; i++)
        o->sym[i] = (tok_sym){.prev = i - 1,
                              .next = i + 1 < n_sym ? i + 1 : -1,
                              .off = (uint32_t)i,
                              .len = 1,
                              .id = t->byte_tok[(uint8_t)s[i]]};
    o->heap_n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        bpe_try_pair(t, o, i - 1, i);

    while (o->heap_n) {
        tok_heap_item it = tok_heap_pop(o);
        int32_t left = (int32_t)(uint32_t)it.key;
        tok_sym *l = &o->sym[left], *r = &o->sym[it.right];
        if (!l->len || !r->len || l->next != it.right || r->id != it.aux) continue; /* stale */
        const tok_pair *p = tok_pairmap_get(&t->merges, l->id, r->id);
        if (!p) continue;
        l->id = p->merged;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) o->sym[r->next].prev = left;
        bpe_try_pair(t, o, l->prev, left);
        bpe_try_pair(t, o, left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = o->sym[i].next)
        if (o->sym[i].id >= 0) tok_out_push(o, o->sym[i].id);
}
