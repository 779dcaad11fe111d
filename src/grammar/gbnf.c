/* grammar/gbnf.c: llama.cpp's GBNF grammars (grammars/README.md in llama.cpp) into the
 * builder: `name ::= alternatives` rules (names of [a-zA-Z0-9-]), "literals" and [classes]
 * of code points (with ^ negation, ranges, escapes \x \u \U \t \r \n \\ \" \[ \]), `.` (any
 * character), ( groups ), | alternatives, postfix * + ? {m} {m,} {m,n}, # comments. A rule
 * ends at a newline unless inside parentheses or after `|`. The language is the rule root.
 *
 * Differences from llama.cpp, all refusals rather than silent changes: a rule defined twice
 * is an error (llama.cpp keeps the last), left recursion is an error (llama.cpp refuses it
 * too), and so is a reference to a rule never defined. */
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

typedef struct gp {
    nfa *b;
    const char *s;
    size_t n, i;
    int depth, max_depth;
    int line;
} gp;

static frag parse_alts(gp *p, bool nested);

static frag fail(gp *p, int code, const char *what)
{
    nfa_fail(p->b, code, "grammar: %s at line %d", what, p->line);
    return FRAG_ERR;
}

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static void skip_space(gp *p, bool newline_ok)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n' && p->s[p->i] != '\r')
                p->i++;
        } else if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
            if (c == '\n') p->line++;
            p->i++;
        } else {
            break;
        }
    }
}

static int hexv(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One character (escape or UTF-8) at p->i; -1 after failing. */
static int64_t parse_char(gp *p)
{
    if (p->i >= p->n) return fail(p, KL_EINVAL, "unexpected end"), -1;
    const unsigned char *u = (const unsigned char *)p->s;
    if (u[p->i] == '\\') {
        if (p->i + 1 >= p->n) return fail(p, KL_EINVAL, "unexpected end"), -1;
        char e = p->s[p->i + 1];
        p->i += 2;
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            int64_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = p->i < p->n ? hexv(p->s[p->i]) : -1;
                if (h < 0) return fail(p, KL_EINVAL, "bad hex escape"), -1;
                v = v * 16 + h;
                p->i++;
            }
            if (v > 0x10FFFF) return fail(p, KL_EINVAL, "escape beyond Unicode"), -1;
            return v;
        }
        switch (e) {
        case 't':
            return '\t';
        case 'r':
            return '\r';
        case 'n':
            return '\n';
        case '\\':
        case '"':
        case '[':
        case ']':
            return e;
        default:
            return fail(p, KL_EINVAL, "unknown escape"), -1;
        }
    }
    unsigned c = u[p->i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || p->i + (size_t)len > p->n) return fail(p, KL_EINVAL, "invalid UTF-8"), -1;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) {
        if ((u[p->i + (size_t)k] & 0xC0) != 0x80) return fail(p, KL_EINVAL, "invalid UTF-8"), -1;
        cp = (cp << 6) | (u[p->i + (size_t)k] & 0x3F);
    }
    p->i += (size_t)len;
    return cp;
}

static frag cp_frag(gp *p, uint32_t cp)
{
    if (cp >= 0xD800 && cp <= 0xDFFF) return fail(p, KL_EUNSUP, "surrogate code point");
    char u[4];
    return fr_lit(p->b, u, (size_t)utf8_put(cp, u));
}

