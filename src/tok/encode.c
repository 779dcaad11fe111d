/* tok/encode.c: tok_encode. Text -> ids in three steps, as llama.cpp does:
 *   1. special tokens are cut out of the text first: user-defined tokens always, control and
 *      unknown-type tokens only with TOK_PARSE_SPECIAL; longest token text first, each one's
 *      occurrences left to right inside the fragments still raw;
 *   2. each raw fragment goes to the model: SentencePiece gets "▁" for every space (and one
 *      before a fragment that starts the text or follows a special token, add_space_prefix);
 *      byte-level BPE gets NFC (Qwen 2) and the pre-tokenizer's words;
 *   3. BOS first when asked (and EOS last when the vocab says add_eos_token).
 * All scratch belongs to this call (tok_out), so threads never share mutable state. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/internal.h"

#define TOK_CHUNK                                                                                  \
    ((size_t)1 << 30) /* raw fragments are cut at this many bytes (32-bit offsets)                 \
                       */

/* ---- scratch ---- */

static bool grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

bool tok_out_syms(tok_out *o, size_t n)
{
    return grow((void **)&o->sym, &o->sym_cap, n, sizeof *o->sym);
}

bool tok_out_heap(tok_out *o, size_t n)
{
    return grow((void **)&o->heap, &o->heap_cap, n, sizeof *o->heap);
}

bool tok_out_buf(tok_out *o, size_t n)
{
    return grow((void **)&o->buf, &o->buf_cap, n, 1);
}

/* Min-heap on key, 4-ary (half the depth of a binary heap: long words push millions of
 * pairs, and each level is a cache miss). Callers reserve room first; on a failed grow the
 * item is dropped and the call is marked oom (the result is still a valid tokenization, just
 * not the optimal one). */
void tok_heap_push(tok_out *o, tok_heap_item it)
{
    if (o->heap_n == o->heap_cap && !tok_out_heap(o, o->heap_n + 1)) {
        o->oom = true;
        return;
    }
    size_t i = o->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (o->heap[p].key <= it.key) break;
        o->heap[i] = o->heap[p];
        i = p;
    }
    o->heap[i] = it;
}

tok_heap_item tok_heap_pop(tok_out *o)
{
    tok_heap_item top = o->heap[0], last = o->heap[--o->heap_n];
    size_t i = 0, n = o->heap_n;
    for (;;) {
        size_t c = 4 * i + 1, end = c + 4 < n ? c + 4 : n;
        if (c >= n) break;
        size_t m = c;
        for (size_t k = c + 1; k < end; k++)
            if (o->heap[k].key < o->heap[m].key) m = k;
        if (last.key <= o->heap[m].key) break;
        o->heap[i] = o->heap[m];
        i = m;
    }
    if (n) o->heap[i] = last;
    return top;
}

/* ---- step 1: special tokens ---- */

typedef struct frag {
    size_t off, len;
    int32_t id; /* -1: raw text */
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static bool frags_add(frags *f, size_t off, size_t len, int32_t id)
{
    if (!grow((void **)&f->v, &f->cap, f->n + 1, sizeof *f->v)) return false;
    f->v[f->n++] = (frag){off, len, id};
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts every occurrence of special token id out of the raw fragments of *f (into *tmp, then
 * swapped). Returns false when out of memory (f unchanged). */
static bool cut_special(const tok *t, const char *text, int32_t id, frags *f, frags *tmp)
{
    size_t tl;
    const char *tt = tok_text_of(t, id, &tl);
    tmp->n = 0;
    for (size_t i = 0; i < f->n; i++) {
        frag fr = f->v[i];
        if (fr.id >= 0) {
            if (!frags_add(tmp, fr.off, fr.len, fr.id)) return false;
            continue;
        }
        size_t base = fr.off, blen = fr.len;
        for (;;) {
            const char *m = memmem(text + base, blen, tt, tl);
            if (!m) {
                if (blen && !frags_add(tmp, base, blen, -1)) return false;
                break;
            }
            size_t mo = (size_t)(m - text), ll = mo - base;
            if (t->attr[id] & TOK_A_LSTRIP)
                while (ll && is_space(text[base + ll - 1]))
                    ll--;
            if (ll && !frags_add(tmp, base, ll, -1)) return false;
            if (!frags_add(tmp, mo, tl, id)) return false;
            size_t ro = mo + tl, rl = base + blen - ro;
            if (t->attr[id] & TOK_A_RSTRIP)
                while (rl && is_space(text[ro]))
                    ro++, rl--;
            if (!rl) break;
            base = ro, blen = rl;
        }
    }
    frags x = *f;
    *f = *tmp;
    *tmp = x;
    return true;
}

/* Splits text into raw and special fragments in *f. On allocation failure the whole text is
 * left as one raw fragment (specials then tokenize as plain text). */
static void partition(const tok *t, const char *text, size_t len, unsigned flags, frags *f)
{
    f->n = 0;
    if (!frags_add(f, 0, len, -1)) return;
    if (!t->n_special || !len) return;
    uint8_t seen[256] = {0};
    bool any = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        if (t->special_first[c] && !seen[c]) seen[c] = 1, any = true;
    }
    if (!any) return;
    frags tmp = {0};
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!(flags & TOK_PARSE_SPECIAL) && t->type[id] != TOK_T_USER) continue;
        size_t tl;
        const char *tt = tok_text_of(t, id, &tl);
        if (tl > len || !seen[(uint8_t)tt[0]] || !memmem(text, len, tt, tl)) continue;
        if (!cut_special(t, text, id, f, &tmp)) break;
    }
    free(tmp.v);
}

