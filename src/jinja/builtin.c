/* jinja/builtin.c: the functions, filters, tests and methods the interpreter knows,
 * attribute/item/slice access and iteration. Names are resolved at parse time (a template
 * using anything else fails to load); behaviour follows Jinja2 and Python. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja/internal.h"

#define MAX_RANGE 100000 /* items of one range() */

static const char *const func_names[JF_COUNT] = {
    [JF_RANGE] = "range",         [JF_RAISE] = "raise_exception",
    [JF_NAMESPACE] = "namespace", [JF_STRFTIME] = "strftime_now",
    [JF_DICT] = "dict",
};
static const char *const filter_names[JFL_COUNT] = {
    [JFL_TRIM] = "trim",
    [JFL_LENGTH] = "length",
    [JFL_UPPER] = "upper",
    [JFL_LOWER] = "lower",
    [JFL_TOJSON] = "tojson",
    [JFL_DEFAULT] = "default",
    [JFL_FIRST] = "first",
    [JFL_LAST] = "last",
    [JFL_JOIN] = "join",
    [JFL_REPLACE] = "replace",
    [JFL_CAPITALIZE] = "capitalize",
    [JFL_TITLE] = "title",
    [JFL_ITEMS] = "items",
    [JFL_LIST] = "list",
    [JFL_STRING] = "string",
    [JFL_INT] = "int",
    [JFL_FLOAT] = "float",
    [JFL_ABS] = "abs",
    [JFL_SELECTATTR] = "selectattr",
    [JFL_REJECTATTR] = "rejectattr",
    [JFL_SELECT] = "select",
    [JFL_REJECT] = "reject",
    [JFL_MAP] = "map",
    [JFL_SAFE] = "safe",
    [JFL_REVERSE] = "reverse",
    [JFL_SORT] = "sort",
    [JFL_UNIQUE] = "unique",
    [JFL_DICTSORT] = "dictsort",
    [JFL_INDENT] = "indent",
    [JFL_BOOL] = "bool",
};
static const char *const test_names[JT_COUNT] = {
    [JT_DEFINED] = "defined",
    [JT_UNDEFINED] = "undefined",
    [JT_NONE] = "none",
    [JT_STRING] = "string",
    [JT_NUMBER] = "number",
    [JT_INTEGER] = "integer",
    [JT_FLOAT] = "float",
    [JT_MAPPING] = "mapping",
    [JT_ITERABLE] = "iterable",
    [JT_SEQUENCE] = "sequence",
    [JT_BOOLEAN] = "boolean",
    [JT_TRUE] = "true",
    [JT_FALSE] = "false",
    [JT_EQ] = "equalto",
    [JT_NE] = "ne",
    [JT_ODD] = "odd",
    [JT_EVEN] = "even",
    [JT_DIVISIBLEBY] = "divisibleby",
    [JT_IN] = "in",
    [JT_CALLABLE] = "callable",
    [JT_LT] = "lt",
    [JT_GT] = "gt",
};
static const char *const method_names[JM_COUNT] = {
    [JM_STRIP] = "strip",
    [JM_LSTRIP] = "lstrip",
    [JM_RSTRIP] = "rstrip",
    [JM_STARTSWITH] = "startswith",
    [JM_ENDSWITH] = "endswith",
    [JM_SPLIT] = "split",
    [JM_REPLACE] = "replace",
    [JM_UPPER] = "upper",
    [JM_LOWER] = "lower",
    [JM_TITLE] = "title",
    [JM_CAPITALIZE] = "capitalize",
    [JM_FIND] = "find",
    [JM_COUNT_SUB] = "count",
    [JM_ITEMS] = "items",
    [JM_GET] = "get",
    [JM_KEYS] = "keys",
    [JM_VALUES] = "values",
    [JM_CYCLE] = "cycle",
};

static int find_in(const char *const *tab, int n, jstr name)
{
    for (int i = 0; i < n; i++)
        if (tab[i] && jstr_eq(name, tab[i])) return i;
    return -1;
}

int jinja_func_find(jstr name)
{
    return find_in(func_names, JF_COUNT, name);
}
int jinja_method_find(jstr name)
{
    return find_in(method_names, JM_COUNT, name);
}
const char *jinja_func_name(int id)
{
    return id >= 0 && id < JF_COUNT ? func_names[id] : "?";
}

int jinja_filter_find(jstr name)
{
    if (jstr_eq(name, "count")) return JFL_LENGTH;
    if (jstr_eq(name, "d")) return JFL_DEFAULT;
    if (jstr_eq(name, "e") || jstr_eq(name, "escape")) return -1;
    return find_in(filter_names, JFL_COUNT, name);
}

int jinja_test_find(jstr name)
{
    if (jstr_eq(name, "eq") || jstr_eq(name, "==") || jstr_eq(name, "sameas")) return JT_EQ;
    if (jstr_eq(name, "!=")) return JT_NE;
    if (jstr_eq(name, "<") || jstr_eq(name, "lessthan")) return JT_LT;
    if (jstr_eq(name, ">") || jstr_eq(name, "greaterthan")) return JT_GT;
    return find_in(test_names, JT_COUNT, name);
}

