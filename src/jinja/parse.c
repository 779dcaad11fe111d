/* jinja/parse.c: Jinja source → AST. A hand-written scanner for the text between tags
 * (with trim_blocks, lstrip_blocks and "-" whitespace control), a tokenizer for the inside
 * of tags and a recursive-descent parser with Jinja2's operator precedence:
 *   x if c else y < or < and < not < compare/in < + - < ~ < * / // % < ** < unary
 *   < primary, postfix (.a [i] [a:b:c] (args)), filters (|f) and tests (is t).
 * Errors unwind with longjmp to jinja_parse, which frees the whole arena. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/internal.h"

#define MAX_BLOCK_DEPTH 64   /* nested if/for/set/macro blocks */
#define MAX_EXPR_HEIGHT 200  /* height of an expression tree */
#define MAX_ARGS        64   /* arguments of one call, items of one literal: more is an error */
#define MAX_LIST_ITEMS  4096 /* items of one list or dict literal */

typedef enum { TK_EOF, TK_END, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP } tk_kind;

typedef struct ptok {
    tk_kind k;
    jstr s; /* raw text (names, operators); decoded text for strings */
    int64_t i;
    double f;
    bool strip; /* TK_END: the tag ended with "-" */
    size_t pos;
} ptok;

typedef struct jparser {
    const char *src;
    size_t len, pos;
    const char *name;
    jarena *arena;
    char tag;     /* '%' or '{' while inside a tag */
    int brackets; /* open ( [ { inside the tag */
    ptok cur;
    bool strip_next, trim_nl; /* from the end of the previous tag */
    int block_depth, loop_depth, expr_depth;
    /* calls of names that are not builtins: checked against the macros at the end */
    jnode **calls;
    int ncalls, calls_cap;
    jstr *macros;
    int nmacros, macros_cap;
    kl_err *err;
    int rc;
    jmp_buf jb;
} jparser;

static int line_at(const jparser *P, size_t pos)
{
    int line = 1;
    for (size_t i = 0; i < pos && i < P->len; i++)
        line += P->src[i] == '\n';
    return line;
}

__attribute__((format(printf, 4, 5))) _Noreturn static void perr(jparser *P, int code, size_t pos,
                                                                 const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kl_errf(P->err, code, "%s:%d: %s", P->name, line_at(P, pos), msg);
    P->rc = code;
    longjmp(P->jb, 1);
}

static void *palloc(jparser *P, size_t n)
{
    void *p = jarena_alloc(P->arena, n);
    if (!p) perr(P, KL_ENOMEM, P->pos, "out of memory");
    return p;
}

static jnode *mk(jparser *P, jn_kind kind, size_t pos)
{
    jnode *n = palloc(P, sizeof *n);
    n->kind = kind;
    n->line = (int)pos; /* a byte offset until finish() turns it into a line */
    return n;
}

/* ---- the tokenizer inside tags ---- */

static bool starts(const jparser *P, size_t at, const char *lit)
{
    size_t n = strlen(lit);
    return at + n <= P->len && memcmp(P->src + at, lit, n) == 0;
}

