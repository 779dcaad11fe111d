/* tok/decode.c: ids -> bytes. Every token's piece is computed once at load (tok_pieces_build),
 * so tok_piece and tok_decode only copy. Plus the UTF-8 hold-back rule for streaming. */
#include <stdlib.h>
#include <string.h>

#include "tok/internal.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Writes token id's piece to dst (which has room for 4 * its text length) and returns the
 * piece's length. */
static size_t piece_of(const tok *t, int32_t id, char *dst)
{
    size_t len;
    const char *s = tok_text_of(t, id, &len);
    switch (t->type[id]) {
    case TOK_T_USER:
        memcpy(dst, s, len);
        return len;
    case TOK_T_CONTROL:
    case TOK_T_UNKNOWN:
    case TOK_T_UNUSED:
    case TOK_T_UNDEFINED:
        return 0;
    case TOK_T_BYTE:
        if (t->kind == TOK_KIND_SPM && len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' &&
            hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
            dst[0] = (char)(hexval(s[3]) << 4 | hexval(s[4]));
            return 1;
        }
        return 0;
    default:
        break; /* normal */
    }
    size_t n = 0;
    if (t->kind != TOK_KIND_BPE) { /* "▁" (E2 96 81) is a space */
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                dst[n++] = ' ';
                i += 3;
            } else
                dst[n++] = s[i++];
        }
        return n;
    }
    for (size_t i = 0; i < len;) { /* byte-level BPE: each stand-in character is one byte */
        uint32_t cp;
        size_t l = tok_utf8_decode(s + i, len - i, &cp);
        int b = tok_cp_to_byte(cp);
        if (b >= 0 && cp != 0xfffd)
            dst[n++] = (char)b;
        else
            memcpy(dst + n, s + i, l), n += l; /* not a stand-in: keep the bytes */
        i += l;
    }
    return n;
}

/* Builds t->piece and t->piece_off. Returns 0 or KL_ENOMEM (nothing allocated). */
int tok_pieces_build(tok *t)
{
    uint64_t total = t->text_off[t->n_vocab];
    t->piece_off = malloc(sizeof *t->piece_off * ((size_t)t->n_vocab + 1));
    t->piece = malloc(total ? total : 1); /* a piece is never longer than its text */
    if (!t->piece_off || !t->piece) {
        free(t->piece_off), free(t->piece);
        t->piece_off = NULL, t->piece = NULL;
        return KL_ENOMEM;
    }
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->piece_off[id] = off;
        off += (uint32_t)piece_of(t, id, t->piece + off);
    }
    t->piece_off[t->n_vocab] = off;
    return 0;
}

/* The bytes id stands for under flags, or NULL for an out-of-range id. */
static const char *piece_get(const tok *t, int32_t id, unsigned flags, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    if ((flags & TOK_RENDER_SPECIAL) &&
        (t->type[id] == TOK_T_CONTROL || t->type[id] == TOK_T_UNKNOWN))
        return tok_text_of(t, id, len);
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece + t->piece_off[id];
}

size_t tok_piece(const tok *t, int32_t id, unsigned flags, char *buf, size_t cap)
{
    size_t len;
    const char *p = piece_get(t, id, flags, &len);
    if (!p) return 0;
    if (cap) memcpy(buf, p, len < cap ? len : cap);
    return len;
}

/* Concatenates the pieces into out like snprintf: at most cap - 1 bytes and a NUL when
 * cap > 0; returns the full length. SentencePiece's prefix space is dropped from the first
 * token that is not a control token. */
size_t tok_decode(const tok *t, const int32_t *ids, int64_t n, unsigned flags, char *out,
                  size_t cap)
{
    size_t total = 0;
    bool strip = t->add_space_prefix;
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *p = piece_get(t, ids[i], flags, &len);
        if (!p) continue;
        bool ctl = t->type[ids[i]] == TOK_T_CONTROL || t->type[ids[i]] == TOK_T_UNKNOWN;
        if (strip && !ctl) {
            strip = false;
            if (len && p[0] == ' ') p++, len--;
        }
        if (cap && total < cap - 1) {
            size_t room = cap - 1 - total;
            memcpy(out + total, p, len < room ? len : room);
        }
        total += len;
    }
    if (cap) out[total < cap - 1 ? total : cap - 1] = 0;
    return total;
}

/* See tok.h. At most 3 bytes are ever held back. */
size_t tok_utf8_complete(const char *s, size_t len)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        uint8_t c = u[len - k];
        if ((c & 0xc0) == 0x80) continue; /* continuation: look further back */
        size_t need;
        if (c >= 0xc2 && c <= 0xdf)
            need = 2;
        else if (c >= 0xe0 && c <= 0xef)
            need = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 4;
        else
            return len;            /* ASCII or a byte that starts nothing */
        if (k >= need) return len; /* the last sequence is complete (or too long: invalid) */
        if (k >= 2) { /* the second byte must fit the lead, or the sequence is already invalid */
            uint8_t c1 = u[len - k + 1];
            if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
                (c == 0xf4 && c1 > 0x8f))
                return len;
        }
        return len - k;
    }
    return len;
}
