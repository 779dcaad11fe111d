/* jinja/value.c: the arena, values and their conversions (Python's str(), repr(),
 * json.dumps, ==, <) for the Jinja interpreter. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/internal.h"

/* ---- arena ---- */
struct jchunk {
    jchunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

void *jarena_alloc(jarena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > a->cap || a->used > a->cap - n) return NULL;
    jchunk *h = a->head;
    if (!h || h->cap - h->used < n) {
        size_t cap = n > ((size_t)64 << 10) ? n : ((size_t)64 << 10);
        h = malloc(sizeof *h + cap);
        if (!h) return NULL;
        h->cap = cap;
        h->used = 0;
        h->next = a->head;
        a->head = h;
    }
    void *p = h->data + h->used;
    h->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena *a)
{
    jchunk *h = a->head;
    while (h) {
        jchunk *nx = h->next;
        free(h);
        h = nx;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- constructors ---- */
jv jv_str_copy(jctx *c, const char *p, size_t n)
{
    char *d = jctx_alloc(c, n + 1);
    if (n) memcpy(d, p, n);
    return jv_strn(d, n);
}

jv jv_str_cat(jctx *c, jstr a, jstr b)
{
    jctx_charge(c, (a.n + b.n) >> 5);
    char *d = jctx_alloc(c, a.n + b.n + 1);
    if (a.n) memcpy(d, a.p, a.n);
    if (b.n) memcpy(d + a.n, b.p, b.n);
    return jv_strn(d, a.n + b.n);
}

jv jv_list_new(jctx *c, size_t cap)
{
    jlist *l = jctx_alloc(c, sizeof *l);
    if (cap) l->v = jctx_alloc(c, sizeof(jv) * cap);
    l->cap = cap;
    jv v = {.t = JV_LIST, .u.l = l};
    return v;
}

void jv_list_push(jctx *c, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = jctx_alloc(c, sizeof(jv) * nc);
        if (l->n) memcpy(nv, l->v, sizeof(jv) * l->n);
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
}

jv jv_dict_new(jctx *c, size_t cap)
{
    jdict *d = jctx_alloc(c, sizeof *d);
    if (cap) {
        d->k = jctx_alloc(c, sizeof(jv) * cap);
        d->v = jctx_alloc(c, sizeof(jv) * cap);
    }
    d->cap = cap;
    jv v = {.t = JV_DICT, .u.d = d};
    return v;
}

jv *jv_dict_getv(jctx *c, const jdict *d, jv k)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(c, &d->k[i], &k)) return &d->v[i];
    return NULL;
}

jv *jv_dict_get(const jdict *d, jstr k)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s.n == k.n && !memcmp(d->k[i].u.s.p, k.p, k.n))
            return &d->v[i];
    return NULL;
}

