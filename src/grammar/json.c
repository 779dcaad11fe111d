/* grammar/json.c: pieces of JSON as automaton fragments, for the generic JSON grammar and
 * the schema compiler.
 *
 * The text produced is always valid JSON (RFC 8259) in UTF-8: strings hold well-formed
 * UTF-8 and escapes (\u escapes never name a surrogate, so every escape is one character),
 * numbers have at most 16 integer digits, 16 fraction digits and 3 exponent digits (a model
 * cannot write digits forever), and whitespace between tokens is bounded the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

frag js_ws(nfa *b)
{
    /* "" | " " | "\n" [ \t]{0,20} */
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, fr_empty(b));
    fr_alt_add(b, alt, fr_lit(b, " ", 1));
    frag indent = fr_empty(b);
    int32_t end = nfa_state(b), cur = indent.e;
    for (int i = 0; i < 20 && !b->rc; i++) {
        int32_t nx = nfa_state(b);
        nfa_eps(b, cur, end);
        nfa_bytes(b, cur, nx, ' ', ' ');
        nfa_bytes(b, cur, nx, '\t', '\t');
        cur = nx;
    }
    nfa_eps(b, cur, end);
    fr_alt_add(b, alt, fr_seq(b, fr_lit(b, "\n", 1), (frag){indent.s, end}));
    return b->rc ? FRAG_ERR : alt;
}

static frag hex_digit(nfa *b)
{
    frag f = fr_alt_new(b);
    fr_alt_add(b, f, fr_bytes(b, '0', '9'));
    fr_alt_add(b, f, fr_bytes(b, 'a', 'f'));
    fr_alt_add(b, f, fr_bytes(b, 'A', 'F'));
    return f;
}

/* \uXXXX that is not a surrogate (D800-DFFF). */
static frag u_escape(nfa *b)
{
    frag first = fr_lit(b, "\\u", 2), alt = fr_alt_new(b);
    /* [0-9A-Ca-c] xxx | [Dd] [0-7] xx | [EeFf] xxx */
    frag a = fr_alt_new(b);
    fr_alt_add(b, a, fr_bytes(b, '0', '9'));
    fr_alt_add(b, a, fr_bytes(b, 'A', 'C'));
    fr_alt_add(b, a, fr_bytes(b, 'a', 'c'));
    fr_alt_add(b, a, fr_bytes(b, 'E', 'F'));
    fr_alt_add(b, a, fr_bytes(b, 'e', 'f'));
    fr_alt_add(b, alt,
               fr_seq(b, a, fr_seq(b, hex_digit(b), fr_seq(b, hex_digit(b), hex_digit(b)))));
    frag d = fr_alt_new(b);
    fr_alt_add(b, d, fr_bytes(b, 'D', 'D'));
    fr_alt_add(b, d, fr_bytes(b, 'd', 'd'));
    fr_alt_add(
        b, alt,
        fr_seq(b, d, fr_seq(b, fr_bytes(b, '0', '7'), fr_seq(b, hex_digit(b), hex_digit(b)))));
    return fr_seq(b, first, alt);
}

/* One character of a JSON string: unescaped (not '"', '\' or a control character) or an
 * escape. */
static frag js_char(nfa *b, void *ctx)
{
    (void)ctx;
    static const cprange plain[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, fr_cps(b, plain, 3));
    frag esc = fr_alt_new(b);
    static const char simple[] = "\"\\/bfnrt";
    for (int i = 0; simple[i]; i++) {
        char two[2] = {'\\', simple[i]};
        fr_alt_add(b, esc, fr_lit(b, two, 2));
    }
    fr_alt_add(b, esc, u_escape(b));
    fr_alt_add(b, alt, esc);
    return alt;
}

frag js_string(nfa *b, int64_t min, int64_t max)
{
    frag q = fr_lit(b, "\"", 1);
    frag body = fr_repeat(b, js_char, NULL, min, max);
    return fr_seq(b, q, fr_seq(b, body, fr_lit(b, "\"", 1)));
}

frag js_string_regex(nfa *b, const char *re, size_t len, int depth_left)
{
    frag q = fr_lit(b, "\"", 1);
    frag body = rx_compile(b, re, len, true, true, depth_left);
    return fr_seq(b, q, fr_seq(b, body, fr_lit(b, "\"", 1)));
}

/* ---- strings other than some names ---- */