/* ---- step 2: the models ---- */

/* SentencePiece on one raw fragment: optional leading "▁", spaces as "▁". */
static void spm_fragment(const tok *t, const char *s, size_t len, bool prefix, tok_out *o)
{
    static const char esc[3] = {'\xe2', '\x96', '\x81'}; /* U+2581 "▁" */
    size_t spaces = prefix;
    for (size_t i = 0; i < len; i++)
        spaces += s[i] == ' ';
    /* scratch buf is not used by tok_spm_encode, so it can hold the escaped text */
    if (!tok_out_buf(o, len + 2 * spaces + 3)) {
        o->oom = true;
        for (size_t i = 0; i < len; i++)
            if (t->byte_tok[(uint8_t)s[i]] >= 0) tok_out_push(o, t->byte_tok[(uint8_t)s[i]]);
        return;
    }
    char *d = o->buf;
    if (prefix) memcpy(d, esc, 3), d += 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            memcpy(d, esc, 3), d += 3;
        else
            *d++ = s[i];
    }
    size_t n = (size_t)(d - o->buf);
    /* tok_spm_encode reads the text while it may grow other scratch, never buf */
    if (!t->spm_split) {
        tok_spm_encode(t, o->buf, n, o);
        return;
    }
    /* word by word: cut before each "▁" that follows another character */
    size_t start = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if (memcmp(o->buf + i, esc, 3) || (i >= 3 && !memcmp(o->buf + i - 3, esc, 3))) continue;
        tok_spm_encode(t, o->buf + start, i - start, o);
        start = i;
    }
    tok_spm_encode(t, o->buf + start, n - start, o);
}

/* BPE on one raw fragment: NFC when the pre-tokenizer asks for it, then split into words. */
static void bpe_fragment(const tok *t, const char *s, size_t len, tok_out *o)
{
    if (t->pre.nfc) {
        bool ascii = true;
        for (size_t i = 0; i < len && ascii; i++)
            ascii = (uint8_t)s[i] < 0x80;
        if (!ascii) {
            utf8proc_uint8_t *nfc = NULL;
            utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len,
                                              &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (n >= 0) { /* invalid UTF-8 (n < 0) is tokenized as it is */
                tok_pretok_split(t, (const char *)nfc, (size_t)n, o);
                free(nfc);
                return;
            }
            free(nfc);
        }
    }
    tok_pretok_split(t, s, len, o);
}

/* Feeds raw fragment s[0..len) to the model in chunks of at most TOK_CHUNK bytes, cut at the
 * start of a UTF-8 character. */
static void raw_fragment(const tok *t, const char *s, size_t len, bool prefix, tok_out *o)
{
    while (len) {
        size_t n = len;
        if (n > TOK_CHUNK) {
            n = TOK_CHUNK;
            while (n > TOK_CHUNK - 4 && ((uint8_t)s[n] & 0xc0) == 0x80)
                n--;
        }
        if (t->kind == TOK_KIND_SPM)
            spm_fragment(t, s, n, prefix, o);
        else if (t->kind == TOK_KIND_WPM)
            tok_wpm_encode(t, s, n, o);
        else
            bpe_fragment(t, s, n, o);
        s += n, len -= n, prefix = false;
    }
}

/* See tok.h. Never fails: when scratch memory runs out, the affected text is emitted as byte
 * tokens (still a valid tokenization that decodes back to the same bytes). */
int64_t tok_encode(const tok *t, const char *text, size_t len, unsigned flags, int32_t *out,
                   int64_t cap)
{
    tok_out o = {.ids = out, .cap = out ? cap : 0};
    if (!text) len = 0;
    if ((flags & TOK_ADD_BOS) && t->bos >= 0) tok_out_push(&o, t->bos);
    if (t->kind == TOK_KIND_BPE) tok_pretok_begin(t, &o); /* without it, words are whole pieces */

    frags f = {0};
    partition(t, text, len, flags, &f);
    if (!f.n && len) /* could not even allocate one fragment: the text is all raw */
        raw_fragment(t, text, len, t->add_space_prefix, &o);
    bool prev_special = true; /* SentencePiece: a space before the first fragment */
    for (size_t i = 0; i < f.n; i++) {
        if (f.v[i].id >= 0) {
            tok_out_push(&o, f.v[i].id);
            prev_special = true;
            continue;
        }
        raw_fragment(t, text + f.v[i].off, f.v[i].len, t->add_space_prefix && prev_special, &o);
        prev_special = false;
    }
    free(f.v);
    if ((flags & TOK_ADD_BOS) && t->add_eos && t->eos >= 0) tok_out_push(&o, t->eos);

    if (t->kind == TOK_KIND_BPE) tok_pretok_end(&o);
    free(o.sym);
    free(o.heap);
    free(o.buf);
    return o.n;
}
