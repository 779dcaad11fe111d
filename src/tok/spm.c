/* tok/spm.c: the SentencePiece ("llama") model as llama.cpp runs it: start from one symbol per
 * UTF-8 character, repeatedly merge the adjacent pair whose concatenation is the vocabulary
 * token with the highest score (leftmost on ties), then emit each symbol's token, or its bytes
 * as <0xNN> tokens when it is not in the vocabulary. The pairs wait in a binary heap, so a
 * fragment of n characters costs O(n log n). */
#include <string.h>

#include "tok/internal.h"

/* A heap key that pops the highest score first, then the leftmost pair. */
static uint64_t spm_key(float score, int32_t left)
{
    uint32_t u;
    if (score == 0.0f) score = 0.0f; /* -0 sorts with +0 */
    memcpy(&u, &score, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending with the float */
    return (uint64_t)~u << 32 | (uint32_t)left;
}

static void spm_try_pair(const tok *t, const char *s, tok_out *o, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const tok_sym *l = &o->sym[left], *r = &o->sym[right];
    uint32_t n = l->len + r->len;
    int32_t id = tok_map_find(t, s + l->off, n);
    if (id < 0) return;
    tok_heap_push(
        o, (tok_heap_item){.key = spm_key(t->score[id], left), .right = right, .aux = (int32_t)n});
}

/* Emits the tokens of s[off..off+len): its token, or one byte token per byte. */
static void spm_emit(const tok *t, const char *s, uint32_t off, uint32_t len, tok_out *o)
{
    int32_t id = tok_map_find(t, s + off, len);
    if (id >= 0) {
        tok_out_push(o, id);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        int32_t b = t->byte_tok[(uint8_t)s[off + i]];
        if (b >= 0) tok_out_push(o, b);
    }
}

/* Tokenizes s[0..len) (spaces already escaped to "▁") and appends the ids to o. When scratch
 * cannot be allocated the fragment is emitted one character at a time (still valid tokens). */
void tok_spm_encode(const tok *t, const char *s, size_t len, tok_out *o)
{
    if (!len) return;
    if (!tok_out_syms(o, len) || !tok_out_heap(o, 3 * len)) {
        for (size_t off = 0; off < len;) {
            size_t n = tok_utf8_len((uint8_t)s[off]);
            if (n > len - off) n = len - off;
            spm_emit(t, s, (uint32_t)off, (uint32_t)n, o);
            off += n;
        }
        return;
    }
    int32_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        size_t n = tok_utf8_len((uint8_t)s[off]);
        if (n > len - off) n = len - off;
        o->sym[n_sym] = (tok_sym){.prev = n_sym - 1,
                                  .next = n_sym + 1,
                                  .off = (uint32_t)off,
                                  .len = (uint32_t)n,
                                  .id = -1};
        off += n;
        n_sym++;
    }
    o->sym[n_sym - 1].next = -1;
    o->heap_n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        spm_try_pair(t, s, o, i - 1, i);

    while (o->heap_n) {
        tok_heap_item it = tok_heap_pop(o);
        int32_t left = (int32_t)(uint32_t)it.key;
        tok_sym *l = &o->sym[left], *r = &o->sym[it.right];
        if (!l->len || !r->len || l->len + r->len != (uint32_t)it.aux) continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) o->sym[r->next].prev = left;
        spm_try_pair(t, s, o, l->prev, left);
        spm_try_pair(t, s, o, left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = o->sym[i].next)
        spm_emit(t, s, o->sym[i].off, o->sym[i].len, o);
}
