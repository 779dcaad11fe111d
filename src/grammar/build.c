/* grammar/build.c: the NFA builder every front end writes into, its combinators, code point
 * ranges as UTF-8 byte sequences, and the compile budget.
 *
 * Errors are sticky: the first failure (over the state cap, out of time, out of memory, or
 * one a front end reports with nfa_fail) is kept in b->rc and every later call does
 * nothing, so front ends combine fragments freely and check once. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/internal.h"

void gram_limits_defaults(gram_limits *lim)
{
    lim->max_states = 200000;
    lim->max_nesting = 64;
    lim->max_depth = 512;
    lim->max_ms = 100;
    lim->max_tables = (size_t)64 << 20;
}

void nfa_init(nfa *b, const gram_limits *lim, gbudget *bud, kl_err *err)
{
    memset(b, 0, sizeof *b);
    b->max_states = lim->max_states;
    b->bud = bud;
    b->err = err;
}

void nfa_free(nfa *b)
{
    for (int32_t i = 0; i < b->n_rules; i++)
        free(b->rules[i].name);
    free(b->rules);
    free(b->head);
    free(b->edges);
    memset(b, 0, sizeof *b);
}

int nfa_fail(nfa *b, int code, const char *fmt, ...)
{
    if (b->rc) return b->rc;
    b->rc = code;
    if (b->err) {
        va_list ap;
        va_start(ap, fmt);
        b->err->code = code;
        vsnprintf(b->err->msg, sizeof b->err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int64_t gbudget_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int nfa_tick(nfa *b, uint64_t n)
{
    if (b->rc) return b->rc;
    gbudget *g = b->bud;
    if (!g) return 0;
    uint64_t before = g->ticks;
    g->ticks += n;
    if (g->max_ticks && g->ticks > g->max_ticks)
        return nfa_fail(b, KL_ERANGE, "too complex: over the compile budget");
    if ((before >> 12) != (g->ticks >> 12) && g->deadline_ns && gbudget_now_ns() > g->deadline_ns)
        return nfa_fail(b, KL_ERANGE, "too complex: over the compile time budget");
    return 0;
}

int32_t nfa_state(nfa *b)
{
    if (b->rc) return -1;
    if (b->n_states >= b->max_states)
        return nfa_fail(b, KL_ERANGE, "too large: more than %d automaton states", b->max_states),
               -1;
    if (b->n_states == b->cap_states) {
        int32_t cap = b->cap_states ? b->cap_states * 2 : 256;
        int32_t *h = realloc(b->head, sizeof *h * (size_t)cap);
        if (!h) return nfa_fail(b, KL_ENOMEM, "out of memory"), -1;
        b->head = h;
        b->cap_states = cap;
    }
    if (nfa_tick(b, 1)) return -1;
    b->head[b->n_states] = -1;
    return b->n_states++;
}

static void add_edge(nfa *b, int32_t from, nedge e)
{
    if (b->rc || from < 0 || e.to < 0) return;
    if (b->n_edges == b->cap_edges) {
        int32_t cap = b->cap_edges ? b->cap_edges * 2 : 512;
        if (cap > (1 << 28)) {
            nfa_fail(b, KL_ERANGE, "too large: too many automaton edges");
            return;
        }
        nedge *p = realloc(b->edges, sizeof *p * (size_t)cap);
        if (!p) {
            nfa_fail(b, KL_ENOMEM, "out of memory");
            return;
        }
        b->edges = p;
        b->cap_edges = cap;
    }
    if (nfa_tick(b, 1)) return;
    e.next = b->head[from];
    b->edges[b->n_edges] = e;
    b->head[from] = b->n_edges++;
}

void nfa_eps(nfa *b, int32_t from, int32_t to)
{
    if (from != to) add_edge(b, from, (nedge){.to = to, .kind = NE_EPS});
}

void nfa_bytes(nfa *b, int32_t from, int32_t to, uint8_t lo, uint8_t hi)
{
    add_edge(b, from, (nedge){.to = to, .kind = NE_BYTES, .lo = lo, .hi = hi});
}

void nfa_call(nfa *b, int32_t from, int32_t to, int32_t rule)
{
    if (rule >= 0) add_edge(b, from, (nedge){.to = to, .kind = NE_CALL, .rule = rule});
}

int32_t nfa_rule(nfa *b, const char *name, size_t len)
{
    if (b->rc) return -1;
    if (b->n_rules >= b->max_states)
        return nfa_fail(b, KL_ERANGE, "too large: more than %d rules", b->max_states), -1;
    if (b->n_rules == b->cap_rules) {
        int32_t cap = b->cap_rules ? b->cap_rules * 2 : 16;
        nrule *p = realloc(b->rules, sizeof *p * (size_t)cap);
        if (!p) return nfa_fail(b, KL_ENOMEM, "out of memory"), -1;
        b->rules = p;
        b->cap_rules = cap;
    }
    char *nm = malloc(len + 1);
    if (!nm) return nfa_fail(b, KL_ENOMEM, "out of memory"), -1;
    memcpy(nm, name, len);
    nm[len] = 0;
    nrule *r = &b->rules[b->n_rules];
    r->name = nm;
    r->start = r->final = -1;
    return b->n_rules++;
}

int32_t nfa_rule_find(const nfa *b, const char *name, size_t len)
{
    for (int32_t i = 0; i < b->n_rules; i++)
        if (strlen(b->rules[i].name) == len && !memcmp(b->rules[i].name, name, len)) return i;
    return -1;
}

void nfa_rule_define(nfa *b, int32_t rule, frag body)
{
    if (b->rc || rule < 0 || body.s < 0) return;
    b->rules[rule].start = body.s;
    b->rules[rule].final = body.e;
}

/* ---- fragments ---- */