/* ---- argument helpers ---- */
static jv arg(jv *args, int npos, jstr *kwn, int nkw, int i, const char *kw)
{
    if (i < npos) return args[i];
    for (int k = 0; k < nkw; k++)
        if (jstr_eq(kwn[k], kw)) return args[npos + k];
    return jv_undef();
}

static jstr want_str(jctx *c, jv v, const char *what)
{
    if (v.t != JV_STR)
        jctx_fail(c, KL_EINVAL, "%s expects a string, got %s", what, jv_type_name(v.t));
    return v.u.s;
}

static int64_t want_int(jctx *c, jv v, const char *what)
{
    if (v.t == JV_INT) return v.u.i;
    if (v.t == JV_BOOL) return v.u.b;
    jctx_fail(c, KL_EINVAL, "%s expects an integer, got %s", what, jv_type_name(v.t));
}

/* ---- iteration and access ---- */
const jlist *jinja_iter(jctx *c, const jv *v)
{
    static const jlist empty = {0};
    switch (v->t) {
    case JV_UNDEF:
        return &empty;
    case JV_LIST:
        return v->u.l;
    case JV_DICT:
    case JV_NS: {
        jv l = jv_list_new(c, v->u.d->n);
        memcpy(l.u.l->v, v->u.d->k, sizeof(jv) * v->u.d->n);
        l.u.l->n = v->u.d->n;
        return l.u.l;
    }
    case JV_STR: {
        size_t n, *off = jstr_cp_offsets(c, v->u.s, &n);
        jv l = jv_list_new(c, n);
        for (size_t i = 0; i < n; i++)
            l.u.l->v[i] = jv_strn(v->u.s.p + off[i], off[i + 1] - off[i]);
        l.u.l->n = n;
        return l.u.l;
    }
    default:
        jctx_fail(c, KL_EINVAL, "%s is not iterable", jv_type_name(v->t));
    }
}

jv jinja_getattr(jctx *c, const jv *v, jstr name)
{
    if (v->t == JV_DICT || v->t == JV_NS) {
        jv *r = jv_dict_get(v->u.d, name);
        return r ? *r : jv_undef();
    }
    if (v->t == JV_LOOP) {
        const jloop *L = v->u.loop;
        int64_t n = (int64_t)L->items->n, i = L->index0;
        if (jstr_eq(name, "index0")) return jv_int(i);
        if (jstr_eq(name, "index")) return jv_int(i + 1);
        if (jstr_eq(name, "revindex")) return jv_int(n - i);
        if (jstr_eq(name, "revindex0")) return jv_int(n - i - 1);
        if (jstr_eq(name, "first")) return jv_bool(i == 0);
        if (jstr_eq(name, "last")) return jv_bool(i == n - 1);
        if (jstr_eq(name, "length")) return jv_int(n);
        if (jstr_eq(name, "depth")) return jv_int(L->depth);
        if (jstr_eq(name, "depth0")) return jv_int(L->depth - 1);
        if (jstr_eq(name, "previtem")) return i > 0 ? L->items->v[i - 1] : jv_undef();
        if (jstr_eq(name, "nextitem")) return i + 1 < n ? L->items->v[i + 1] : jv_undef();
        return jv_undef();
    }
    if (v->t == JV_UNDEF)
        jctx_fail(c, KL_EINVAL, "'%.*s' of an undefined value", (int)(name.n > 40 ? 40 : name.n),
                  name.p);
    return jv_undef();
}

static bool norm_index(int64_t *i, int64_t n)
{
    if (*i < 0) *i += n;
    return *i >= 0 && *i < n;
}

jv jinja_getitem(jctx *c, const jv *v, const jv *k)
{
    switch (v->t) {
    case JV_LIST:
        if (k->t == JV_INT) {
            int64_t i = k->u.i;
            return norm_index(&i, (int64_t)v->u.l->n) ? v->u.l->v[i] : jv_undef();
        }
        return jv_undef();
    case JV_DICT:
    case JV_NS: {
        jv *r = jv_dict_getv(c, v->u.d, *k);
        return r ? *r : jv_undef();
    }
    case JV_STR:
        if (k->t == JV_INT) {
            size_t n, *off = jstr_cp_offsets(c, v->u.s, &n);
            int64_t i = k->u.i;
            if (!norm_index(&i, (int64_t)n)) return jv_undef();
            return jv_strn(v->u.s.p + off[i], off[i + 1] - off[i]);
        }
        return jv_undef();
    case JV_LOOP:
        if (k->t == JV_STR) return jinja_getattr(c, v, k->u.s);
        return jv_undef();
    case JV_UNDEF:
        jctx_fail(c, KL_EINVAL, "subscript of an undefined value");
    default:
        return jv_undef();
    }
}

