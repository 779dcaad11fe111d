/* grammar/regex.c: regular expressions (the common subset of ECMAScript and Python `re`)
 * into automaton fragments.
 *
 * Supported: literals (UTF-8), '.', classes [..] with ranges and negation, \d \w \s and
 * their negations (ASCII digits and word characters, Unicode spaces, as ECMAScript),
 * escapes \n \r \t \f \v \0 \xHH \uHHHH \u{H..}, groups ( ) (?: ) (?P<n> ) (?<n> ),
 * alternation, * + ? {n} {n,} {n,m} (lazy forms are the same language), and ^ / $ at the
 * start / end of the expression (or of a top-level branch). Refused by name (KL_EUNSUP):
 * lookaround, backreferences, word boundaries, inline flags, possessive quantifiers,
 * Unicode properties, anchors elsewhere.
 *
 * A regex is matched by automaton, never by backtracking, so "catastrophic" patterns like
 * (a+)+b cost nothing special; what can be large is the automaton (a{1000}{1000}), which
 * the builder's state cap and budget bound. A quantified atom is re-parsed for each copy
 * (its source span is remembered), so nothing but the builder holds the expression. */
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

typedef struct rx {
    nfa *b;
    const char *s;
    size_t n, i;
    bool json;   /* characters as they appear inside a JSON string */
    bool search; /* unanchored branch ends match anything */
    int depth, max_depth;
} rx;

static frag parse_alt(rx *r, bool top);

static frag fail(rx *r, int code, const char *what)
{
    nfa_fail(r->b, code, "regex: %s at offset %zu", what, r->i);
    return FRAG_ERR;
}

/* ---- character sets ---- */

typedef struct cset {
    cprange *r;
    int n, cap;
} cset;

static bool cs_add(rx *rx_, cset *c, uint32_t lo, uint32_t hi)
{
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        if (cap > 1 << 20) return fail(rx_, KL_ERANGE, "character class too large"), false;
        cprange *p = realloc(c->r, sizeof *p * (size_t)cap);
        if (!p) return nfa_fail(rx_->b, KL_ENOMEM, "out of memory"), false;
        c->r = p;
        c->cap = cap;
    }
    c->r[c->n++] = (cprange){lo, hi};
    return true;
}