frag fr_empty(nfa *b)
{
    int32_t s = nfa_state(b);
    return s < 0 ? FRAG_ERR : (frag){s, s};
}

static frag pair(nfa *b)
{
    int32_t s = nfa_state(b), e = nfa_state(b);
    return e < 0 ? FRAG_ERR : (frag){s, e};
}

frag fr_bytes(nfa *b, uint8_t lo, uint8_t hi)
{
    frag f = pair(b);
    nfa_bytes(b, f.s, f.e, lo, hi);
    return b->rc ? FRAG_ERR : f;
}

frag fr_lit(nfa *b, const char *s, size_t n)
{
    int32_t first = nfa_state(b), cur = first;
    for (size_t i = 0; i < n && !b->rc; i++) {
        int32_t nx = nfa_state(b);
        nfa_bytes(b, cur, nx, (uint8_t)s[i], (uint8_t)s[i]);
        cur = nx;
    }
    return b->rc ? FRAG_ERR : (frag){first, cur};
}

frag fr_call(nfa *b, int32_t rule)
{
    frag f = pair(b);
    nfa_call(b, f.s, f.e, rule);
    return b->rc ? FRAG_ERR : f;
}

frag fr_seq(nfa *b, frag x, frag y)
{
    if (b->rc || x.s < 0 || y.s < 0) return FRAG_ERR;
    nfa_eps(b, x.e, y.s);
    return (frag){x.s, y.e};
}

frag fr_alt_new(nfa *b)
{
    return pair(b);
}

void fr_alt_add(nfa *b, frag alt, frag x)
{
    if (b->rc || alt.s < 0 || x.s < 0) return;
    nfa_eps(b, alt.s, x.s);
    nfa_eps(b, x.e, alt.e);
}

frag fr_opt(nfa *b, frag x)
{
    frag f = pair(b);
    fr_alt_add(b, f, x);
    nfa_eps(b, f.s, f.e);
    return b->rc ? FRAG_ERR : f;
}

frag fr_star(nfa *b, frag x)
{
    frag f = pair(b);
    if (b->rc || x.s < 0) return FRAG_ERR;
    nfa_eps(b, f.s, x.s);
    nfa_eps(b, x.e, x.s);
    nfa_eps(b, x.e, f.e);
    nfa_eps(b, f.s, f.e);
    return b->rc ? FRAG_ERR : f;
}

frag fr_plus(nfa *b, frag x)
{
    frag f = pair(b);
    if (b->rc || x.s < 0) return FRAG_ERR;
    nfa_eps(b, f.s, x.s);
    nfa_eps(b, x.e, x.s);
    nfa_eps(b, x.e, f.e);
    return b->rc ? FRAG_ERR : f;
}