jv jinja_slice(jctx *c, const jv *v, const jv *a, const jv *b, const jv *s)
{
    int64_t step = 1;
    if (s->t != JV_UNDEF && s->t != JV_NONE) step = want_int(c, *s, "slice step");
    if (step == 0) jctx_fail(c, KL_EINVAL, "slice step cannot be zero");
    size_t n = 0, *off = NULL;
    if (v->t == JV_LIST)
        n = v->u.l->n;
    else if (v->t == JV_STR)
        off = jstr_cp_offsets(c, v->u.s, &n);
    else
        jctx_fail(c, KL_EINVAL, "cannot slice %s", jv_type_name(v->t));
    int64_t len = (int64_t)n, lo, hi;
    /* Python's slice.indices() */
    if (a->t == JV_UNDEF || a->t == JV_NONE)
        lo = step > 0 ? 0 : len - 1;
    else {
        lo = want_int(c, *a, "slice start");
        if (lo < 0) lo += len;
        if (lo < 0) lo = step > 0 ? 0 : -1;
        if (lo >= len) lo = step > 0 ? len : len - 1;
    }
    if (b->t == JV_UNDEF || b->t == JV_NONE)
        hi = step > 0 ? len : -1;
    else {
        hi = want_int(c, *b, "slice stop");
        if (hi < 0) hi += len;
        if (hi < 0) hi = step > 0 ? 0 : -1;
        if (hi >= len) hi = step > 0 ? len : len - 1;
    }
    jv outl = {0};
    jbuf sb = {0};
    if (v->t == JV_LIST) outl = jv_list_new(c, 0);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        jctx_charge(c, 1);
        if (v->t == JV_LIST)
            jv_list_push(c, outl.u.l, v->u.l->v[i]);
        else
            jbuf_put(c, &sb, v->u.s.p + off[i], off[i + 1] - off[i]);
    }
    if (v->t == JV_LIST) return outl;
    return jv_strn(sb.p ? sb.p : "", sb.n);
}

/* ---- string helpers ---- */
static bool in_set(jstr set, char ch)
{
    return memchr(set.p, ch, set.n) != NULL;
}

static jv str_strip(jctx *c, jstr s, jv chars, bool left, bool right)
{
    jstr set = {" \t\n\r\v\f", 6};
    bool ws = true;
    if (chars.t != JV_UNDEF && chars.t != JV_NONE) {
        set = want_str(c, chars, "strip");
        ws = false;
    }
    size_t a = 0, b = s.n;
    if (left)
        while (a < b && (ws ? isspace((unsigned char)s.p[a]) : in_set(set, s.p[a])))
            a++;
    if (right)
        while (b > a && (ws ? isspace((unsigned char)s.p[b - 1]) : in_set(set, s.p[b - 1])))
            b--;
    jctx_charge(c, s.n >> 5);
    return jv_strn(s.p + a, b - a);
}

static jv str_case(jctx *c, jstr s, int mode) /* 0 upper, 1 lower, 2 capitalize, 3 title */
{
    char *d = jctx_alloc(c, s.n + 1);
    jctx_charge(c, s.n >> 5);
    bool start = true;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch >= 0x80) {
            d[i] = (char)ch;
            start = false;
            continue;
        }
        switch (mode) {
        case 0:
            d[i] = (char)toupper(ch);
            break;
        case 1:
            d[i] = (char)tolower(ch);
            break;
        case 2:
            d[i] = (char)(i == 0 ? toupper(ch) : tolower(ch));
            break;
        default:
            d[i] = (char)(start ? toupper(ch) : tolower(ch));
            start = !isalpha(ch);
            break;
        }
    }
    return jv_strn(d, s.n);
}

/* Finds needle in hay from byte `from`; returns its offset or -1. */
static int64_t str_find(jctx *c, jstr hay, jstr needle, size_t from)
{
    jctx_charge(c, (hay.n - (from < hay.n ? from : hay.n)) >> 5);
    if (needle.n == 0) return from <= hay.n ? (int64_t)from : -1;
    if (needle.n > hay.n) return -1;
    for (size_t i = from; i + needle.n <= hay.n; i++)
        if (hay.p[i] == needle.p[0] && !memcmp(hay.p + i, needle.p, needle.n)) return (int64_t)i;
    return -1;
}

static jv str_replace(jctx *c, jstr s, jstr from, jstr to, int64_t count)
{
    jbuf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (from.n == 0) { /* Python inserts `to` between every character */
        size_t ncp, *off = jstr_cp_offsets(c, s, &ncp);
        for (size_t k = 0; k <= ncp; k++) {
            if (count < 0 || done < count) {
                jbuf_put(c, &b, to.p, to.n);
                done++;
            }
            if (k < ncp) jbuf_put(c, &b, s.p + off[k], off[k + 1] - off[k]);
        }
        return jv_strn(b.p ? b.p : "", b.n);
    }
    for (;;) {
        int64_t at = (count >= 0 && done >= count) ? -1 : str_find(c, s, from, i);
        if (at < 0) break;
        jbuf_put(c, &b, s.p + i, (size_t)at - i);
        jbuf_put(c, &b, to.p, to.n);
        i = (size_t)at + from.n;
        done++;
    }
    jbuf_put(c, &b, s.p + i, s.n - i);
    return jv_strn(b.p ? b.p : "", b.n);
}