static void lex_string(jparser *P, ptok *t)
{
    char q = P->src[P->pos++];
    size_t start = P->pos;
    char *buf = palloc(P, P->len - start + 1); /* decoded is never longer */
    size_t n = 0;
    for (;;) {
        if (P->pos >= P->len) perr(P, KL_EINVAL, start, "unterminated string literal");
        char ch = P->src[P->pos++];
        if (ch == q) break;
        if (ch != '\\') {
            buf[n++] = ch;
            continue;
        }
        if (P->pos >= P->len) perr(P, KL_EINVAL, start, "unterminated string literal");
        char e = P->src[P->pos++];
        switch (e) {
        case 'n':
            buf[n++] = '\n';
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case '0':
            buf[n++] = '\0';
            break;
        case '\\':
        case '\'':
        case '"':
            buf[n++] = e;
            break;
        case '\n':
            break; /* line continuation */
        case 'x':
        case 'u': {
            int nd = e == 'x' ? 2 : 4;
            unsigned cp = 0;
            for (int k = 0; k < nd; k++) {
                if (P->pos >= P->len || !isxdigit((unsigned char)P->src[P->pos]))
                    perr(P, KL_EINVAL, P->pos, "bad \\%c escape in string literal", e);
                char h = P->src[P->pos++];
                cp = cp * 16 +
                     (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            /* UTF-8 encode (at most 3 bytes for 4 hex digits; the escape took >= 4) */
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
            if (cp < 0x80) {
                buf[n++] = (char)cp;
            } else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | (cp >> 6));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (char)(0xE0 | (cp >> 12));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: /* Python keeps unknown escapes as they are */
            buf[n++] = '\\';
            buf[n++] = e;
            break;
        }
    }
    t->k = TK_STR;
    t->s.p = buf;
    t->s.n = n;
}

/* Reads the next token of the current tag into P->cur. */
static void lex(jparser *P)
{
    ptok t = {0};
    while (P->pos < P->len && isspace((unsigned char)P->src[P->pos]))
        P->pos++;
    t.pos = P->pos;
    if (P->pos >= P->len) {
        t.k = TK_EOF;
        P->cur = t;
        return;
    }
    const char *endlit = P->tag == '%' ? "%}" : "}}";
    if (P->tag == '%' || P->brackets == 0) {
        if (starts(P, P->pos, endlit)) {
            P->pos += 2;
            t.k = TK_END;
            P->cur = t;
            return;
        }
        if ((P->src[P->pos] == '-' || P->src[P->pos] == '+') && starts(P, P->pos + 1, endlit)) {
            t.strip = P->src[P->pos] == '-';
            P->pos += 3;
            t.k = TK_END;
            P->cur = t;
            return;
        }
    }
    unsigned char ch = (unsigned char)P->src[P->pos];
    if (isalpha(ch) || ch == '_') {
        size_t s = P->pos;
        while (P->pos < P->len && (isalnum((unsigned char)P->src[P->pos]) || P->src[P->pos] == '_'))
            P->pos++;
        t.k = TK_NAME;
        t.s = (jstr){P->src + s, P->pos - s};
    } else if (isdigit(ch)) {
        size_t s = P->pos;
        while (P->pos < P->len && isdigit((unsigned char)P->src[P->pos]))
            P->pos++;
        bool fl = false;
        if (P->pos + 1 < P->len && P->src[P->pos] == '.' &&
            isdigit((unsigned char)P->src[P->pos + 1])) {
            fl = true;
            P->pos++;
            while (P->pos < P->len && isdigit((unsigned char)P->src[P->pos]))
                P->pos++;
        }
        if (P->pos < P->len && (P->src[P->pos] == 'e' || P->src[P->pos] == 'E')) {
            size_t e = P->pos + 1;
            if (e < P->len && (P->src[e] == '+' || P->src[e] == '-')) e++;
            if (e < P->len && isdigit((unsigned char)P->src[e])) {
                fl = true;
                P->pos = e;
                while (P->pos < P->len && isdigit((unsigned char)P->src[P->pos]))
                    P->pos++;
            }
        }
        char num[64];
        size_t n = P->pos - s;
        if (n >= sizeof num) perr(P, KL_EINVAL, s, "number literal too long");
        memcpy(num, P->src + s, n);
        num[n] = 0;
        errno = 0;
        if (fl) {
            t.k = TK_FLOAT;
            t.f = strtod(num, NULL);
        } else {
            t.k = TK_INT;
            t.i = strtoll(num, NULL, 10);
            if (errno) perr(P, KL_EINVAL, s, "integer literal out of range");
        }
        t.s = (jstr){P->src + s, n};
    } else if (ch == '\'' || ch == '"') {
        lex_string(P, &t);
    } else {
        static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**"};
        t.k = TK_OP;
        t.s = (jstr){P->src + P->pos, 1};
        for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
            if (starts(P, P->pos, two[k])) t.s.n = 2;
        if (t.s.n == 1 && !strchr("+-*/%~<>=()[]{},.:|", ch))
            perr(P, KL_EINVAL, P->pos, "unexpected character '%c' in tag", ch);
        if (t.s.n == 1) {
            if (ch == '(' || ch == '[' || ch == '{') P->brackets++;
            if ((ch == ')' || ch == ']' || ch == '}') && P->brackets > 0) P->brackets--;
        }
        P->pos += t.s.n;
    }
    P->cur = t;
}

/* The token after the current one, without consuming anything. */
static ptok peek2(jparser *P)
{
    size_t pos = P->pos;
    int br = P->brackets;
    ptok save = P->cur;
    lex(P);
    ptok next = P->cur;
    P->pos = pos;
    P->brackets = br;
    P->cur = save;
    return next;
}

static bool is_op(const jparser *P, const char *op)
{
    return P->cur.k == TK_OP && jstr_eq(P->cur.s, op);
}
static bool is_name(const jparser *P, const char *name)
{
    return P->cur.k == TK_NAME && jstr_eq(P->cur.s, name);
}

static const char *tk_desc(const ptok *t, char *buf, size_t cap)
{
    switch (t->k) {
    case TK_EOF:
        return "end of template";
    case TK_END:
        return "end of tag";
    case TK_STR:
        return "string literal";
    default:
        snprintf(buf, cap, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
        return buf;
    }
}

static void expect_op(jparser *P, const char *op)
{
    char b[64];
    if (!is_op(P, op))
        perr(P, KL_EINVAL, P->cur.pos, "expected '%s', found %s", op,
             tk_desc(&P->cur, b, sizeof b));
    lex(P);
}

static jstr expect_name(jparser *P)
{
    char b[64];
    if (P->cur.k != TK_NAME)
        perr(P, KL_EINVAL, P->cur.pos, "expected a name, found %s", tk_desc(&P->cur, b, sizeof b));
    jstr s = P->cur.s;
    lex(P);
    return s;
}

/* Ends a tag: the current token must be its end; records its whitespace control. */
static void expect_end(jparser *P)
{
    char b[64];
    if (P->cur.k != TK_END)
        perr(P, KL_EINVAL, P->cur.pos, "expected end of tag, found %s",
             tk_desc(&P->cur, b, sizeof b));
    P->strip_next = P->cur.strip;
    P->trim_nl = !P->cur.strip && P->tag == '%';
    P->tag = 0;
}

/* ---- expressions ---- */

static jnode *parse_expr(jparser *P);
static jnode *parse_or(jparser *P);

/* Checks the height of a finished expression node (hgt caches heights in the unused lit of
 * non-literal nodes, so each node is measured once). */
static int hgt(const jnode *n);
static jnode *seal(jparser *P, jnode *n)
{
    int h = hgt(n);
    if (h > MAX_EXPR_HEIGHT) perr(P, KL_EINVAL, P->cur.pos, "expression nested too deeply");
    return n;
}

static void enter(jparser *P)
{
    if (++P->expr_depth > MAX_EXPR_HEIGHT)
        perr(P, KL_EINVAL, P->cur.pos, "expression nested too deeply");
}

static void parse_args(jparser *P, jnode *n)
{
    /* '(' is consumed */
    jnode *args[MAX_ARGS];
    jstr kw[MAX_ARGS];
    int na = 0, nkw = 0;
    while (!is_op(P, ")")) {
        if (na == MAX_ARGS) perr(P, KL_EINVAL, P->cur.pos, "too many arguments");
        if (P->cur.k == TK_NAME) {
            ptok nx = peek2(P);
            if (nx.k == TK_OP && jstr_eq(nx.s, "=")) {
                kw[nkw++] = P->cur.s;
                lex(P);
                lex(P);
                args[na++] = parse_expr(P);
                goto sep;
            }
        }
        if (nkw) perr(P, KL_EINVAL, P->cur.pos, "positional argument after keyword argument");
        args[na++] = parse_expr(P);
    sep:
        if (!is_op(P, ",")) break;
        lex(P);
    }
    expect_op(P, ")");
    n->nargs = na;
    n->nkw = nkw;
    if (na) {
        n->args = palloc(P, sizeof(jnode *) * (size_t)na);
        memcpy(n->args, args, sizeof(jnode *) * (size_t)na);
    }
    if (nkw) {
        n->kwnames = palloc(P, sizeof(jstr) * (size_t)nkw);
        memcpy(n->kwnames, kw, sizeof(jstr) * (size_t)nkw);
    }
}

/* Items of a list/tuple/dict literal up to the closing bracket (consumed). */
static void parse_items(jparser *P, jnode *n, const char *close, bool dict)
{
    size_t cap = 8, cnt = 0;
    jnode **v = palloc(P, sizeof(jnode *) * cap);
    while (!is_op(P, close)) {
        if (cnt + 2 > cap) {
            if (cap >= MAX_LIST_ITEMS) perr(P, KL_EINVAL, P->cur.pos, "literal too long");
            jnode **nv = palloc(P, sizeof(jnode *) * cap * 2);
            memcpy(nv, v, sizeof(jnode *) * cnt);
            v = nv;
            cap *= 2;
        }
        v[cnt++] = parse_expr(P);
        if (dict) {
            expect_op(P, ":");
            v[cnt++] = parse_expr(P);
        }
        if (!is_op(P, ",")) break;
        lex(P);
    }
    expect_op(P, close);
    n->args = v;
    n->nargs = (int)cnt;
}

static jnode *parse_primary(jparser *P)
{
    char b[64];
    ptok t = P->cur;
    jnode *n;
    switch (t.k) {
    case TK_NAME:
        lex(P);
        if (jstr_eq(t.s, "true") || jstr_eq(t.s, "True")) {
            n = mk(P, JN_LIT, t.pos);
            n->lit = jv_bool(true);
        } else if (jstr_eq(t.s, "false") || jstr_eq(t.s, "False")) {
            n = mk(P, JN_LIT, t.pos);
            n->lit = jv_bool(false);
        } else if (jstr_eq(t.s, "none") || jstr_eq(t.s, "None")) {
            n = mk(P, JN_LIT, t.pos);
            n->lit = jv_none();
        } else {
            n = mk(P, JN_NAME, t.pos);
            n->name = t.s;
        }
        return n;
    case TK_STR: {
        /* adjacent literals concatenate */
        jstr s = t.s;
        lex(P);
        while (P->cur.k == TK_STR) {
            char *cat = palloc(P, s.n + P->cur.s.n + 1);
            memcpy(cat, s.p, s.n);
            memcpy(cat + s.n, P->cur.s.p, P->cur.s.n);
            s = (jstr){cat, s.n + P->cur.s.n};
            lex(P);
        }
        n = mk(P, JN_LIT, t.pos);
        n->lit = jv_strn(s.p, s.n);
        return n;
    }
    case TK_INT:
        lex(P);
        n = mk(P, JN_LIT, t.pos);
        n->lit = jv_int(t.i);
        return n;
    case TK_FLOAT:
        lex(P);
        n = mk(P, JN_LIT, t.pos);
        n->lit = jv_float(t.f);
        return n;
    case TK_OP:
        if (jstr_eq(t.s, "(")) {
            lex(P);
            if (is_op(P, ")")) { /* empty tuple */
                lex(P);
                n = mk(P, JN_LIST, t.pos);
                n->neg = true; /* a tuple */
                return n;
            }
            jnode *e = parse_expr(P);
            if (is_op(P, ",")) { /* a tuple: a list for our purposes */
                lex(P);
                n = mk(P, JN_LIST, t.pos);
                parse_items(P, n, ")", false);
                jnode **v = palloc(P, sizeof(jnode *) * (size_t)(n->nargs + 1));
                v[0] = e;
                if (n->nargs) memcpy(v + 1, n->args, sizeof(jnode *) * (size_t)n->nargs);
                n->args = v;
                n->nargs++;
                n->neg = true; /* a tuple */
                return n;
            }
            expect_op(P, ")");
            return e;
        }
        if (jstr_eq(t.s, "[")) {
            lex(P);
            n = mk(P, JN_LIST, t.pos);
            parse_items(P, n, "]", false);
            return n;
        }
        if (jstr_eq(t.s, "{")) {
            lex(P);
            n = mk(P, JN_DICT, t.pos);
            parse_items(P, n, "}", true);
            return n;
        }
        break;
    default:
        break;
    }
    perr(P, KL_EINVAL, t.pos, "unexpected %s in expression", tk_desc(&t, b, sizeof b));
}

static bool is_keyword(jstr s)
{
    static const char *const kw[] = {"and", "or", "not", "in", "is", "if", "else"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (jstr_eq(s, kw[i])) return true;
    return false;
}

static jnode *parse_postfix(jparser *P, jnode *n)
{
    for (;;) {
        size_t pos = P->cur.pos;
        if (is_op(P, ".")) {
            lex(P);
            jstr name = expect_name(P);
            if (is_op(P, "(")) {
                int m = jinja_method_find(name);
                if (m < 0)
                    perr(P, KL_EUNSUP, pos, "unsupported method '%.*s'", (int)name.n, name.p);
                lex(P);
                jnode *c = mk(P, JN_METHOD, pos);
                c->op = m;
                c->name = name;
                c->a = n;
                parse_args(P, c);
                n = c;
            } else {
                jnode *c = mk(P, JN_ATTR, pos);
                c->name = name;
                c->a = n;
                n = c;
            }
        } else if (is_op(P, "[")) {
            lex(P);
            jnode *e1 = NULL, *e2 = NULL, *e3 = NULL;
            bool slice = false;
            if (!is_op(P, ":")) e1 = parse_expr(P);
            if (is_op(P, ":")) {
                slice = true;
                lex(P);
                if (!is_op(P, "]") && !is_op(P, ":")) e2 = parse_expr(P);
                if (is_op(P, ":")) {
                    lex(P);
                    if (!is_op(P, "]")) e3 = parse_expr(P);
                }
            }
            expect_op(P, "]");
            jnode *c = mk(P, slice ? JN_SLICE : JN_ITEM, pos);
            c->a = n;
            c->b = e1;
            c->c = e2;
            c->d = e3;
            n = c;
        } else if (is_op(P, "(")) {
            if (n->kind != JN_NAME)
                perr(P, KL_EUNSUP, pos, "only functions and macros can be called");
            lex(P);
            n->kind = JN_CALL;
            n->op = jinja_func_find(n->name);
            parse_args(P, n);
            if (n->op < 0) { /* a macro: checked when the template is complete */
                if (P->ncalls == P->calls_cap) {
                    int cap = P->calls_cap ? P->calls_cap * 2 : 16;
                    jnode **nc = palloc(P, sizeof(jnode *) * (size_t)cap);
                    if (P->ncalls) memcpy(nc, P->calls, sizeof(jnode *) * (size_t)P->ncalls);
                    P->calls = nc;
                    P->calls_cap = cap;
                }
                P->calls[P->ncalls++] = n;
            }
        } else {
            return n;
        }
        seal(P, n);
    }
}

static jnode *parse_filters(jparser *P, jnode *n)
{
    for (;;) {
        size_t pos = P->cur.pos;
        if (is_op(P, "|")) {
            lex(P);
            jstr name = expect_name(P);
            int f = jinja_filter_find(name);
            if (f < 0) perr(P, KL_EUNSUP, pos, "unsupported filter '%.*s'", (int)name.n, name.p);
            jnode *c = mk(P, JN_FILTER, pos);
            c->op = f;
            c->name = name;
            c->a = n;
            if (is_op(P, "(")) {
                lex(P);
                parse_args(P, c);
            }
            n = parse_postfix(P, seal(P, c));
        } else if (is_name(P, "is")) {
            lex(P);
            jnode *c = mk(P, JN_TEST, pos);
            if (is_name(P, "not")) {
                c->neg = true;
                lex(P);
            }
            jstr name;
            if (P->cur.k == TK_OP && (jstr_eq(P->cur.s, "==") || jstr_eq(P->cur.s, "!=") ||
                                      jstr_eq(P->cur.s, "<") || jstr_eq(P->cur.s, ">"))) {
                name = P->cur.s;
                lex(P);
            } else {
                name = expect_name(P);
            }
            int t = jinja_test_find(name);
            if (t < 0) perr(P, KL_EUNSUP, pos, "unsupported test '%.*s'", (int)name.n, name.p);
            c->op = t;
            c->name = name;
            c->a = n;
            if (is_op(P, "(")) {
                lex(P);
                parse_args(P, c);
                if (c->nkw) perr(P, KL_EUNSUP, pos, "keyword arguments to a test");
            } else if (P->cur.k == TK_STR || P->cur.k == TK_INT || P->cur.k == TK_FLOAT ||
                       (P->cur.k == TK_NAME && !is_keyword(P->cur.s))) {
                c->args = palloc(P, sizeof(jnode *));
                c->args[0] = parse_postfix(P, parse_primary(P));
                c->nargs = 1;
            }
            n = seal(P, c);
        } else {
            return n;
        }
    }
}

/* Unary minus/plus, then a primary with its postfix operators; filters and tests apply to
 * the whole (Jinja2: "-3 | abs" is abs(-3)) unless this is the operand of a unary sign. */
static jnode *parse_unary(jparser *P, bool with_filters)
{
    enter(P);
    jnode *n;
    size_t pos = P->cur.pos;
    if (is_op(P, "-") || is_op(P, "+")) {
        bool neg = is_op(P, "-");
        lex(P);
        n = mk(P, neg ? JN_NEG : JN_POS, pos);
        n->a = parse_unary(P, false);
        n = seal(P, n);
    } else {
        n = parse_postfix(P, parse_primary(P));
    }
    if (with_filters) n = parse_filters(P, n);
    P->expr_depth--;
    return n;
}

static jnode *mkbin(jparser *P, size_t pos, int op, jnode *a, jnode *b)
{
    jnode *n = mk(P, JN_BIN, pos);
    n->op = op;
    n->a = a;
    n->b = b;
    return seal(P, n);
}

static jnode *parse_pow(jparser *P)
{
    jnode *n = parse_unary(P, true);
    while (is_op(P, "**")) {
        size_t pos = P->cur.pos;
        lex(P);
        n = mkbin(P, pos, JO_POW, n, parse_unary(P, true));
    }
    return n;
}

static jnode *parse_mul(jparser *P)
{
    jnode *n = parse_pow(P);
    for (;;) {
        int op;
        if (is_op(P, "*"))
            op = JO_MUL;
        else if (is_op(P, "/"))
            op = JO_DIV;
        else if (is_op(P, "//"))
            op = JO_FDIV;
        else if (is_op(P, "%"))
            op = JO_MOD;
        else
            return n;
        size_t pos = P->cur.pos;
        lex(P);
        n = mkbin(P, pos, op, n, parse_pow(P));
    }
}

static jnode *parse_concat(jparser *P)
{
    jnode *n = parse_mul(P);
    while (is_op(P, "~")) {
        size_t pos = P->cur.pos;
        lex(P);
        n = mkbin(P, pos, JO_CONCAT, n, parse_mul(P));
    }
    return n;
}

static jnode *parse_add(jparser *P)
{
    jnode *n = parse_concat(P);
    for (;;) {
        int op;
        if (is_op(P, "+"))
            op = JO_ADD;
        else if (is_op(P, "-"))
            op = JO_SUB;
        else
            return n;
        size_t pos = P->cur.pos;
        lex(P);
        n = mkbin(P, pos, op, n, parse_concat(P));
    }
}

static jnode *parse_compare(jparser *P)
{
    jnode *n = parse_add(P);
    for (;;) {
        int op;
        size_t pos = P->cur.pos;
        if (is_op(P, "=="))
            op = JO_EQ;
        else if (is_op(P, "!="))
            op = JO_NE;
        else if (is_op(P, "<"))
            op = JO_LT;
        else if (is_op(P, "<="))
            op = JO_LE;
        else if (is_op(P, ">"))
            op = JO_GT;
        else if (is_op(P, ">="))
            op = JO_GE;
        else if (is_name(P, "in"))
            op = JO_IN;
        else if (is_name(P, "not")) {
            ptok nx = peek2(P);
            if (!(nx.k == TK_NAME && jstr_eq(nx.s, "in"))) return n;
            lex(P);
            op = JO_NOTIN;
        } else
            return n;
        lex(P);
        n = mkbin(P, pos, op, n, parse_add(P));
    }
}

static jnode *parse_not(jparser *P)
{
    if (is_name(P, "not")) {
        size_t pos = P->cur.pos;
        enter(P);
        lex(P);
        jnode *n = mk(P, JN_NOT, pos);
        n->a = parse_not(P);
        P->expr_depth--;
        return seal(P, n);
    }
    return parse_compare(P);
}

static jnode *parse_and(jparser *P)
{
    jnode *n = parse_not(P);
    while (is_name(P, "and")) {
        size_t pos = P->cur.pos;
        lex(P);
        jnode *c = mk(P, JN_AND, pos);
        c->a = n;
        c->b = parse_not(P);
        n = seal(P, c);
    }
    return n;
}

static jnode *parse_or(jparser *P)
{
    jnode *n = parse_and(P);
    while (is_name(P, "or")) {
        size_t pos = P->cur.pos;
        lex(P);
        jnode *c = mk(P, JN_OR, pos);
        c->a = n;
        c->b = parse_and(P);
        n = seal(P, c);
    }
    return n;
}

static jnode *parse_expr(jparser *P)
{
    enter(P);
    jnode *n = parse_or(P);
    while (is_name(P, "if")) {
        size_t pos = P->cur.pos;
        lex(P);
        jnode *c = mk(P, JN_COND, pos);
        c->b = n;
        c->a = parse_or(P);
        if (is_name(P, "else")) {
            lex(P);
            c->c = parse_expr(P);
        }
        n = seal(P, c);
    }
    P->expr_depth--;
    return n;
}

static int hgt(const jnode *n)
{
    if (!n) return 0;
    if (n->kind != JN_LIT && n->kind != JN_TEXT && n->lit.t == JV_INT) return (int)n->lit.u.i;
    int h = 0, x;
    if ((x = hgt(n->a)) > h) h = x;
    if ((x = hgt(n->b)) > h) h = x;
    if ((x = hgt(n->c)) > h) h = x;
    if ((x = hgt(n->d)) > h) h = x;
    for (int i = 0; i < n->nargs; i++)
        if ((x = hgt(n->args[i])) > h) h = x;
    if (n->kind != JN_LIT && n->kind != JN_TEXT) {
        ((jnode *)n)->lit = jv_int(h + 1);
    }
    return h + 1;
}

/* ---- statements ---- */

static jnode *parse_body(jparser *P, const char *const *stops, jstr *found, const char *what,
                         size_t open_pos);

static void block_push(jnode *blk, jnode *s, jparser *P, size_t *cap)
{
    if ((size_t)blk->nargs == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jnode **v = palloc(P, sizeof(jnode *) * nc);
        if (blk->nargs) memcpy(v, blk->args, sizeof(jnode *) * (size_t)blk->nargs);
        blk->args = v;
        *cap = nc;
    }
    blk->args[blk->nargs++] = s;
}

static jnode *parse_if(jparser *P, size_t pos)
{
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    static const char *const stop_end[] = {"endif", NULL};
    jnode *n = mk(P, JN_IF, pos);
    n->a = parse_expr(P);
    expect_end(P);
    jstr found;
    n->b = parse_body(P, stops, &found, "if", pos);
    if (jstr_eq(found, "elif")) {
        n->c = parse_if(P, P->cur.pos);
        return n; /* the nested if consumed endif */
    }
    if (jstr_eq(found, "else")) {
        expect_end(P);
        n->c = parse_body(P, stop_end, &found, "if", pos);
    }
    expect_end(P);
    return n;
}

static jnode *parse_for(jparser *P, size_t pos)
{
    static const char *const stops[] = {"else", "endfor", NULL};
    static const char *const stop_end[] = {"endfor", NULL};
    jnode *n = mk(P, JN_FOR, pos);
    n->name = expect_name(P);
    if (is_op(P, ",")) {
        lex(P);
        n->name2 = expect_name(P);
        if (is_op(P, ",")) perr(P, KL_EUNSUP, P->cur.pos, "more than two loop variables");
    }
    if (!is_name(P, "in")) perr(P, KL_EINVAL, P->cur.pos, "expected 'in' in for");
    lex(P);
    n->a = parse_or(P);
    if (is_name(P, "if")) {
        lex(P);
        n->d = parse_or(P);
    }
    if (is_name(P, "recursive")) perr(P, KL_EUNSUP, P->cur.pos, "recursive loops");
    expect_end(P);
    jstr found;
    P->loop_depth++;
    n->b = parse_body(P, stops, &found, "for", pos);
    P->loop_depth--;
    if (jstr_eq(found, "else")) {
        expect_end(P);
        n->c = parse_body(P, stop_end, &found, "for", pos);
    }
    expect_end(P);
    return n;
}

static jnode *parse_set(jparser *P, size_t pos)
{
    static const char *const stops[] = {"endset", NULL};
    jstr name = expect_name(P), name2 = {0};
    if (is_op(P, ".")) {
        lex(P);
        name2 = expect_name(P);
    }
    if (is_op(P, ",")) perr(P, KL_EUNSUP, P->cur.pos, "tuple assignment");
    if (P->cur.k == TK_END) {
        if (name2.n) perr(P, KL_EUNSUP, pos, "block set of an attribute");
        expect_end(P);
        jnode *n = mk(P, JN_SETBLOCK, pos);
        n->name = name;
        jstr found;
        n->b = parse_body(P, stops, &found, "set", pos);
        expect_end(P);
        return n;
    }
    expect_op(P, "=");
    jnode *n = mk(P, JN_SET, pos);
    n->name = name;
    n->name2 = name2;
    n->a = parse_expr(P);
    expect_end(P);
    return n;
}

static jnode *parse_macro(jparser *P, size_t pos)
{
    static const char *const stops[] = {"endmacro", NULL};
    jnode *n = mk(P, JN_MACRO, pos);
    n->name = expect_name(P);
    expect_op(P, "(");
    jstr names[MAX_ARGS];
    jnode *defs[MAX_ARGS];
    int np = 0;
    while (!is_op(P, ")")) {
        if (np == MAX_ARGS) perr(P, KL_EINVAL, P->cur.pos, "too many macro parameters");
        names[np] = expect_name(P);
        defs[np] = NULL;
        if (is_op(P, "=")) {
            lex(P);
            defs[np] = parse_expr(P);
        }
        np++;
        if (!is_op(P, ",")) break;
        lex(P);
    }
    expect_op(P, ")");
    expect_end(P);
    n->nkw = np;
    if (np) {
        n->kwnames = palloc(P, sizeof(jstr) * (size_t)np);
        n->args = palloc(P, sizeof(jnode *) * (size_t)np);
        memcpy(n->kwnames, names, sizeof(jstr) * (size_t)np);
        memcpy(n->args, defs, sizeof(jnode *) * (size_t)np);
    }
    n->nargs = 0; /* defaults are in args[0..nkw) but are not positional arguments */
    int saved = P->loop_depth;
    P->loop_depth = 0;
    jstr found;
    n->b = parse_body(P, stops, &found, "macro", pos);
    P->loop_depth = saved;
    expect_end(P);
    if (P->nmacros == P->macros_cap) {
        int cap = P->macros_cap ? P->macros_cap * 2 : 8;
        jstr *nm = palloc(P, sizeof(jstr) * (size_t)cap);
        if (P->nmacros) memcpy(nm, P->macros, sizeof(jstr) * (size_t)P->nmacros);
        P->macros = nm;
        P->macros_cap = cap;
    }
    P->macros[P->nmacros++] = n->name;
    return n;
}

/* {% raw %}: the text up to {% endraw %} is literal. */
static jnode *parse_raw(jparser *P, size_t pos)
{
    expect_end(P);
    size_t s = P->pos;
    for (size_t i = s; i + 1 < P->len; i++) {
        if (P->src[i] != '{' || P->src[i + 1] != '%') continue;
        size_t j = i + 2;
        if (j < P->len && (P->src[j] == '-' || P->src[j] == '+')) j++;
        while (j < P->len && isspace((unsigned char)P->src[j]))
            j++;
        if (!starts(P, j, "endraw")) continue;
        size_t e = i;
        if (P->src[i + 2] == '-')
            while (e > s && isspace((unsigned char)P->src[e - 1]))
                e--;
        jnode *n = mk(P, JN_TEXT, pos);
        size_t a = s;
        if (P->strip_next)
            while (a < e && isspace((unsigned char)P->src[a]))
                a++;
        else if (P->trim_nl && a < e && P->src[a] == '\n')
            a++;
        n->lit = jv_strn(P->src + a, e - a);
        P->pos = j + 6;
        P->tag = '%';
        P->brackets = 0;
        lex(P);
        expect_end(P);
        return n;
    }
    perr(P, KL_EINVAL, pos, "unclosed 'raw'");
}

/* Parses one statement tag whose keyword is the current token. */
static jnode *parse_stmt(jparser *P)
{
    size_t pos = P->cur.pos;
    jstr kw = P->cur.s;
    lex(P);
    if (jstr_eq(kw, "if")) return parse_if(P, pos);
    if (jstr_eq(kw, "for")) return parse_for(P, pos);
    if (jstr_eq(kw, "set")) return parse_set(P, pos);
    if (jstr_eq(kw, "macro")) return parse_macro(P, pos);
    if (jstr_eq(kw, "raw")) return parse_raw(P, pos);
    if (jstr_eq(kw, "break") || jstr_eq(kw, "continue")) {
        if (!P->loop_depth) perr(P, KL_EINVAL, pos, "'%.*s' outside a loop", (int)kw.n, kw.p);
        expect_end(P);
        return mk(P, jstr_eq(kw, "break") ? JN_BREAK : JN_CONTINUE, pos);
    }
    if (jstr_eq(kw, "generation")) { /* Hugging Face's assistant-mask marker: a plain block */
        static const char *const stops[] = {"endgeneration", NULL};
        expect_end(P);
        jstr found;
        jnode *b = parse_body(P, stops, &found, "generation", pos);
        expect_end(P);
        return b;
    }
    static const char *const closers[] = {"endif",  "endfor",   "elif",          "else",
                                          "endset", "endmacro", "endgeneration", "endraw"};
    for (size_t i = 0; i < sizeof closers / sizeof closers[0]; i++)
        if (jstr_eq(kw, closers[i])) perr(P, KL_EINVAL, pos, "unexpected '%.*s'", (int)kw.n, kw.p);
    perr(P, KL_EUNSUP, pos, "unsupported tag '%.*s'", (int)(kw.n > 40 ? 40 : kw.n), kw.p);
}

/* Scans text up to the next tag, applying whitespace control, and appends it to blk. On
 * return P->pos is at the tag's "{" (or the end) and *tag is '{', '%', '#' or 0. */
static void scan_text(jparser *P, jnode *blk, size_t *cap, char *tag)
{
    const char *s = P->src;
    size_t st = P->pos, j = st;
    while (j + 1 < P->len &&
           !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
        j++;
    if (j + 1 >= P->len) {
        j = P->len;
        *tag = 0;
    } else {
        *tag = s[j + 1];
    }
    size_t a = st, b = j;
    if (P->strip_next) {
        while (a < b && isspace((unsigned char)s[a]))
            a++;
    } else if (P->trim_nl) {
        if (a < b && s[a] == '\n')
            a++;
        else if (a + 1 < b && s[a] == '\r' && s[a + 1] == '\n')
            a += 2;
    }
    if (*tag) {
        char m = j + 2 < P->len ? s[j + 2] : 0;
        if (m == '-') {
            while (b > a && isspace((unsigned char)s[b - 1]))
                b--;
        } else if ((*tag == '%' || *tag == '#') && m != '+') { /* lstrip_blocks */
            size_t k = b;
            while (k > a && (s[k - 1] == ' ' || s[k - 1] == '\t'))
                k--;
            if (k == 0 || s[k - 1] == '\n') b = k;
        }
    }
    P->strip_next = P->trim_nl = false;
    P->pos = j;
    if (b > a) {
        jnode *t = mk(P, JN_TEXT, a);
        t->lit = jv_strn(s + a, b - a);
        block_push(blk, t, P, cap);
    }
}

static jnode *parse_body(jparser *P, const char *const *stops, jstr *found, const char *what,
                         size_t open_pos)
{
    if (++P->block_depth > MAX_BLOCK_DEPTH)
        perr(P, KL_EINVAL, open_pos, "blocks nested too deeply");
    jnode *blk = mk(P, JN_BLOCK, P->pos);
    size_t cap = 0;
    for (;;) {
        char tag;
        scan_text(P, blk, &cap, &tag);
        if (!tag) {
            if (stops) {
                int last = 0;
                while (stops[last + 1])
                    last++;
                perr(P, KL_EINVAL, open_pos, "unclosed '%s' (no '%s' before the end)", what,
                     stops[last]);
            }
            break;
        }
        size_t tag_pos = P->pos;
        P->pos += 2;
        if (P->pos < P->len && (P->src[P->pos] == '-' || P->src[P->pos] == '+')) P->pos++;
        if (tag == '#') {
            size_t k = P->pos;
            while (k + 1 < P->len && !(P->src[k] == '#' && P->src[k + 1] == '}'))
                k++;
            if (k + 1 >= P->len) perr(P, KL_EINVAL, tag_pos, "unclosed comment");
            P->strip_next = k > P->pos && P->src[k - 1] == '-';
            P->trim_nl = !P->strip_next;
            P->pos = k + 2;
            continue;
        }
        P->tag = tag == '{' ? '{' : '%'; /* '{': a variable tag, ends with "}}" */
        P->brackets = 0;
        lex(P);
        if (tag == '{') {
            jnode *o = mk(P, JN_OUT, tag_pos);
            o->a = parse_expr(P);
            expect_end(P);
            block_push(blk, o, P, &cap);
            continue;
        }
        if (P->cur.k != TK_NAME) perr(P, KL_EINVAL, tag_pos, "expected a tag name after '{%%'");
        if (stops) {
            bool stop = false;
            for (int i = 0; stops[i]; i++)
                if (jstr_eq(P->cur.s, stops[i])) stop = true;
            if (stop) {
                *found = P->cur.s;
                lex(P);
                break;
            }
        }
        block_push(blk, parse_stmt(P), P, &cap);
    }
    P->block_depth--;
    return blk;
}

/* Turns byte offsets in n->line into line numbers (binary search in nl, the offsets of the
 * n_nl newlines); the walk is bounded by the AST's depth limits. */
static void fix_lines(const size_t *nl, size_t n_nl, jnode *n, int depth)
{
    if (!n || depth > 4 * (MAX_BLOCK_DEPTH + MAX_EXPR_HEIGHT)) return;
    size_t pos = (size_t)n->line, lo = 0, hi = n_nl; /* count newlines before pos */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (nl[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    n->line = (int)lo + 1;
    fix_lines(nl, n_nl, n->a, depth + 1);
    fix_lines(nl, n_nl, n->b, depth + 1);
    fix_lines(nl, n_nl, n->c, depth + 1);
    fix_lines(nl, n_nl, n->d, depth + 1);
    int na = n->kind == JN_MACRO ? n->nkw : n->nargs;
    for (int i = 0; i < na; i++)
        fix_lines(nl, n_nl, n->args[i], depth + 1);
}

int jinja_parse(jinja_tmpl **out, const char *src, size_t len, const char *name, kl_err *err)
{
    jinja_tmpl *t = calloc(1, sizeof *t);
    if (!t) return kl_errf(err, KL_ENOMEM, "%s: out of memory", name);
    t->arena.cap = (size_t)64 << 20;
    t->name = strdup(name ? name : "template");
    t->src = malloc(len + 1);
    if (!t->name || !t->src) {
        jinja_free(t);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", name);
    }
    memcpy(t->src, src, len);
    t->src[len] = 0;
    /* Jinja2 drops one trailing newline (keep_trailing_newline is off) */
    t->len = len;
    if (t->len && t->src[t->len - 1] == '\n') {
        t->len--;
        if (t->len && t->src[t->len - 1] == '\r') t->len--;
    }
    jparser *P = calloc(1, sizeof *P);
    if (!P) {
        jinja_free(t);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", name);
    }
    P->src = t->src;
    P->len = t->len;
    P->name = t->name;
    P->arena = &t->arena;
    P->err = err;
    if (setjmp(P->jb)) {
        int rc = P->rc;
        free(P);
        jinja_free(t);
        return rc;
    }
    t->root = parse_body(P, NULL, NULL, NULL, 0);
    for (int i = 0; i < P->ncalls; i++) {
        jnode *c = P->calls[i];
        bool ok = false;
        for (int k = 0; k < P->nmacros && !ok; k++)
            ok = P->macros[k].n == c->name.n && !memcmp(P->macros[k].p, c->name.p, c->name.n);
        if (!ok)
            perr(P, KL_EUNSUP, (size_t)c->line, "unknown function '%.*s'",
                 (int)(c->name.n > 40 ? 40 : c->name.n), c->name.p);
    }
    size_t n_nl = 0;
    for (size_t i = 0; i < t->len; i++)
        n_nl += t->src[i] == '\n';
    size_t *nl = palloc(P, sizeof(size_t) * (n_nl + 1));
    for (size_t i = 0, k = 0; i < t->len; i++)
        if (t->src[i] == '\n') nl[k++] = i;
    fix_lines(nl, n_nl, t->root, 0);
    free(P);
    *out = t;
    return 0;
}

void jinja_free(jinja_tmpl *t)
{
    if (!t) return;
    jarena_free(&t->arena);
    free(t->name);
    free(t->src);
    free(t);
}