frag fr_repeat_first(nfa *b, frag first, fr_gen gen, void *ctx, int64_t min, int64_t max)
{
    if (b->rc || first.s < 0) return FRAG_ERR;
    if (min < 0 || (max >= 0 && max < min))
        return nfa_fail(b, KL_EINVAL, "repetition bounds out of order"), FRAG_ERR;
    if (min > b->max_states || max > b->max_states)
        return nfa_fail(b, KL_ERANGE, "too large: repetition count %lld",
                        (long long)(max > min ? max : min)),
               FRAG_ERR;
    if (max == 0) return fr_empty(b); /* first is left unreachable */
    bool used = false;
    frag f = fr_empty(b);
    for (int64_t i = 0; i < min && !b->rc; i++) {
        f = fr_seq(b, f, used ? gen(b, ctx) : first);
        used = true;
    }
    if (max < 0) return fr_seq(b, f, fr_star(b, used ? gen(b, ctx) : first));
    if (max == min) return f;
    /* x (x (x)?)? as a chain: every optional copy may stop at the end */
    int32_t end = nfa_state(b), cur = f.e;
    for (int64_t i = min; i < max && !b->rc; i++) {
        frag x = used ? gen(b, ctx) : first;
        used = true;
        if (x.s < 0) break;
        nfa_eps(b, cur, end);
        nfa_eps(b, cur, x.s);
        cur = x.e;
    }
    nfa_eps(b, cur, end);
    return b->rc ? FRAG_ERR : (frag){f.s, end};
}

frag fr_repeat(nfa *b, fr_gen gen, void *ctx, int64_t min, int64_t max)
{
    return fr_repeat_first(b, gen(b, ctx), gen, ctx, min, max);
}

/* ---- code points as UTF-8 ---- */

int utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int cp_cmp(const void *a, const void *b)
{
    const cprange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int cp_normalize(cprange *r, int n)
{
    /* split around the surrogates first (they are not characters) */
    int k = 0;
    for (int i = 0; i < n; i++) {
        cprange x = r[i];
        if (x.hi > 0x10FFFF) x.hi = 0x10FFFF;
        if (x.lo > x.hi) continue;
        r[k++] = x;
    }
    n = k;
    qsort(r, (size_t)n, sizeof *r, cp_cmp);
    k = 0;
    for (int i = 0; i < n; i++) {
        if (k && r[i].lo <= r[k - 1].hi + 1) {
            if (r[i].hi > r[k - 1].hi) r[k - 1].hi = r[i].hi;
        } else {
            r[k++] = r[i];
        }
    }
    return k;
}

int cp_complement(const cprange *r, int n, cprange *out)
{
    int k = 0;
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].lo > next) out[k++] = (cprange){next, r[i].lo - 1};
        next = r[i].hi + 1;
    }
    if (next <= 0x10FFFF) out[k++] = (cprange){next, 0x10FFFF};
    return k;
}

static int utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* Adds [lo, hi] (same encoded length, no surrogates) to alt as products of byte ranges:
 * split until lo and hi differ only where every continuation byte below is full. */
static void cps_same_len(nfa *b, frag alt, uint32_t lo, uint32_t hi, int n)
{
    for (int i = 1; i < n && !b->rc; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) {
                cps_same_len(b, alt, lo, lo | m, n);
                cps_same_len(b, alt, (lo | m) + 1, hi, n);
                return;
            }
            if ((hi & m) != m) {
                cps_same_len(b, alt, lo, (hi & ~m) - 1, n);
                cps_same_len(b, alt, hi & ~m, hi, n);
                return;
            }
        }
    }
    char a[4], z[4];
    utf8_put(lo, a);
    utf8_put(hi, z);
    int32_t cur = alt.s;
    for (int i = 0; i < n && !b->rc; i++) {
        int32_t nx = i == n - 1 ? alt.e : nfa_state(b);
        nfa_bytes(b, cur, nx, (uint8_t)a[i], (uint8_t)z[i]);
        cur = nx;
    }
}

frag fr_cps(nfa *b, const cprange *r, int n)
{
    frag alt = fr_alt_new(b);
    static const uint32_t bounds[][2] = {
        {0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}};
    for (int i = 0; i < n && !b->rc; i++)
        for (int j = 0; j < 5; j++) {
            uint32_t lo = r[i].lo > bounds[j][0] ? r[i].lo : bounds[j][0];
            uint32_t hi = r[i].hi < bounds[j][1] ? r[i].hi : bounds[j][1];
            if (lo <= hi) cps_same_len(b, alt, lo, hi, utf8_len(lo));
        }
    return b->rc ? FRAG_ERR : alt;
}
