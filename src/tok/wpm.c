/* tok/wpm.c: WordPiece ("bert"), as Hugging Face's BertNormalizer + BertPreTokenizer +
 * WordPiece run it:
 *   normalize: drop NUL, U+FFFD and "other" characters (control, format, unassigned, private
 *              use; tab, CR and LF count as space), whitespace becomes ' ', CJK ideographs get
 *              spaces around them, NFD with non-spacing marks removed, lowercase;
 *   split:     on whitespace, and every punctuation character is a word of its own;
 *   pieces:    greedy longest match first; the first piece of a word is stored in GGUF with a
 *              "▁" prefix (Hugging Face's plain piece), the others plain (Hugging Face's
 *              "##" piece). A word with a character no piece covers, or longer than 100
 *              characters, is one [UNK].
 * Decoding is lossy by design (lowercase, no accents). */
#include <string.h>
#include <utf8proc.h>

#include "tok/internal.h"

#define WPM_MAX_CHARS 100 /* Hugging Face's max_input_chars_per_word */

static bool wpm_is_control(int32_t cp)
{
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CN ||
           c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CS;
}

static bool wpm_is_space(int32_t cp)
{
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

static bool wpm_is_punct(int32_t cp)
{
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/* CJK ideograph blocks, as Hugging Face lists them (including its 0x2B920 start). */
static bool wpm_is_cjk(int32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Emits the pieces of one word w[0..len) of n_chars characters (already normalized). */
static void wpm_word(const tok *t, const char *w, size_t len, size_t n_chars, tok_out *o)
{
    char buf[3 + 4 * WPM_MAX_CHARS];
    int32_t ids[WPM_MAX_CHARS];
    int n = 0;
    if (n_chars > WPM_MAX_CHARS || len > 4 * WPM_MAX_CHARS) goto unk;
    memcpy(buf, "\xe2\x96\x81", 3);
    memcpy(buf + 3, w, len);
    for (size_t start = 0; start < len;) {
        int32_t id = -1;
        /* GGUF marks word-initial pieces with "▁": a continuation starting with a literal "▁"
         * from the text would find a word-initial piece, which Hugging Face never does */
        if (start > 0 && len - start >= 3 && !memcmp(w + start, "\xe2\x96\x81", 3)) goto unk;
        size_t end = len, lim = start + t->max_token_len - (start == 0 ? 3 : 0);
        if (t->max_token_len < 3) lim = start;
        if (end > lim) end = lim;
        for (; end > start; end--) {
            if (end < len && ((uint8_t)w[end] & 0xc0) == 0x80) continue; /* mid-character */
            /* the first piece is looked up with its "▁" */
            id = start == 0 ? tok_map_find(t, buf, 3 + end)
                            : tok_map_find(t, w + start, end - start);
            if (id >= 0) break;
        }
        if (id < 0) goto unk;
        ids[n++] = id;
        start = end;
    }
    for (int i = 0; i < n; i++)
        tok_out_push(o, ids[i]);
    return;
unk:
    if (t->unk >= 0) tok_out_push(o, t->unk);
}

/* Appends the UTF-8 of cp to o->buf at *n (room was reserved by the caller). */
static void put_cp(tok_out *o, size_t *n, int32_t cp)
{
    *n += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o->buf + *n);
}

/* Tokenizes one raw fragment. */
void tok_wpm_encode(const tok *t, const char *s, size_t len, tok_out *o)
{
    /* normalize into o->buf: each input byte yields at most 3 characters of 4 bytes after
     * decomposition (bounded below by the check on each append) */
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += tok_utf8_decode(s + i, len - i, &cp);
        if (cp == 0 || cp == 0xfffd || wpm_is_control((int32_t)cp)) continue;
        if (!tok_out_buf(o, n + 3 * 4 * 8 + 8)) {
            o->oom = true;
            return;
        }
        if (wpm_is_space((int32_t)cp)) {
            o->buf[n++] = ' ';
            continue;
        }
        if (wpm_is_cjk((int32_t)cp)) {
            o->buf[n++] = ' ';
            put_cp(o, &n, (int32_t)cp);
            o->buf[n++] = ' ';
            continue;
        }
        utf8proc_int32_t d[8];
        int bound = 0;
        utf8proc_ssize_t nd =
            utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_DECOMPOSE, &bound);
        if (nd < 0 || nd > 8) d[0] = (utf8proc_int32_t)cp, nd = 1;
        for (utf8proc_ssize_t k = 0; k < nd; k++)
            if (utf8proc_category(d[k]) != UTF8PROC_CATEGORY_MN)
                put_cp(o, &n, utf8proc_tolower(d[k]));
    }
    /* split on spaces; punctuation characters are words of their own */
    size_t w = 0, chars = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tok_utf8_decode(o->buf + i, n - i, &cp);
        bool sp = wpm_is_space((int32_t)cp), pu = !sp && wpm_is_punct((int32_t)cp);
        if (sp || pu) {
            if (i > w) wpm_word(t, o->buf + w, i - w, chars, o);
            if (pu) wpm_word(t, o->buf + i, l, 1, o);
            w = i + l;
            chars = 0;
        } else {
            chars++;
        }
        i += l;
    }
    if (n > w) wpm_word(t, o->buf + w, n - w, chars, o);
}