static jv str_split(jctx *c, jstr s, jv sepv, int64_t maxsplit)
{
    jv l = jv_list_new(c, 0);
    if (sepv.t == JV_UNDEF || sepv.t == JV_NONE) { /* runs of whitespace */
        size_t i = 0;
        for (;;) {
            while (i < s.n && isspace((unsigned char)s.p[i]))
                i++;
            if (i >= s.n) break;
            size_t j = i;
            if (maxsplit >= 0 && (int64_t)l.u.l->n >= maxsplit) {
                size_t e = s.n;
                while (e > i && isspace((unsigned char)s.p[e - 1]))
                    e--;
                jv_list_push(c, l.u.l, jv_strn(s.p + i, e - i));
                break;
            }
            while (j < s.n && !isspace((unsigned char)s.p[j]))
                j++;
            jv_list_push(c, l.u.l, jv_strn(s.p + i, j - i));
            i = j;
        }
        return l;
    }
    jstr sep = want_str(c, sepv, "split");
    if (!sep.n) jctx_fail(c, KL_EINVAL, "split: empty separator");
    size_t i = 0;
    for (;;) {
        int64_t at = (maxsplit >= 0 && (int64_t)l.u.l->n >= maxsplit) ? -1 : str_find(c, s, sep, i);
        if (at < 0) break;
        jv_list_push(c, l.u.l, jv_strn(s.p + i, (size_t)at - i));
        i = (size_t)at + sep.n;
    }
    jv_list_push(c, l.u.l, jv_strn(s.p + i, s.n - i));
    return l;
}

static bool str_affix(jctx *c, jstr s, jv affix, bool end)
{
    if (affix.t == JV_LIST) {
        for (size_t i = 0; i < affix.u.l->n; i++)
            if (str_affix(c, s, affix.u.l->v[i], end)) return true;
        return false;
    }
    jstr a = want_str(c, affix, end ? "endswith" : "startswith");
    if (a.n > s.n) return false;
    return !memcmp(end ? s.p + s.n - a.n : s.p, a.p, a.n);
}

static int64_t length_of(jctx *c, const jv *v)
{
    switch (v->t) {
    case JV_STR:
        return (int64_t)jstr_ncp(v->u.s);
    case JV_LIST:
        return (int64_t)v->u.l->n;
    case JV_DICT:
    case JV_NS:
        return (int64_t)v->u.d->n;
    case JV_UNDEF:
        return 0;
    default:
        jctx_fail(c, KL_EINVAL, "object of type %s has no length", jv_type_name(v->t));
    }
}

static jv items_of(jctx *c, const jv *v)
{
    if (v->t == JV_UNDEF) return jv_list_new(c, 0);
    if (v->t != JV_DICT && v->t != JV_NS)
        jctx_fail(c, KL_EINVAL, "items of %s", jv_type_name(v->t));
    jv l = jv_list_new(c, v->u.d->n);
    for (size_t i = 0; i < v->u.d->n; i++) {
        jv pair = jv_list_new(c, 2);
        pair.u.l->tuple = true;
        pair.u.l->v[0] = v->u.d->k[i];
        pair.u.l->v[1] = v->u.d->v[i];
        pair.u.l->n = 2;
        l.u.l->v[i] = pair;
    }
    l.u.l->n = v->u.d->n;
    return l;
}

/* attribute lookup for select/map: "a.b" walks dicts; integer parts index lists */
static jv attr_path(jctx *c, jv v, jstr path)
{
    size_t i = 0;
    while (i <= path.n) {
        size_t j = i;
        while (j < path.n && path.p[j] != '.')
            j++;
        jstr part = {path.p + i, j - i};
        if (v.t == JV_UNDEF) return v;
        if (v.t == JV_LIST && part.n && isdigit((unsigned char)part.p[0])) {
            jv k = jv_int(atoll(part.p));
            v = jinja_getitem(c, &v, &k);
        } else {
            v = jinja_getattr(c, &v, part);
        }
        i = j + 1;
    }
    return v;
}