typedef struct xnode {
    uint32_t cp;   /* the character leading here */
    int32_t first; /* first child, -1 */
    int32_t next;  /* next sibling, -1 */
    bool terminal; /* a name ends here */
} xnode;

/* Decodes one UTF-8 character from s[*i..n); -1 if malformed. */
static int64_t utf8_next(const char *s, size_t n, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[*i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || *i + (size_t)len > n) return -1;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) {
        if ((u[*i + (size_t)k] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (u[*i + (size_t)k] & 0x3F);
    }
    *i += (size_t)len;
    return cp;
}

static bool plain_cp(uint32_t cp)
{
    return cp >= 0x20 && cp != '"' && cp != '\\' && (cp < 0xD800 || cp > 0xDFFF) && cp <= 0x10FFFF;
}

/* Plain characters minus the listed ones (sorted ascending, distinct). */
static frag plain_except(nfa *b, const uint32_t *cps, int n)
{
    static const cprange base[] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
    cprange *out = malloc(sizeof *out * (size_t)(n + 4));
    if (!out) return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    int k = 0, j = 0;
    for (int r = 0; r < 3; r++) {
        uint32_t cur = base[r].lo;
        for (; j < n && cps[j] <= base[r].hi; j++) {
            if (cps[j] < cur) continue;
            if (cps[j] > cur) out[k++] = (cprange){cur, cps[j] - 1};
            cur = cps[j] + 1;
        }
        if (cur <= base[r].hi) out[k++] = (cprange){cur, base[r].hi};
    }
    frag f = fr_cps(b, out, k);
    free(out);
    return f;
}

frag js_string_except(nfa *b, const char *const *names, const size_t *lens, int n)
{
    xnode *t = malloc(sizeof *t);
    int32_t nt = 1, cap = 1;
    if (!t) return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    t[0] = (xnode){0, -1, -1, false};
    for (int i = 0; i < n && !b->rc; i++) {
        int32_t cur = 0;
        size_t p = 0;
        bool ok = true;
        while (p < lens[i]) {
            int64_t cp = utf8_next(names[i], lens[i], &p);
            if (cp < 0 || !plain_cp((uint32_t)cp)) {
                ok = false; /* written with an escape: an unescaped key never equals it */
                break;
            }
            int32_t c = t[cur].first;
            while (c >= 0 && t[c].cp != (uint32_t)cp)
                c = t[c].next;
            if (c < 0) {
                if (nt == cap) {
                    cap *= 2;
                    xnode *q = realloc(t, sizeof *q * (size_t)cap);
                    if (!q) {
                        free(t);
                        return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
                    }
                    t = q;
                }
                t[nt] = (xnode){(uint32_t)cp, -1, t[cur].first, false};
                t[cur].first = nt;
                c = nt++;
            }
            cur = c;
            if (nfa_tick(b, 1)) break;
        }
        if (ok) t[cur].terminal = true;
    }
    /* states: one per trie node, plus "free" (left the trie); accept at non-terminal nodes
     * and in free */
    int32_t *st = malloc(sizeof *st * (size_t)nt);
    frag q0 = fr_lit(b, "\"", 1);
    int32_t fin = nfa_state(b), fre = nfa_state(b);
    if (!st) {
        free(t);
        return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    }
    for (int32_t i = 0; i < nt; i++)
        st[i] = nfa_state(b);
    nfa_eps(b, q0.e, st[0]);
    frag any = fr_cps(b, (const cprange[]){{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}}, 3);
    nfa_eps(b, fre, any.s);
    nfa_eps(b, any.e, fre);
    frag close = fr_lit(b, "\"", 1);
    nfa_eps(b, close.e, fin);
    nfa_eps(b, fre, close.s);
    uint32_t *kids = malloc(sizeof *kids * (size_t)(nt + 1));
    for (int32_t i = 0; i < nt && !b->rc && kids; i++) {
        int nk = 0;
        for (int32_t c = t[i].first; c >= 0; c = t[c].next) {
            char u[4];
            int l = utf8_put(t[c].cp, u);
            frag x = fr_lit(b, u, (size_t)l);
            nfa_eps(b, st[i], x.s);
            nfa_eps(b, x.e, st[c]);
            kids[nk++] = t[c].cp;
        }
        /* sorted for plain_except */
        for (int a = 1; a < nk; a++)
            for (int z = a; z > 0 && kids[z - 1] > kids[z]; z--) {
                uint32_t tmp = kids[z];
                kids[z] = kids[z - 1];
                kids[z - 1] = tmp;
            }
        frag other = plain_except(b, kids, nk);
        nfa_eps(b, st[i], other.s);
        nfa_eps(b, other.e, fre);
        if (!t[i].terminal) nfa_eps(b, st[i], close.s);
    }
    if (!kids) nfa_fail(b, KL_ENOMEM, "out of memory");
    free(kids);
    free(st);
    free(t);
    return b->rc ? FRAG_ERR : (frag){q0.s, fin};
}

/* ---- numbers ---- */

static frag digit(nfa *b, void *ctx)
{
    (void)ctx;
    return fr_bytes(b, '0', '9');
}

/* 0 | [1-9][0-9]{0,15} */
static frag uint_part(nfa *b)
{
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, fr_lit(b, "0", 1));
    fr_alt_add(b, alt, fr_seq(b, fr_bytes(b, '1', '9'), fr_repeat(b, digit, NULL, 0, 15)));
    return alt;
}