void jv_dict_set(jctx *c, jdict *d, jv k, jv v)
{
    jv *cur = jv_dict_getv(c, d, k);
    if (cur) {
        *cur = v;
        return;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        jv *nk = jctx_alloc(c, sizeof(jv) * nc), *nv = jctx_alloc(c, sizeof(jv) * nc);
        if (d->n) {
            memcpy(nk, d->k, sizeof(jv) * d->n);
            memcpy(nv, d->v, sizeof(jv) * d->n);
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
}

/* ---- truth, equality, order ---- */
bool jv_truthy(const jv *v)
{
    switch (v->t) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v->u.b;
    case JV_INT:
        return v->u.i != 0;
    case JV_FLOAT:
        return v->u.f != 0.0;
    case JV_STR:
        return v->u.s.n != 0;
    case JV_LIST:
        return v->u.l->n != 0;
    case JV_DICT:
        return v->u.d->n != 0;
    default:
        return true;
    }
}

static bool is_num(const jv *v)
{
    return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}
static double num_f(const jv *v)
{
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}

bool jv_eq(jctx *c, const jv *a, const jv *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) {
            int64_t x = a->t == JV_INT ? a->u.i : a->u.b, y = b->t == JV_INT ? b->u.i : b->u.b;
            return x == y;
        }
        return num_f(a) == num_f(b);
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case JV_UNDEF:
    case JV_NONE:
        return true;
    case JV_STR:
        jctx_charge(c, a->u.s.n >> 5);
        return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case JV_LIST:
        if (a->u.l->n != b->u.l->n) return false;
        c->depth++;
        if (c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "values nested too deeply");
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!jv_eq(c, &a->u.l->v[i], &b->u.l->v[i])) {
                c->depth--;
                return false;
            }
        c->depth--;
        return true;
    case JV_DICT:
        if (a->u.d->n != b->u.d->n) return false;
        c->depth++;
        if (c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "values nested too deeply");
        for (size_t i = 0; i < a->u.d->n; i++) {
            jv *o = jv_dict_getv(c, b->u.d, a->u.d->k[i]);
            if (!o || !jv_eq(c, &a->u.d->v[i], o)) {
                c->depth--;
                return false;
            }
        }
        c->depth--;
        return true;
    case JV_NS:
        return a->u.d == b->u.d;
    case JV_LOOP:
        return a->u.loop == b->u.loop;
    case JV_FUNC:
        return a->u.fn == b->u.fn;
    case JV_MACRO:
        return a->u.macro == b->u.macro;
    default:
        return false;
    }
}

int jv_cmp(jctx *c, const jv *a, const jv *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->t == JV_INT && b->t == JV_INT) return (a->u.i > b->u.i) - (a->u.i < b->u.i);
        double x = num_f(a), y = num_f(b);
        return (x > y) - (x < y);
    }
    if (a->t == JV_STR && b->t == JV_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        jctx_charge(c, n >> 5);
        int r = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (r) return r < 0 ? -1 : 1;
        return (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
    }
    jctx_fail(c, KL_EINVAL, "cannot compare %s with %s", jv_type_name(a->t), jv_type_name(b->t));
}

const char *jv_type_name(jv_type t)
{
    switch (t) {
    case JV_UNDEF:
        return "undefined";
    case JV_NONE:
        return "none";
    case JV_BOOL:
        return "bool";
    case JV_INT:
        return "int";
    case JV_FLOAT:
        return "float";
    case JV_STR:
        return "string";
    case JV_LIST:
        return "list";
    case JV_DICT:
        return "dict";
    case JV_NS:
        return "namespace";
    case JV_LOOP:
        return "loop";
    case JV_FUNC:
        return "function";
    case JV_MACRO:
        return "macro";
    default:
        return "?";
    }
}

/* ---- text ---- */
void jbuf_put(jctx *c, jbuf *b, const char *s, size_t n)
{
    if (!n) return;
    if (b->cap - b->n < n + 1) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc - b->n < n + 1) {
            if (nc > c->lim.max_mem) jctx_fail(c, KL_ERANGE, "string too long");
            nc *= 2;
        }
        char *np = jctx_alloc(c, nc);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Python's repr of a float: the shortest digits that read back the same, written fixed when
 * the decimal exponent is in [-4, 16) (with ".0" when integral), else as 1.5e+20. */
static void fmt_float(char *buf, size_t cap, double f)
{
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < 23) digits[nd++] = *p;
    int exp = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    size_t o = 0;
    char *w = buf;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (o + 1 < cap) w[o++] = (ch);                                                            \
    } while (0)
    if (neg) PUT('-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            PUT('0');
            PUT('.');
            for (int i = 0; i < -exp - 1; i++)
                PUT('0');
            for (int i = 0; i < nd; i++)
                PUT(digits[i]);
        } else {
            for (int i = 0; i <= exp; i++)
                PUT(i < nd ? digits[i] : '0');
            PUT('.');
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    PUT(digits[i]);
            else
                PUT('0');
        }
    } else {
        PUT(digits[0]);
        if (nd > 1) {
            PUT('.');
            for (int i = 1; i < nd; i++)
                PUT(digits[i]);
        }
        char ex[16];
        snprintf(ex, sizeof ex, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        for (char *q = ex; *q; q++)
            PUT(*q);
    }
#undef PUT
    w[o] = 0;
}