/* ---- functions ---- */
jv jinja_call_func(jctx *c, int fn, jv *args, int npos, jstr *kwn, int nkw)
{
    switch (fn) {
    case JF_RANGE: {
        int64_t a = 0, b, s = 1;
        if (npos == 1)
            b = want_int(c, args[0], "range");
        else if (npos == 2 || npos == 3) {
            a = want_int(c, args[0], "range");
            b = want_int(c, args[1], "range");
            if (npos == 3) s = want_int(c, args[2], "range");
        } else
            jctx_fail(c, KL_EINVAL, "range takes 1 to 3 arguments");
        if (s == 0) jctx_fail(c, KL_EINVAL, "range step cannot be zero");
        jv l = jv_list_new(c, 0);
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) {
            if (l.u.l->n >= MAX_RANGE) jctx_fail(c, KL_ERANGE, "range too long");
            jv_list_push(c, l.u.l, jv_int(i));
            if ((s > 0 && i > INT64_MAX - s) || (s < 0 && i < INT64_MIN - s)) break;
        }
        return l;
    }
    case JF_RAISE: {
        jstr m = npos ? jv_str_of(c, &args[0]) : (jstr){"", 0};
        size_t len = strnlen(m.p, m.n > 400 ? 400 : m.n); /* up to a NUL: what %s prints */
        if (!len) /* an error always says why, even when the template gives no reason */
            jctx_fail(c, KL_EINVAL, "raise_exception() with an empty message");
        c->line = -1; /* the message is the template's own */
        jctx_fail(c, KL_EINVAL, "%.*s", (int)len, m.p);
    }
    case JF_NAMESPACE:
    case JF_DICT: {
        jv d = jv_dict_new(c, (size_t)nkw);
        if (fn == JF_NAMESPACE) d.t = JV_NS;
        for (int i = 0; i < npos; i++) { /* a dict argument is merged */
            if (args[i].t != JV_DICT && args[i].t != JV_NS)
                jctx_fail(c, KL_EINVAL, "%s: positional arguments must be dicts", func_names[fn]);
            for (size_t k = 0; k < args[i].u.d->n; k++)
                jv_dict_set(c, d.u.d, args[i].u.d->k[k], args[i].u.d->v[k]);
        }
        for (int k = 0; k < nkw; k++)
            jv_dict_set(c, d.u.d, jv_strn(kwn[k].p, kwn[k].n), args[npos + k]);
        return d;
    }
    case JF_STRFTIME: {
        jstr f = want_str(c, arg(args, npos, kwn, nkw, 0, "format"), "strftime_now");
        if (f.n > 200) jctx_fail(c, KL_EINVAL, "strftime_now: format too long");
        char fmt[256], buf[512];
        memcpy(fmt, f.p, f.n);
        fmt[f.n] = 0;
        time_t now = c->in->now ? c->in->now : time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        size_t n = strftime(buf, sizeof buf, fmt, &tm); /* the template's format, bounded */
#pragma GCC diagnostic pop
        return jv_str_copy(c, buf, n);
    }
    default:
        jctx_fail(c, KL_EINVAL, "unknown function");
    }
}

/* ---- filters ---- */
static bool select_pass(jctx *c, jv item, int test, jv *targs, int ntargs)
{
    if (test < 0) return jv_truthy(&item);
    return jinja_call_test(c, test, item, targs, ntargs);
}

static int test_by_name(jctx *c, jv name)
{
    jstr n = want_str(c, name, "select");
    int t = jinja_test_find(n);
    if (t < 0) jctx_fail(c, KL_EUNSUP, "unsupported test '%.*s'", (int)(n.n > 40 ? 40 : n.n), n.p);
    return t;
}

static jv filter_select(jctx *c, int f, jv x, jv *args, int npos)
{
    bool attr = f == JFL_SELECTATTR || f == JFL_REJECTATTR;
    bool want = f == JFL_SELECTATTR || f == JFL_SELECT;
    const jlist *in = jinja_iter(c, &x);
    int a0 = attr ? 1 : 0;
    if (attr && npos < 1) jctx_fail(c, KL_EINVAL, "selectattr needs an attribute");
    int test = npos > a0 ? test_by_name(c, args[a0]) : -1;
    jv out = jv_list_new(c, 0);
    for (size_t i = 0; i < in->n; i++) {
        jctx_charge(c, 1);
        jv v = attr ? attr_path(c, in->v[i], want_str(c, args[0], "selectattr")) : in->v[i];
        if (select_pass(c, v, test, args + a0 + 1, npos > a0 + 1 ? npos - a0 - 1 : 0) == want)
            jv_list_push(c, out.u.l, in->v[i]);
    }
    return out;
}