frag js_integer(nfa *b)
{
    return fr_seq(b, fr_opt(b, fr_lit(b, "-", 1)), uint_part(b));
}

frag js_number(nfa *b)
{
    frag f = js_integer(b);
    f = fr_seq(b, f, fr_opt(b, fr_seq(b, fr_lit(b, ".", 1), fr_repeat(b, digit, NULL, 1, 16))));
    frag e = fr_alt_new(b);
    fr_alt_add(b, e, fr_bytes(b, 'e', 'e'));
    fr_alt_add(b, e, fr_bytes(b, 'E', 'E'));
    frag sign = fr_alt_new(b);
    fr_alt_add(b, sign, fr_bytes(b, '+', '+'));
    fr_alt_add(b, sign, fr_bytes(b, '-', '-'));
    frag ex = fr_seq(b, e, fr_seq(b, fr_opt(b, sign), fr_repeat(b, digit, NULL, 1, 3)));
    return fr_seq(b, f, fr_opt(b, ex));
}

#define INT_DIGITS 16 /* integers are at most 16 digits (js_integer) */

/* Decimal strings of equal length n in [a, b] (digit strings, a <= b), added to alt. */
static void same_len(nfa *bd, frag alt, const char *a, const char *b, int n)
{
    if (bd->rc) return;
    if (!n) {
        fr_alt_add(bd, alt, fr_empty(bd));
        return;
    }
    if (a[0] == b[0]) {
        frag rest = fr_alt_new(bd);
        same_len(bd, rest, a + 1, b + 1, n - 1);
        fr_alt_add(bd, alt, fr_seq(bd, fr_lit(bd, a, 1), rest));
        return;
    }
    char nines[INT_DIGITS + 1], zeros[INT_DIGITS + 1];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    bool a_low = !memcmp(a + 1, zeros, (size_t)n - 1);  /* a = d00..0 */
    bool b_high = !memcmp(b + 1, nines, (size_t)n - 1); /* b = d99..9 */
    char lo = a_low ? a[0] : (char)(a[0] + 1), hi = b_high ? b[0] : (char)(b[0] - 1);
    if (!a_low) {
        frag rest = fr_alt_new(bd);
        same_len(bd, rest, a + 1, nines, n - 1);
        fr_alt_add(bd, alt, fr_seq(bd, fr_lit(bd, a, 1), rest));
    }
    if (lo <= hi)
        fr_alt_add(bd, alt,
                   fr_seq(bd, fr_bytes(bd, (uint8_t)lo, (uint8_t)hi),
                          fr_repeat(bd, digit, NULL, n - 1, n - 1)));
    if (!b_high) {
        frag rest = fr_alt_new(bd);
        same_len(bd, rest, zeros, b + 1, n - 1);
        fr_alt_add(bd, alt, fr_seq(bd, fr_lit(bd, b, 1), rest));
    }
}

/* Non-negative integers in [lo, hi] (hi < 10^16) without leading zeros, added to alt. */
static void uint_range(nfa *b, frag alt, uint64_t lo, uint64_t hi)
{
    uint64_t p = 1;
    for (int len = 1; len <= INT_DIGITS && !b->rc; len++, p *= 10) {
        uint64_t a = len == 1 ? 0 : p, z = p * 10 - 1;
        if (a < lo) a = lo;
        if (z > hi) z = hi;
        if (a > z) continue;
        char sa[INT_DIGITS + 2], sz[INT_DIGITS + 2];
        snprintf(sa, sizeof sa, "%0*llu", len, (unsigned long long)a);
        snprintf(sz, sizeof sz, "%0*llu", len, (unsigned long long)z);
        same_len(b, alt, sa, sz, len);
    }
}