static void repr_str(jctx *c, jbuf *b, jstr s)
{
    bool sq = memchr(s.p, '\'', s.n) != NULL, dq = memchr(s.p, '"', s.n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    jbuf_put(c, b, &q, 1);
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        char esc[8];
        if (ch == '\\')
            jbuf_puts(c, b, "\\\\");
        else if (ch == (unsigned char)q) {
            esc[0] = '\\';
            esc[1] = q;
            jbuf_put(c, b, esc, 2);
        } else if (ch == '\n')
            jbuf_puts(c, b, "\\n");
        else if (ch == '\r')
            jbuf_puts(c, b, "\\r");
        else if (ch == '\t')
            jbuf_puts(c, b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            jbuf_puts(c, b, esc);
        } else
            jbuf_put(c, b, (const char *)&ch, 1);
    }
    jbuf_put(c, b, &q, 1);
}

static void repr(jctx *c, jbuf *b, const jv *v);

static void seq_str(jctx *c, jbuf *b, const jv *v)
{
    if (++c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "values nested too deeply");
    jctx_charge(c, 1);
    if (v->t == JV_LIST) {
        bool tup = v->u.l->tuple;
        jbuf_puts(c, b, tup ? "(" : "[");
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i) jbuf_puts(c, b, ", ");
            repr(c, b, &v->u.l->v[i]);
        }
        if (tup && v->u.l->n == 1) jbuf_puts(c, b, ",");
        jbuf_puts(c, b, tup ? ")" : "]");
    } else {
        jbuf_puts(c, b, "{");
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i) jbuf_puts(c, b, ", ");
            repr(c, b, &v->u.d->k[i]);
            jbuf_puts(c, b, ": ");
            repr(c, b, &v->u.d->v[i]);
        }
        jbuf_puts(c, b, "}");
    }
    c->depth--;
}

static void repr(jctx *c, jbuf *b, const jv *v)
{
    if (v->t == JV_STR)
        repr_str(c, b, v->u.s);
    else
        jv_to_str(c, b, v);
}

void jv_to_str(jctx *c, jbuf *b, const jv *v)
{
    char num[40];
    switch (v->t) {
    case JV_UNDEF:
        return;
    case JV_NONE:
        jbuf_puts(c, b, "None");
        return;
    case JV_BOOL:
        jbuf_puts(c, b, v->u.b ? "True" : "False");
        return;
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        jbuf_puts(c, b, num);
        return;
    case JV_FLOAT:
        fmt_float(num, sizeof num, v->u.f);
        jbuf_puts(c, b, num);
        return;
    case JV_STR:
        jbuf_put(c, b, v->u.s.p, v->u.s.n);
        return;
    case JV_LIST:
    case JV_DICT:
        seq_str(c, b, v);
        return;
    case JV_NS:
        jbuf_puts(c, b, "<Namespace>");
        return;
    case JV_LOOP:
        jbuf_puts(c, b, "<LoopContext>");
        return;
    case JV_FUNC:
    case JV_MACRO:
        jbuf_puts(c, b, "<function>");
        return;
    default:
        return;
    }
}

jstr jv_str_of(jctx *c, const jv *v)
{
    if (v->t == JV_STR) return v->u.s;
    jbuf b = {0};
    jv_to_str(c, &b, v);
    return (jstr){b.p ? b.p : "", b.n};
}

static void json_str(jctx *c, jbuf *b, jstr s)
{
    jctx_charge(c, s.n >> 5);
    jbuf_puts(c, b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        const char *e = NULL;
        char u[8];
        switch (ch) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                e = u;
            }
        }
        if (!e) continue;
        jbuf_put(c, b, s.p + run, i - run);
        jbuf_puts(c, b, e);
        run = i + 1;
    }
    jbuf_put(c, b, s.p + run, s.n - run);
    jbuf_puts(c, b, "\"");
}