jv jinja_call_filter(jctx *c, int f, jv x, jv *args, int npos, jstr *kwn, int nkw)
{
    switch (f) {
    case JFL_TRIM: {
        if (x.t == JV_UNDEF) return jv_strn("", 0);
        jstr s = jv_str_of(c, &x);
        return str_strip(c, s, arg(args, npos, kwn, nkw, 0, "chars"), true, true);
    }
    case JFL_LENGTH:
        return jv_int(length_of(c, &x));
    case JFL_UPPER:
        return str_case(c, jv_str_of(c, &x), 0);
    case JFL_LOWER:
        return str_case(c, jv_str_of(c, &x), 1);
    case JFL_CAPITALIZE:
        return str_case(c, jv_str_of(c, &x), 2);
    case JFL_TITLE:
        return str_case(c, jv_str_of(c, &x), 3);
    case JFL_TOJSON: {
        jv ind = arg(args, npos, kwn, nkw, 0, "indent");
        int indent = -1;
        if (ind.t != JV_UNDEF && ind.t != JV_NONE) {
            int64_t i = want_int(c, ind, "tojson indent");
            indent = i < 0 ? 0 : i > 16 ? 16 : (int)i;
        }
        jbuf b = {0};
        jv_to_json(c, &b, &x, indent, 0);
        return jv_strn(b.p ? b.p : "", b.n);
    }
    case JFL_DEFAULT: {
        jv d = arg(args, npos, kwn, nkw, 0, "default_value");
        jv boolean = arg(args, npos, kwn, nkw, 1, "boolean");
        if (d.t == JV_UNDEF) d = jv_strn("", 0);
        if (x.t == JV_UNDEF || (jv_truthy(&boolean) && !jv_truthy(&x))) return d;
        return x;
    }
    case JFL_FIRST:
    case JFL_LAST: {
        const jlist *l = jinja_iter(c, &x);
        if (!l->n) return jv_undef();
        return l->v[f == JFL_FIRST ? 0 : l->n - 1];
    }
    case JFL_JOIN: {
        const jlist *l = jinja_iter(c, &x);
        jv sepv = arg(args, npos, kwn, nkw, 0, "d");
        jstr sep = sepv.t == JV_UNDEF ? (jstr){"", 0} : jv_str_of(c, &sepv);
        jv attr = arg(args, npos, kwn, nkw, 1, "attribute");
        jbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            jctx_charge(c, 1);
            if (i) jbuf_put(c, &b, sep.p, sep.n);
            jv it = attr.t == JV_STR ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
            jv_to_str(c, &b, &it);
        }
        return jv_strn(b.p ? b.p : "", b.n);
    }
    case JFL_REPLACE: {
        jstr s = jv_str_of(c, &x);
        jv a = arg(args, npos, kwn, nkw, 0, "old"), b = arg(args, npos, kwn, nkw, 1, "new");
        jv cnt = arg(args, npos, kwn, nkw, 2, "count");
        return str_replace(c, s, jv_str_of(c, &a), jv_str_of(c, &b),
                           cnt.t == JV_UNDEF || cnt.t == JV_NONE ? -1
                                                                 : want_int(c, cnt, "replace"));
    }
    case JFL_ITEMS:
        return items_of(c, &x);
    case JFL_LIST: {
        const jlist *l = jinja_iter(c, &x);
        jv out = jv_list_new(c, l->n);
        if (l->n) memcpy(out.u.l->v, l->v, sizeof(jv) * l->n);
        out.u.l->n = l->n;
        return out;
    }
    case JFL_STRING: {
        jstr s = jv_str_of(c, &x);
        return jv_strn(s.p, s.n);
    }
    case JFL_INT:
        if (x.t == JV_INT) return x;
        if (x.t == JV_BOOL) return jv_int(x.u.b);
        if (x.t == JV_FLOAT && isfinite(x.u.f) && fabs(x.u.f) < 9.2e18)
            return jv_int((int64_t)x.u.f);
        if (x.t == JV_STR) {
            char buf[32];
            size_t n = x.u.s.n < 31 ? x.u.s.n : 31;
            memcpy(buf, x.u.s.p, n);
            buf[n] = 0;
            return jv_int(strtoll(buf, NULL, 10));
        }
        return jv_int(0);
    case JFL_FLOAT:
        if (x.t == JV_FLOAT) return x;
        if (x.t == JV_INT) return jv_float((double)x.u.i);
        if (x.t == JV_STR) {
            char buf[64];
            size_t n = x.u.s.n < 63 ? x.u.s.n : 63;
            memcpy(buf, x.u.s.p, n);
            buf[n] = 0;
            return jv_float(strtod(buf, NULL));
        }
        return jv_float(0.0);
    case JFL_BOOL:
        return jv_bool(jv_truthy(&x));
    case JFL_ABS:
        if (x.t == JV_INT)
            return jv_int(x.u.i == INT64_MIN ? INT64_MAX : x.u.i < 0 ? -x.u.i : x.u.i);
        if (x.t == JV_FLOAT) return jv_float(fabs(x.u.f));
        jctx_fail(c, KL_EINVAL, "abs of %s", jv_type_name(x.t));
    case JFL_SELECTATTR:
    case JFL_REJECTATTR:
    case JFL_SELECT:
    case JFL_REJECT:
        return filter_select(c, f, x, args, npos);
    case JFL_MAP: {
        const jlist *l = jinja_iter(c, &x);
        jv attr = arg(args, 0, kwn, nkw, 0, "attribute");
        jv out = jv_list_new(c, l->n);
        for (size_t i = 0; i < l->n; i++) {
            jctx_charge(c, 1);
            jv v;
            if (attr.t == JV_STR)
                v = attr_path(c, l->v[i], attr.u.s);
            else if (npos >= 1) {
                jstr fname = want_str(c, args[0], "map");
                int ff = jinja_filter_find(fname);
                if (ff < 0 || ff == JFL_MAP)
                    jctx_fail(c, KL_EUNSUP, "map: unsupported filter '%.*s'",
                              (int)(fname.n > 40 ? 40 : fname.n), fname.p);
                v = jinja_call_filter(c, ff, l->v[i], args + 1, npos - 1, NULL, 0);
            } else
                jctx_fail(c, KL_EINVAL, "map needs a filter or attribute=");
            out.u.l->v[out.u.l->n++] = v;
        }
        return out;
    }
    case JFL_SAFE:
        return x;
    case JFL_REVERSE: {
        if (x.t == JV_STR) {
            jv none = jv_none(), st = jv_int(-1);
            return jinja_slice(c, &x, &none, &none, &st);
        }
        const jlist *l = jinja_iter(c, &x);
        jv out = jv_list_new(c, l->n);
        for (size_t i = 0; i < l->n; i++)
            out.u.l->v[i] = l->v[l->n - 1 - i];
        out.u.l->n = l->n;
        return out;
    }
    case JFL_SORT:
    case JFL_DICTSORT: {
        jv src = f == JFL_DICTSORT ? items_of(c, &x) : x;
        const jlist *l = jinja_iter(c, &src);
        jv attr = arg(args, npos, kwn, nkw, 2, "attribute");
        jv rev = arg(args, npos, kwn, nkw, 0, "reverse");
        jv out = jv_list_new(c, l->n);
        if (l->n) memcpy(out.u.l->v, l->v, sizeof(jv) * l->n);
        out.u.l->n = l->n;
        jv *v = out.u.l->v;
        /* insertion sort: stable, and n is bounded by the memory limit; charge n^2 */
        jctx_charge(c, (uint64_t)l->n * l->n);
        for (size_t i = 1; i < l->n; i++) {
            for (size_t j = i; j > 0; j--) {
                jv a = v[j - 1], b = v[j];
                jv ka = f == JFL_DICTSORT  ? a.u.l->v[0]
                        : attr.t == JV_STR ? attr_path(c, a, attr.u.s)
                                           : a;
                jv kb = f == JFL_DICTSORT  ? b.u.l->v[0]
                        : attr.t == JV_STR ? attr_path(c, b, attr.u.s)
                                           : b;
                int r = jv_cmp(c, &ka, &kb);
                if (jv_truthy(&rev) ? r >= 0 : r <= 0) break;
                v[j - 1] = b;
                v[j] = a;
            }
        }
        return out;
    }
    case JFL_UNIQUE: {
        const jlist *l = jinja_iter(c, &x);
        jv out = jv_list_new(c, 0);
        jctx_charge(c, (uint64_t)l->n * l->n);
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < out.u.l->n && !seen; k++)
                seen = jv_eq(c, &out.u.l->v[k], &l->v[i]);
            if (!seen) jv_list_push(c, out.u.l, l->v[i]);
        }
        return out;
    }
    case JFL_INDENT: {
        jstr s = jv_str_of(c, &x);
        jv w = arg(args, npos, kwn, nkw, 0, "width");
        jv first = arg(args, npos, kwn, nkw, 1, "first");
        int64_t width = w.t == JV_UNDEF ? 4 : want_int(c, w, "indent");
        if (width < 0 || width > 64) jctx_fail(c, KL_EINVAL, "indent: width out of range");
        jbuf b = {0};
        bool at_start = jv_truthy(&first);
        for (size_t i = 0; i < s.n; i++) {
            if (at_start && s.p[i] != '\n')
                for (int64_t k = 0; k < width; k++)
                    jbuf_puts(c, &b, " ");
            at_start = false;
            jbuf_put(c, &b, s.p + i, 1);
            if (s.p[i] == '\n') at_start = true;
        }
        return jv_strn(b.p ? b.p : "", b.n);
    }
    default:
        jctx_fail(c, KL_EUNSUP, "unsupported filter");
    }
}