/* One element at p->i (literal, class, rule reference, group, '.'); leaves p->i after it. */
static frag parse_atom(gp *p, bool nested)
{
    nfa *b = p->b;
    char c = p->s[p->i];
    if (c == '"') {
        p->i++;
        frag f = fr_empty(b);
        while (!b->rc) {
            if (p->i >= p->n) return fail(p, KL_EINVAL, "unterminated literal");
            if (p->s[p->i] == '"') break;
            int64_t cp = parse_char(p);
            if (cp < 0) return FRAG_ERR;
            f = fr_seq(b, f, cp_frag(p, (uint32_t)cp));
        }
        p->i++;
        return f;
    }
    if (c == '[') {
        p->i++;
        bool neg = p->i < p->n && p->s[p->i] == '^';
        if (neg) p->i++;
        cprange *r = NULL;
        int nr = 0, cap = 0;
        while (!b->rc) {
            if (p->i >= p->n) {
                free(r);
                return fail(p, KL_EINVAL, "unterminated character class");
            }
            if (p->s[p->i] == ']') break;
            int64_t lo = parse_char(p), hi = lo;
            if (lo < 0) break;
            if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
                p->i++;
                hi = parse_char(p);
                if (hi < 0) break;
                if (hi < lo) {
                    fail(p, KL_EINVAL, "range out of order");
                    break;
                }
            }
            if (nr == cap) {
                cap = cap ? cap * 2 : 8;
                cprange *q = cap > (1 << 20) ? NULL : realloc(r, sizeof *q * (size_t)cap);
                if (!q) {
                    fail(p, KL_ERANGE, "character class too large");
                    break;
                }
                r = q;
            }
            r[nr++] = (cprange){(uint32_t)lo, (uint32_t)hi};
        }
        if (b->rc) {
            free(r);
            return FRAG_ERR;
        }
        p->i++;
        nr = cp_normalize(r, nr);
        frag f;
        if (neg) {
            cprange *out = malloc(sizeof *out * (size_t)(nr + 1));
            if (!out) {
                free(r);
                return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
            }
            f = fr_cps(b, out, cp_complement(r, nr, out));
            free(out);
        } else {
            f = fr_cps(b, r, nr);
        }
        free(r);
        return f;
    }
    if (c == '.') {
        p->i++;
        static const cprange any[] = {{0, 0x10FFFF}};
        return fr_cps(b, any, 1);
    }
    if (c == '(') {
        p->i++;
        if (++p->depth > p->max_depth) return fail(p, KL_ERANGE, "groups nested too deep");
        skip_space(p, true);
        frag f = parse_alts(p, true);
        p->depth--;
        if (p->i >= p->n || p->s[p->i] != ')') return fail(p, KL_EINVAL, "expected )");
        p->i++;
        return f;
    }
    if (word_char(c)) {
        size_t s0 = p->i;
        while (p->i < p->n && word_char(p->s[p->i]))
            p->i++;
        int32_t r = nfa_rule_find(b, p->s + s0, p->i - s0);
        if (r < 0) r = nfa_rule(b, p->s + s0, p->i - s0);
        return fr_call(b, r);
    }
    (void)nested;
    return fail(p, KL_EINVAL, "unexpected character");
}

typedef struct regen {
    gp *p;
    size_t at;
    int line;
} regen;

static frag regen_atom(nfa *b, void *ctx)
{
    regen *g = ctx;
    gp copy = *g->p;
    copy.i = g->at;
    copy.line = g->line;
    (void)b;
    return parse_atom(&copy, true);
}

static bool parse_uint(gp *p, int64_t *out)
{
    int64_t v = 0;
    int d = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        if (++d > 9) return fail(p, KL_ERANGE, "repetition count too large"), false;
        v = v * 10 + (p->s[p->i++] - '0');
    }
    if (!d) return fail(p, KL_EINVAL, "expected a number"), false;
    *out = v;
    return true;
}