static const cprange SPACES[] = {
    {0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
static const cprange DIGITS[] = {{'0', '9'}};
static const cprange WORD[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};

/* Adds the ranges, or their complement. */
static bool cs_add_class(rx *r, cset *c, const cprange *k, int n, bool neg)
{
    if (!neg) {
        for (int i = 0; i < n; i++)
            if (!cs_add(r, c, k[i].lo, k[i].hi)) return false;
        return true;
    }
    cprange tmp[16], out[17];
    memcpy(tmp, k, sizeof *k * (size_t)n);
    int m = cp_complement(tmp, cp_normalize(tmp, n), out);
    for (int i = 0; i < m; i++)
        if (!cs_add(r, c, out[i].lo, out[i].hi)) return false;
    return true;
}

/* Emits the set: as UTF-8, or in JSON mode with '"', '\' and controls escaped. */
static frag cs_emit(rx *r, cset *c)
{
    nfa *b = r->b;
    int n = cp_normalize(c->r, c->n);
    if (!r->json) return fr_cps(b, c->r, n);
    frag alt = fr_alt_new(b);
    cset plain = {0};
    for (int i = 0; i < n && !b->rc; i++) {
        for (uint32_t x = c->r[i].lo; x <= c->r[i].hi && x < 0x20; x++) {
            static const char *named[32] = {
                [8] = "\\b", [9] = "\\t", [10] = "\\n", [12] = "\\f", [13] = "\\r"};
            char e[8];
            if (named[x]) {
                memcpy(e, named[x], 2);
            } else {
                static const char hex[] = "0123456789abcdef";
                memcpy(e, "\\u00", 4);
                e[4] = hex[x >> 4];
                e[5] = hex[x & 15];
            }
            fr_alt_add(b, alt, fr_lit(b, e, named[x] ? 2 : 6));
        }
        uint32_t lo = c->r[i].lo < 0x20 ? 0x20 : c->r[i].lo;
        for (uint32_t x = lo; x <= c->r[i].hi;) {
            /* cut out '"' and '\' */
            uint32_t stop = x <= '"' && c->r[i].hi >= '"'     ? '"'
                            : x <= '\\' && c->r[i].hi >= '\\' ? '\\'
                                                              : c->r[i].hi + 1;
            if (stop > x && !cs_add(r, &plain, x, stop - 1)) break;
            if (stop > c->r[i].hi) break;
            fr_alt_add(b, alt, fr_lit(b, stop == '"' ? "\\\"" : "\\\\", 2));
            x = stop + 1;
        }
    }
    if (plain.n) fr_alt_add(b, alt, fr_cps(b, plain.r, plain.n));
    free(plain.r);
    return b->rc ? FRAG_ERR : alt;
}

/* ---- lexing ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* n hex digits at r->i; -1 if not. */
static int64_t hexn(rx *r, int n)
{
    int64_t v = 0;
    for (int k = 0; k < n; k++) {
        if (r->i >= r->n || hexval(r->s[r->i]) < 0) return -1;
        v = v * 16 + hexval(r->s[r->i++]);
    }
    return v;
}

/* One UTF-8 character at r->i. -1 if malformed. */
static int64_t next_cp(rx *r)
{
    const unsigned char *u = (const unsigned char *)r->s;
    unsigned c = u[r->i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || r->i + (size_t)len > r->n) return -1;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) {
        if ((u[r->i + (size_t)k] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (u[r->i + (size_t)k] & 0x3F);
    }
    r->i += (size_t)len;
    return cp;
}

enum { ESC_CP, ESC_CLASS };

/* An escape after '\' (r->i past the backslash): a code point (*cp) or a class added to
 * *cls. Returns ESC_CP, ESC_CLASS, or -1 after failing. in_class: inside [..]. */
static int escape(rx *r, cset *cls, uint32_t *cp, bool in_class)
{
    if (r->i >= r->n) return fail(r, KL_EINVAL, "trailing backslash"), -1;
    char ch = r->s[r->i++];
    switch (ch) {
    case 'd':
    case 'D':
        return cs_add_class(r, cls, DIGITS, 1, ch == 'D') ? ESC_CLASS : -1;
    case 'w':
    case 'W':
        return cs_add_class(r, cls, WORD, 4, ch == 'W') ? ESC_CLASS : -1;
    case 's':
    case 'S':
        return cs_add_class(r, cls, SPACES, 10, ch == 'S') ? ESC_CLASS : -1;
    case 'n':
        *cp = '\n';
        return ESC_CP;
    case 'r':
        *cp = '\r';
        return ESC_CP;
    case 't':
        *cp = '\t';
        return ESC_CP;
    case 'f':
        *cp = '\f';
        return ESC_CP;
    case 'v':
        *cp = '\v';
        return ESC_CP;
    case '0':
        *cp = 0;
        return ESC_CP;
    case 'x': {
        int64_t v = hexn(r, 2);
        if (v < 0) return fail(r, KL_EINVAL, "bad \\x escape"), -1;
        *cp = (uint32_t)v;
        return ESC_CP;
    }
    case 'u': {
        int64_t v;
        if (r->i < r->n && r->s[r->i] == '{') {
            r->i++;
            v = 0;
            int digits = 0;
            while (r->i < r->n && r->s[r->i] != '}' && digits < 7) {
                int h = hexval(r->s[r->i++]);
                if (h < 0) return fail(r, KL_EINVAL, "bad \\u{} escape"), -1;
                v = v * 16 + h;
                digits++;
            }
            if (r->i >= r->n || r->s[r->i] != '}' || !digits)
                return fail(r, KL_EINVAL, "bad \\u{} escape"), -1;
            r->i++;
        } else {
            v = hexn(r, 4);
        }
        if (v < 0 || v > 0x10FFFF) return fail(r, KL_EINVAL, "bad \\u escape"), -1;
        if (v >= 0xD800 && v <= 0xDFFF)
            return fail(r, KL_EUNSUP, "surrogate escapes are not supported"), -1;
        *cp = (uint32_t)v;
        return ESC_CP;
    }
    case 'b':
        if (in_class) {
            *cp = '\b';
            return ESC_CP;
        }
        return fail(r, KL_EUNSUP, "word boundaries (\\b) are not supported"), -1;
    case 'B':
    case 'A':
    case 'Z':
    case 'z':
    case 'G':
        return fail(r, KL_EUNSUP, "anchors other than ^ and $ are not supported"), -1;
    case 'p':
    case 'P':
        return fail(r, KL_EUNSUP, "Unicode properties (\\p) are not supported"), -1;
    case 'k':
        return fail(r, KL_EUNSUP, "backreferences are not supported"), -1;
    default:
        if (ch >= '1' && ch <= '9')
            return fail(r, KL_EUNSUP, "backreferences are not supported"), -1;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
            return fail(r, KL_EINVAL, "unknown escape"), -1;
        r->i--;
        {
            int64_t v = next_cp(r);
            if (v < 0) return fail(r, KL_EINVAL, "invalid UTF-8"), -1;
            *cp = (uint32_t)v;
        }
        return ESC_CP;
    }
}

/* [..] at r->i (past '['). */
static frag parse_class(rx *r)
{
    cset c = {0};
    bool neg = false;
    if (r->i < r->n && r->s[r->i] == '^') neg = true, r->i++;
    bool first = true;
    while (!r->b->rc) {
        if (r->i >= r->n) {
            free(c.r);
            return fail(r, KL_EINVAL, "unterminated character class");
        }
        char ch = r->s[r->i];
        if (ch == ']' && !first) {
            r->i++;
            break;
        }
        first = false;
        uint32_t lo;
        if (ch == '\\') {
            r->i++;
            int k = escape(r, &c, &lo, true);
            if (k < 0) break;
            if (k == ESC_CLASS) continue;
        } else {
            int64_t v = next_cp(r);
            if (v < 0) {
                fail(r, KL_EINVAL, "invalid UTF-8");
                break;
            }
            lo = (uint32_t)v;
        }
        uint32_t hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            if (r->s[r->i] == '\\') {
                r->i++;
                cset dummy = {0};
                int k = escape(r, &dummy, &hi, true);
                free(dummy.r);
                if (k < 0) break;
                if (k == ESC_CLASS) {
                    fail(r, KL_EINVAL, "a class cannot end a range");
                    break;
                }
            } else {
                int64_t v = next_cp(r);
                if (v < 0) {
                    fail(r, KL_EINVAL, "invalid UTF-8");
                    break;
                }
                hi = (uint32_t)v;
            }
            if (hi < lo) {
                fail(r, KL_EINVAL, "range out of order");
                break;
            }
        }
        if (!cs_add(r, &c, lo, hi)) break;
    }
    if (r->b->rc) {
        free(c.r);
        return FRAG_ERR;
    }
    if (neg) {
        int n = cp_normalize(c.r, c.n);
        cprange *out = malloc(sizeof *out * (size_t)(n + 1));
        if (!out) {
            free(c.r);
            return nfa_fail(r->b, KL_ENOMEM, "out of memory"), FRAG_ERR;
        }
        int m = cp_complement(c.r, n, out);
        free(c.r);
        c.r = out;
        c.n = m;
        c.cap = n + 1;
    }
    frag f = cs_emit(r, &c);
    free(c.r);
    return f;
}

/* One atom at r->i. */
static frag parse_atom(rx *r)
{
    nfa *b = r->b;
    char ch = r->s[r->i];
    if (ch == '(') {
        r->i++;
        if (r->i < r->n && r->s[r->i] == '?') {
            r->i++;
            if (r->i < r->n && r->s[r->i] == ':') {
                r->i++;
            } else if (r->i + 1 < r->n && (r->s[r->i] == 'P' || r->s[r->i] == '<') &&
                       r->s[r->i + (r->s[r->i] == 'P')] == '<' && r->s[r->i + 1] != '=' &&
                       r->s[r->i + 1] != '!') {
                r->i += r->s[r->i] == 'P' ? 2 : 1;
                while (r->i < r->n && r->s[r->i] != '>')
                    r->i++;
                if (r->i >= r->n) return fail(r, KL_EINVAL, "unterminated group name");
                r->i++;
            } else if (r->i < r->n &&
                       (r->s[r->i] == '=' || r->s[r->i] == '!' || r->s[r->i] == '<')) {
                return fail(r, KL_EUNSUP, "lookaround is not supported");
            } else {
                return fail(r, KL_EUNSUP, "inline flags and (?...) groups are not supported");
            }
        }
        if (++r->depth > r->max_depth) return fail(r, KL_ERANGE, "groups nested too deep");
        frag f = parse_alt(r, false);
        r->depth--;
        if (r->i >= r->n || r->s[r->i] != ')') return fail(r, KL_EINVAL, "missing )");
        r->i++;
        return f;
    }
    if (ch == '[') {
        r->i++;
        return parse_class(r);
    }
    cset c = {0};
    uint32_t cp;
    if (ch == '.') {
        r->i++;
        cs_add(r, &c, 0, '\n' - 1);
        cs_add(r, &c, '\n' + 1, 0x10FFFF);
    } else if (ch == '\\') {
        r->i++;
        int k = escape(r, &c, &cp, false);
        if (k < 0) {
            free(c.r);
            return FRAG_ERR;
        }
        if (k == ESC_CP) cs_add(r, &c, cp, cp);
    } else if (ch == '*' || ch == '+' || ch == '?') {
        return fail(r, KL_EINVAL, "nothing to repeat");
    } else {
        int64_t v = next_cp(r);
        if (v < 0) return fail(r, KL_EINVAL, "invalid UTF-8");
        cs_add(r, &c, (uint32_t)v, (uint32_t)v);
    }
    frag f = b->rc ? FRAG_ERR : cs_emit(r, &c);
    free(c.r);
    return f;
}

/* Parses "{n}", "{n,}", "{n,m}" at r->i; false (r->i unchanged) when it is not one, so the
 * '{' is a literal (as in Python). */
static bool parse_braces(rx *r, int64_t *min, int64_t *max)
{
    size_t i = r->i + 1;
    int64_t a = 0, z = -1;
    int digits = 0;
    while (i < r->n && r->s[i] >= '0' && r->s[i] <= '9' && digits < 9)
        a = a * 10 + (r->s[i++] - '0'), digits++;
    if (!digits) return false;
    if (i < r->n && r->s[i] == '}') {
        z = a;
    } else if (i < r->n && r->s[i] == ',') {
        i++;
        int d2 = 0;
        int64_t v = 0;
        while (i < r->n && r->s[i] >= '0' && r->s[i] <= '9' && d2 < 9)
            v = v * 10 + (r->s[i++] - '0'), d2++;
        if (d2) z = v;
        if (i >= r->n || r->s[i] != '}') return false;
    } else {
        return false;
    }
    r->i = i + 1;
    *min = a;
    *max = z;
    return true;
}

typedef struct regen {
    rx *r;
    size_t at;
} regen;

/* A fresh copy of the atom starting at g->at. */
static frag regen_atom(nfa *b, void *ctx)
{
    regen *g = ctx;
    rx copy = *g->r;
    copy.i = g->at;
    (void)b;
    return parse_atom(&copy);
}

/* A sequence up to '|' or ')' or the end. At top level, ^ and $ anchor its ends. */
static frag parse_seq(rx *r, bool top)
{
    nfa *b = r->b;
    frag f = fr_empty(b);
    bool anch_start = false, anch_end = false;
    if (r->i < r->n && r->s[r->i] == '^') {
        if (!top) return fail(r, KL_EUNSUP, "^ inside a group is not supported");
        r->i++;
        anch_start = true;
    }
    while (r->i < r->n && !b->rc) {
        char ch = r->s[r->i];
        if (ch == '|' || ch == ')') break;
        if (ch == '$') {
            r->i++;
            if (top && (r->i == r->n || r->s[r->i] == '|')) {
                anch_end = true;
                break;
            }
            return fail(r, KL_EUNSUP, "$ before the end is not supported");
        }
        if (ch == '^') return fail(r, KL_EUNSUP, "^ after the start is not supported");
        size_t at = r->i;
        frag a = parse_atom(r);
        if (r->i < r->n) {
            char q = r->s[r->i];
            int64_t min = -2, max = -1;
            if (q == '*')
                min = 0, max = -1, r->i++;
            else if (q == '+')
                min = 1, max = -1, r->i++;
            else if (q == '?')
                min = 0, max = 1, r->i++;
            else if (q == '{' && !parse_braces(r, &min, &max))
                min = -2;
            if (min != -2) {
                if (r->i < r->n && r->s[r->i] == '?') r->i++; /* lazy: same language */
                if (r->i < r->n && r->s[r->i] == '+')
                    return fail(r, KL_EUNSUP, "possessive quantifiers are not supported");
                if (r->i < r->n && (r->s[r->i] == '*' || r->s[r->i] == '+' || r->s[r->i] == '?' ||
                                    (r->s[r->i] == '{' && r->i + 1 < r->n &&
                                     r->s[r->i + 1] >= '0' && r->s[r->i + 1] <= '9')))
                    return fail(r, KL_EINVAL, "multiple repeat");
                if (max >= 0 && max < min) return fail(r, KL_EINVAL, "repetition out of order");
                regen g = {r, at};
                a = fr_repeat_first(b, a, regen_atom, &g, min, max);
            }
        }
        f = fr_seq(b, f, a);
    }
    if (top && r->search) {
        cset any = {0};
        cs_add(r, &any, 0, 0x10FFFF);
        if (!anch_start) f = fr_seq(b, fr_star(b, cs_emit(r, &any)), f);
        if (!anch_end) f = fr_seq(b, f, fr_star(b, cs_emit(r, &any)));
        free(any.r);
    }
    return b->rc ? FRAG_ERR : f;
}

static frag parse_alt(rx *r, bool top)
{
    nfa *b = r->b;
    frag first = parse_seq(r, top);
    if (r->i >= r->n || r->s[r->i] != '|') return first;
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, first);
    while (r->i < r->n && r->s[r->i] == '|' && !b->rc) {
        r->i++;
        fr_alt_add(b, alt, parse_seq(r, top));
    }
    return b->rc ? FRAG_ERR : alt;
}

frag rx_compile(nfa *b, const char *re, size_t len, bool json, bool search, int max_depth)
{
    rx r = {b, re, len, 0, json, search, 0, max_depth};
    frag f = parse_alt(&r, true);
    if (!b->rc && r.i < r.n) return fail(&r, KL_EINVAL, "unbalanced )");
    return f;
}