/* ---- tests ---- */
bool jinja_call_test(jctx *c, int t, jv x, jv *args, int nargs)
{
    switch (t) {
    case JT_DEFINED:
        return x.t != JV_UNDEF;
    case JT_UNDEFINED:
        return x.t == JV_UNDEF;
    case JT_NONE:
        return x.t == JV_NONE;
    case JT_STRING:
        return x.t == JV_STR;
    case JT_NUMBER:
        return x.t == JV_INT || x.t == JV_FLOAT;
    case JT_INTEGER:
        return x.t == JV_INT;
    case JT_FLOAT:
        return x.t == JV_FLOAT;
    case JT_MAPPING:
        return x.t == JV_DICT || x.t == JV_NS;
    case JT_ITERABLE:
        return x.t == JV_LIST || x.t == JV_DICT || x.t == JV_STR || x.t == JV_UNDEF;
    case JT_SEQUENCE:
        return x.t == JV_LIST || x.t == JV_DICT || x.t == JV_STR;
    case JT_BOOLEAN:
        return x.t == JV_BOOL;
    case JT_TRUE:
        return x.t == JV_BOOL && x.u.b;
    case JT_FALSE:
        return x.t == JV_BOOL && !x.u.b;
    case JT_CALLABLE:
        return x.t == JV_FUNC || x.t == JV_MACRO;
    case JT_EQ:
    case JT_NE:
    case JT_LT:
    case JT_GT:
    case JT_IN:
    case JT_DIVISIBLEBY:
        if (nargs < 1) jctx_fail(c, KL_EINVAL, "test '%s' needs an argument", test_names[t]);
        if (t == JT_EQ) return jv_eq(c, &x, &args[0]);
        if (t == JT_NE) return !jv_eq(c, &x, &args[0]);
        if (t == JT_LT) return jv_cmp(c, &x, &args[0]) < 0;
        if (t == JT_GT) return jv_cmp(c, &x, &args[0]) > 0;
        if (t == JT_DIVISIBLEBY) {
            int64_t d = want_int(c, args[0], "divisibleby"), v = want_int(c, x, "divisibleby");
            return d != 0 && d != -1 ? v % d == 0 : d == -1;
        }
        return jinja_contains(c, &args[0], &x);
    case JT_ODD:
    case JT_EVEN: {
        int64_t v = want_int(c, x, test_names[t]);
        return (v % 2 != 0) == (t == JT_ODD);
    }
    default:
        jctx_fail(c, KL_EUNSUP, "unsupported test");
    }
}