static frag parse_seq(gp *p, bool nested)
{
    nfa *b = p->b;
    frag f = fr_empty(b);
    while (p->i < p->n && !b->rc) {
        char c = p->s[p->i];
        if (!(c == '"' || c == '[' || c == '.' || c == '(' || word_char(c))) break;
        size_t at = p->i;
        int line = p->line;
        frag a = parse_atom(p, nested);
        skip_space(p, nested);
        if (p->i < p->n && !b->rc) {
            char q = p->s[p->i];
            int64_t min = -2, max = -1;
            if (q == '*' || q == '+' || q == '?') {
                min = q == '+' ? 1 : 0;
                max = q == '?' ? 1 : -1;
                p->i++;
            } else if (q == '{') {
                p->i++;
                skip_space(p, nested);
                if (!parse_uint(p, &min)) return FRAG_ERR;
                skip_space(p, nested);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    skip_space(p, nested);
                    max = -1;
                    if (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9' &&
                        !parse_uint(p, &max))
                        return FRAG_ERR;
                    skip_space(p, nested);
                }
                if (p->i >= p->n || p->s[p->i] != '}') return fail(p, KL_EINVAL, "expected }");
                p->i++;
            }
            if (min != -2) {
                if (max >= 0 && max < min) return fail(p, KL_EINVAL, "repetition out of order");
                regen g = {p, at, line};
                a = fr_repeat_first(b, a, regen_atom, &g, min, max);
                skip_space(p, nested);
            }
        }
        f = fr_seq(b, f, a);
    }
    return b->rc ? FRAG_ERR : f;
}

static frag parse_alts(gp *p, bool nested)
{
    nfa *b = p->b;
    frag first = parse_seq(p, nested);
    if (p->i >= p->n || p->s[p->i] != '|') return first;
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, first);
    while (p->i < p->n && p->s[p->i] == '|' && !b->rc) {
        p->i++;
        skip_space(p, true);
        fr_alt_add(b, alt, parse_seq(p, nested));
    }
    return b->rc ? FRAG_ERR : alt;
}

/* Called by gram_compile_gbnf: every rule of src into b. Returns the rule root, or -1. */
int32_t gbnf_build(nfa *b, const char *src, size_t len, int max_nesting)
{
    gp p = {b, src, len, 0, 0, max_nesting, 1};
    bool *defined = NULL;
    int32_t cap_def = 0;
    skip_space(&p, true);
    while (p.i < p.n && !b->rc) {
        size_t s0 = p.i;
        while (p.i < p.n && word_char(p.s[p.i]))
            p.i++;
        if (p.i == s0) {
            fail(&p, KL_EINVAL, "expected a rule name");
            break;
        }
        int32_t r = nfa_rule_find(b, src + s0, p.i - s0);
        if (r < 0) r = nfa_rule(b, src + s0, p.i - s0);
        if (r < 0) break;
        if (r >= cap_def) {
            int32_t cap = cap_def ? cap_def : 16;
            while (cap <= r)
                cap *= 2;
            bool *q = realloc(defined, (size_t)cap);
            if (!q) {
                nfa_fail(b, KL_ENOMEM, "out of memory");
                break;
            }
            memset(q + cap_def, 0, (size_t)(cap - cap_def));
            defined = q;
            cap_def = cap;
        }
        if (defined[r]) {
            nfa_fail(b, KL_EINVAL, "grammar: rule '%s' defined twice (line %d)", b->rules[r].name,
                     p.line);
            break;
        }
        defined[r] = true;
        skip_space(&p, false);
        if (p.i + 3 > p.n || memcmp(src + p.i, "::=", 3)) {
            fail(&p, KL_EINVAL, "expected ::=");
            break;
        }
        p.i += 3;
        skip_space(&p, true);
        frag body = parse_alts(&p, false);
        nfa_rule_define(b, r, body);
        if (b->rc) break;
        if (p.i < p.n && p.s[p.i] != '\n' && p.s[p.i] != '\r') {
            fail(&p, KL_EINVAL, "expected the end of the rule");
            break;
        }
        skip_space(&p, true);
    }
    for (int32_t r = 0; r < b->n_rules && !b->rc; r++)
        if (b->rules[r].start < 0)
            nfa_fail(b, KL_EINVAL, "grammar: rule '%s' is used but never defined",
                     b->rules[r].name);
    free(defined);
    int32_t root = nfa_rule_find(b, "root", 4);
    if (!b->rc && root < 0) nfa_fail(b, KL_EINVAL, "grammar: no rule named root");
    return b->rc ? -1 : root;
}