static void json_nl(jctx *c, jbuf *b, int indent, int level)
{
    jbuf_puts(c, b, "\n");
    for (int i = 0; i < indent * level; i++)
        jbuf_puts(c, b, " ");
}

void jv_to_json(jctx *c, jbuf *b, const jv *v, int indent, int level)
{
    char num[40];
    jctx_charge(c, 1);
    switch (v->t) {
    case JV_UNDEF:
    case JV_NONE:
        jbuf_puts(c, b, "null");
        return;
    case JV_BOOL:
        jbuf_puts(c, b, v->u.b ? "true" : "false");
        return;
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        jbuf_puts(c, b, num);
        return;
    case JV_FLOAT:
        if (isnan(v->u.f))
            jbuf_puts(c, b, "NaN");
        else if (isinf(v->u.f))
            jbuf_puts(c, b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else {
            fmt_float(num, sizeof num, v->u.f);
            jbuf_puts(c, b, num);
        }
        return;
    case JV_STR:
        json_str(c, b, v->u.s);
        return;
    case JV_LIST:
    case JV_DICT:
    case JV_NS: {
        if (++c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "values nested too deeply");
        bool list = v->t == JV_LIST;
        size_t n = list ? v->u.l->n : v->u.d->n;
        jbuf_puts(c, b, list ? "[" : "{");
        for (size_t i = 0; i < n; i++) {
            if (i) jbuf_puts(c, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_nl(c, b, indent, level + 1);
            if (list) {
                jv_to_json(c, b, &v->u.l->v[i], indent, level + 1);
            } else {
                jv k = v->u.d->k[i];
                if (k.t == JV_STR)
                    json_str(c, b, k.u.s);
                else {
                    jbuf kb = {0};
                    jv_to_str(c, &kb, &k);
                    json_str(c, b, (jstr){kb.p ? kb.p : "", kb.n});
                }
                jbuf_puts(c, b, ": ");
                jv_to_json(c, b, &v->u.d->v[i], indent, level + 1);
            }
        }
        if (indent >= 0 && n) json_nl(c, b, indent, level);
        jbuf_puts(c, b, list ? "]" : "}");
        c->depth--;
        return;
    }
    default:
        jctx_fail(c, KL_EINVAL, "%s is not JSON serializable", jv_type_name(v->t));
    }
}

jv jv_from_json(jctx *c, const json_t *j, int depth)
{
    if (depth > 64) jctx_fail(c, KL_ERANGE, "JSON variables nested too deeply");
    jctx_charge(c, 1);
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv d = jv_dict_new(c, json_object_size(j));
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)j, k, val)
        {
            jv_dict_set(c, d.u.d, jv_str_copy(c, k, strlen(k)), jv_from_json(c, val, depth + 1));
        }
        return d;
    }
    case JSON_ARRAY: {
        jv l = jv_list_new(c, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            jv_list_push(c, l.u.l, jv_from_json(c, json_array_get(j, i), depth + 1));
        return l;
    }
    case JSON_STRING:
        return jv_str_copy(c, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL:
        return jv_float(json_real_value(j));
    case JSON_TRUE:
        return jv_bool(true);
    case JSON_FALSE:
        return jv_bool(false);
    default:
        return jv_none();
    }
}

/* ---- UTF-8 ---- */
static size_t cp_len(unsigned char ch)
{
    return ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 1;
}

size_t jstr_ncp(jstr s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.n; n++) {
        size_t l = cp_len((unsigned char)s.p[i]);
        i += l <= s.n - i ? l : s.n - i;
    }
    return n;
}

size_t *jstr_cp_offsets(jctx *c, jstr s, size_t *ncp)
{
    size_t n = jstr_ncp(s);
    jctx_charge(c, s.n >> 5);
    size_t *off = jctx_alloc(c, sizeof(size_t) * (n + 1));
    size_t k = 0;
    for (size_t i = 0; i < s.n; k++) {
        off[k] = i;
        size_t l = cp_len((unsigned char)s.p[i]);
        i += l <= s.n - i ? l : s.n - i;
    }
    off[n] = s.n;
    *ncp = n;
    return off;
}