/* ---- methods ---- */
jv jinja_call_method(jctx *c, int m, jv obj, jv *args, int npos, jstr *kwn, int nkw)
{
    if (obj.t == JV_STR) {
        jstr s = obj.u.s;
        switch (m) {
        case JM_STRIP:
        case JM_LSTRIP:
        case JM_RSTRIP:
            return str_strip(c, s, arg(args, npos, kwn, nkw, 0, "chars"), m != JM_RSTRIP,
                             m != JM_LSTRIP);
        case JM_STARTSWITH:
        case JM_ENDSWITH:
            if (npos < 1) jctx_fail(c, KL_EINVAL, "%s needs an argument", method_names[m]);
            return jv_bool(str_affix(c, s, args[0], m == JM_ENDSWITH));
        case JM_SPLIT: {
            jv mx = arg(args, npos, kwn, nkw, 1, "maxsplit");
            return str_split(c, s, arg(args, npos, kwn, nkw, 0, "sep"),
                             mx.t == JV_UNDEF ? -1 : want_int(c, mx, "split"));
        }
        case JM_REPLACE: {
            if (npos < 2) jctx_fail(c, KL_EINVAL, "replace needs two arguments");
            jv cnt = arg(args, npos, kwn, nkw, 2, "count");
            return str_replace(c, s, want_str(c, args[0], "replace"),
                               want_str(c, args[1], "replace"),
                               cnt.t == JV_UNDEF ? -1 : want_int(c, cnt, "replace"));
        }
        case JM_UPPER:
            return str_case(c, s, 0);
        case JM_LOWER:
            return str_case(c, s, 1);
        case JM_CAPITALIZE:
            return str_case(c, s, 2);
        case JM_TITLE:
            return str_case(c, s, 3);
        case JM_FIND: {
            if (npos < 1) jctx_fail(c, KL_EINVAL, "find needs an argument");
            int64_t at = str_find(c, s, want_str(c, args[0], "find"), 0);
            if (at < 0) return jv_int(-1);
            return jv_int((int64_t)jstr_ncp((jstr){s.p, (size_t)at}));
        }
        case JM_COUNT_SUB: {
            if (npos < 1) jctx_fail(c, KL_EINVAL, "count needs an argument");
            jstr sub = want_str(c, args[0], "count");
            if (!sub.n) return jv_int((int64_t)jstr_ncp(s) + 1);
            int64_t n = 0, at;
            size_t i = 0;
            while ((at = str_find(c, s, sub, i)) >= 0) {
                n++;
                i = (size_t)at + sub.n;
            }
            return jv_int(n);
        }
        default:
            break;
        }
    } else if (obj.t == JV_DICT || obj.t == JV_NS) {
        switch (m) {
        case JM_ITEMS:
            return items_of(c, &obj);
        case JM_KEYS:
        case JM_VALUES: {
            jv l = jv_list_new(c, obj.u.d->n);
            memcpy(l.u.l->v, m == JM_KEYS ? obj.u.d->k : obj.u.d->v, sizeof(jv) * obj.u.d->n);
            l.u.l->n = obj.u.d->n;
            return l;
        }
        case JM_GET: {
            if (npos < 1) jctx_fail(c, KL_EINVAL, "get needs a key");
            jv *r = jv_dict_getv(c, obj.u.d, args[0]);
            return r ? *r : npos > 1 ? args[1] : jv_none();
        }
        default:
            break;
        }
    } else if (obj.t == JV_LOOP) {
        if (m == JM_CYCLE) {
            if (npos < 1) jctx_fail(c, KL_EINVAL, "loop.cycle needs arguments");
            // cppcheck-suppress zerodivcond ; jctx_fail does not return
            return args[obj.u.loop->index0 % npos];
        }
    } else if (obj.t == JV_UNDEF) {
        jctx_fail(c, KL_EINVAL, "'%s' of an undefined value", method_names[m]);
    }
    jctx_fail(c, KL_EINVAL, "%s has no method '%s'", jv_type_name(obj.t), method_names[m]);
}