frag js_integer_range(nfa *b, bool has_lo, int64_t lo, bool has_hi, int64_t hi)
{
    const int64_t cap = 9999999999999999LL; /* the largest 16-digit integer */
    if (!has_lo || lo < -cap) lo = -cap;
    if (!has_hi || hi > cap) hi = cap;
    if (lo > hi)
        return nfa_fail(b, KL_EINVAL, "no integer is in [%lld, %lld]", (long long)lo,
                        (long long)hi),
               FRAG_ERR;
    frag alt = fr_alt_new(b);
    if (hi >= 0) uint_range(b, alt, (uint64_t)(lo > 0 ? lo : 0), (uint64_t)hi);
    if (lo < 0) { /* -(magnitudes in [max(1, -hi), -lo]) */
        frag neg = fr_alt_new(b);
        uint_range(b, neg, (uint64_t)(hi < -1 ? -hi : 1), (uint64_t)-lo);
        fr_alt_add(b, alt, fr_seq(b, fr_lit(b, "-", 1), neg));
    }
    return b->rc ? FRAG_ERR : alt;
}

/* ---- any JSON ---- */

static frag member(nfa *b, int32_t value)
{
    frag k = js_string(b, 0, -1);
    return fr_seq(
        b, k,
        fr_seq(b, js_ws(b), fr_seq(b, fr_lit(b, ":", 1), fr_seq(b, js_ws(b), fr_call(b, value)))));
}

/* "{" ws (member (ws "," ws member)* ws)? "}" with the member's value a call of value. */
static frag object_of(nfa *b, int32_t value)
{
    frag body = fr_seq(
        b, member(b, value),
        fr_star(b, fr_seq(b, js_ws(b),
                          fr_seq(b, fr_lit(b, ",", 1), fr_seq(b, js_ws(b), member(b, value))))));
    body = fr_opt(b, fr_seq(b, body, js_ws(b)));
    return fr_seq(b, fr_seq(b, fr_lit(b, "{", 1), js_ws(b)), fr_seq(b, body, fr_lit(b, "}", 1)));
}

static frag array_of(nfa *b, int32_t value)
{
    frag body = fr_seq(
        b, fr_call(b, value),
        fr_star(b, fr_seq(b, js_ws(b),
                          fr_seq(b, fr_lit(b, ",", 1), fr_seq(b, js_ws(b), fr_call(b, value))))));
    body = fr_opt(b, fr_seq(b, body, js_ws(b)));
    return fr_seq(b, fr_seq(b, fr_lit(b, "[", 1), js_ws(b)), fr_seq(b, body, fr_lit(b, "]", 1)));
}

/* The rules json-value, json-object, json-array, made once per builder. */
static int32_t any_rules(nfa *b, int32_t *object)
{
    int32_t value = nfa_rule_find(b, "json-value", 10);
    if (value >= 0) {
        *object = nfa_rule_find(b, "json-object", 11);
        return value;
    }
    value = nfa_rule(b, "json-value", 10);
    int32_t obj = nfa_rule(b, "json-object", 11), arr = nfa_rule(b, "json-array", 10);
    if (b->rc) return -1;
    frag v = fr_alt_new(b);
    fr_alt_add(b, v, fr_call(b, obj));
    fr_alt_add(b, v, fr_call(b, arr));
    fr_alt_add(b, v, js_string(b, 0, -1));
    fr_alt_add(b, v, js_number(b));
    fr_alt_add(b, v, fr_lit(b, "true", 4));
    fr_alt_add(b, v, fr_lit(b, "false", 5));
    fr_alt_add(b, v, fr_lit(b, "null", 4));
    nfa_rule_define(b, value, v);
    nfa_rule_define(b, obj, object_of(b, value));
    nfa_rule_define(b, arr, array_of(b, value));
    *object = obj;
    return b->rc ? -1 : value;
}

frag js_any_value(nfa *b)
{
    int32_t obj;
    int32_t v = any_rules(b, &obj);
    return v < 0 ? FRAG_ERR : fr_call(b, v);
}

frag js_any_object(nfa *b)
{
    int32_t obj;
    if (any_rules(b, &obj) < 0) return FRAG_ERR;
    return fr_call(b, obj);
}
