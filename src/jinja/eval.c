/* jinja/eval.c: renders a parsed template. Statements write to the output (or to a
 * capture buffer for {% set %}..{% endset %} and macro calls); expressions return values
 * allocated in the render's arena. Every node charges a step and nests one level deeper,
 * so a render is bounded in time, memory, output and stack; errors (and raise_exception)
 * unwind with longjmp to jinja_render, which frees everything. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/internal.h"

const jinja_limits jinja_default_limits = {
    .max_out = (size_t)32 << 20,
    .max_mem = (size_t)256 << 20,
    .max_steps = 50u * 1000 * 1000,
    .max_depth = 400,
};

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

_Noreturn void jctx_fail(jctx *c, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->line < 0)
        kl_errf(c->err, code, "%s", msg);
    else
        kl_errf(c->err, code, "%s:%d: %s", c->t->name, c->line, msg);
    c->rc = code;
    longjmp(c->jb, 1);
}

void jctx_charge(jctx *c, uint64_t n)
{
    c->steps += n;
    if (c->steps > c->lim.max_steps)
        jctx_fail(c, KL_ERANGE, "template takes too long (more than %llu steps)",
                  (unsigned long long)c->lim.max_steps);
}

void *jctx_alloc(jctx *c, size_t n)
{
    void *p = jarena_alloc(&c->arena, n);
    if (!p) {
        if (c->arena.used + n > c->arena.cap || n > c->arena.cap)
            jctx_fail(c, KL_ERANGE, "template uses too much memory (more than %zu bytes)",
                      c->lim.max_mem);
        jctx_fail(c, KL_ENOMEM, "out of memory");
    }
    return p;
}

/* ---- scopes ---- */
static jscope *scope_new(jctx *c, jscope *parent)
{
    jscope *s = jctx_alloc(c, sizeof *s);
    s->parent = parent;
    return s;
}

static jv *scope_find(jscope *s, jstr name)
{
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (s->names[i].n == name.n && !memcmp(s->names[i].p, name.p, name.n))
                return &s->vals[i];
    return NULL;
}

static void scope_set(jctx *c, jscope *s, jstr name, jv v)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->names[i].n == name.n && !memcmp(s->names[i].p, name.p, name.n)) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        jstr *nn = jctx_alloc(c, sizeof(jstr) * nc);
        jv *nv = jctx_alloc(c, sizeof(jv) * nc);
        if (s->n) {
            memcpy(nn, s->names, sizeof(jstr) * s->n);
            memcpy(nv, s->vals, sizeof(jv) * s->n);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = nc;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

static void scope_setc(jctx *c, jscope *s, const char *name, jv v)
{
    scope_set(c, s, (jstr){name, strlen(name)}, v);
}

/* ---- output ---- */
typedef struct jsink {
    jbuf *capture; /* NULL: the render's output */
} jsink;

static void emit(jctx *c, const jsink *k, const char *s, size_t n)
{
    if (!n) return;
    jctx_charge(c, n >> 5);
    if (k->capture) {
        jbuf_put(c, k->capture, s, n);
        return;
    }
    if (n > c->lim.max_out || c->out_len > c->lim.max_out - n)
        jctx_fail(c, KL_ERANGE, "rendered text exceeds %zu bytes", c->lim.max_out);
    if (c->out_cap - c->out_len < n + 1) {
        size_t nc = c->out_cap ? c->out_cap : 4096;
        while (nc - c->out_len < n + 1)
            nc *= 2;
        char *p = realloc(c->out, nc);
        if (!p) jctx_fail(c, KL_ENOMEM, "out of memory");
        c->out = p;
        c->out_cap = nc;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
    c->out[c->out_len] = 0;
}

static void emit_value(jctx *c, const jsink *k, const jv *v)
{
    if (v->t == JV_STR) {
        emit(c, k, v->u.s.p, v->u.s.n);
        return;
    }
    jbuf b = {0};
    jv_to_str(c, &b, v);
    emit(c, k, b.p, b.n);
}

/* ---- expressions ---- */
static jv eval(jctx *c, jscope *s, const jnode *n);
static int exec(jctx *c, jscope *s, const jnode *n, const jsink *k);

bool jinja_contains(jctx *c, const jv *hay, const jv *needle)
{
    switch (hay->t) {
    case JV_STR: {
        if (needle->t != JV_STR)
            jctx_fail(c, KL_EINVAL, "'in <string>' requires a string, not %s",
                      jv_type_name(needle->t));
        jstr h = hay->u.s, nd = needle->u.s;
        jctx_charge(c, h.n >> 5);
        if (!nd.n) return true;
        if (nd.n > h.n) return false;
        return memmem(h.p, h.n, nd.p, nd.n) != NULL;
    }
    case JV_LIST:
        for (size_t i = 0; i < hay->u.l->n; i++)
            if (jv_eq(c, &hay->u.l->v[i], needle)) return true;
        return false;
    case JV_DICT:
    case JV_NS:
        return jv_dict_getv(c, hay->u.d, *needle) != NULL;
    case JV_UNDEF:
        return false;
    default:
        jctx_fail(c, KL_EINVAL, "'in' of %s", jv_type_name(hay->t));
    }
}

static bool is_num(const jv *v)
{
    return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}
static double fnum(const jv *v)
{
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t inum(const jv *v)
{
    return v->t == JV_INT ? v->u.i : v->u.b;
}

static const char *op_name(int op)
{
    static const char *const names[] = {"+",  "-",  "*", "/",  "//", "%",  "**", "~",
                                        "==", "!=", "<", "<=", ">",  ">=", "in", "not in"};
    return op >= 0 && op < (int)(sizeof names / sizeof names[0]) ? names[op] : "?";
}

static jv repeat(jctx *c, const jv *seq, int64_t times)
{
    size_t n = seq->t == JV_STR ? seq->u.s.n : seq->u.l->n;
    /* an empty sequence repeated is empty at once: the loops below would otherwise run
     * `times` rounds that add nothing, and no memory limit would ever stop them */
    if (times < 0 || !n) times = 0;
    if (seq->t == JV_STR) {
        if (times && (uint64_t)times > c->lim.max_mem / n)
            jctx_fail(c, KL_ERANGE, "string repetition too large");
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++)
            jbuf_put(c, &b, seq->u.s.p, seq->u.s.n);
        return jv_strn(b.p ? b.p : "", b.n);
    }
    if (times && (uint64_t)times > c->lim.max_mem / (n * sizeof(jv)))
        jctx_fail(c, KL_ERANGE, "list repetition too large");
    jv out = jv_list_new(c, n * (size_t)times);
    for (int64_t i = 0; i < times; i++) {
        jctx_charge(c, n);
        memcpy(out.u.l->v + out.u.l->n, seq->u.l->v, sizeof(jv) * n);
        out.u.l->n += n;
    }
    return out;
}

static jv binop(jctx *c, int op, jv a, jv b)
{
    switch (op) {
    case JO_EQ:
        return jv_bool(jv_eq(c, &a, &b));
    case JO_NE:
        return jv_bool(!jv_eq(c, &a, &b));
    case JO_LT:
        return jv_bool(jv_cmp(c, &a, &b) < 0);
    case JO_LE:
        return jv_bool(jv_cmp(c, &a, &b) <= 0);
    case JO_GT:
        return jv_bool(jv_cmp(c, &a, &b) > 0);
    case JO_GE:
        return jv_bool(jv_cmp(c, &a, &b) >= 0);
    case JO_IN:
        return jv_bool(jinja_contains(c, &b, &a));
    case JO_NOTIN:
        return jv_bool(!jinja_contains(c, &b, &a));
    case JO_CONCAT:
        return jv_str_cat(c, jv_str_of(c, &a), jv_str_of(c, &b));
    default:
        break;
    }
    if (op == JO_ADD) {
        if (a.t == JV_STR && b.t == JV_STR) return jv_str_cat(c, a.u.s, b.u.s);
        if (a.t == JV_LIST && b.t == JV_LIST) {
            jv out = jv_list_new(c, a.u.l->n + b.u.l->n);
            jctx_charge(c, out.u.l->cap);
            if (a.u.l->n) memcpy(out.u.l->v, a.u.l->v, sizeof(jv) * a.u.l->n);
            if (b.u.l->n) memcpy(out.u.l->v + a.u.l->n, b.u.l->v, sizeof(jv) * b.u.l->n);
            out.u.l->n = a.u.l->n + b.u.l->n;
            return out;
        }
    }
    if (op == JO_MUL) {
        if ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))
            return repeat(c, &a, inum(&b));
        if ((b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL))
            return repeat(c, &b, inum(&a));
    }
    if (!is_num(&a) || !is_num(&b))
        jctx_fail(c, KL_EINVAL, "unsupported operand types for %s: %s and %s", op_name(op),
                  jv_type_name(a.t), jv_type_name(b.t));
    bool ints = a.t != JV_FLOAT && b.t != JV_FLOAT;
    int64_t x = ints ? inum(&a) : 0, y = ints ? inum(&b) : 0, r;
    double fx = fnum(&a), fy = fnum(&b);
    switch (op) {
    case JO_ADD:
        if (ints && !__builtin_add_overflow(x, y, &r)) return jv_int(r);
        return jv_float(fx + fy);
    case JO_SUB:
        if (ints && !__builtin_sub_overflow(x, y, &r)) return jv_int(r);
        return jv_float(fx - fy);
    case JO_MUL:
        if (ints && !__builtin_mul_overflow(x, y, &r)) return jv_int(r);
        return jv_float(fx * fy);
    case JO_DIV:
        if (fy == 0.0) jctx_fail(c, KL_EINVAL, "division by zero");
        return jv_float(fx / fy);
    case JO_FDIV:
    case JO_MOD:
        if (ints) {
            if (y == 0) jctx_fail(c, KL_EINVAL, "division by zero");
            if (x == INT64_MIN && y == -1) return op == JO_FDIV ? jv_float(-(double)x) : jv_int(0);
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { /* Python floors */
                q--;
                m += y;
            }
            return jv_int(op == JO_FDIV ? q : m);
        }
        if (fy == 0.0) jctx_fail(c, KL_EINVAL, "division by zero");
        if (op == JO_FDIV) return jv_float(floor(fx / fy));
        {
            double m = fmod(fx, fy);
            if (m != 0.0 && ((m < 0) != (fy < 0))) m += fy;
            return jv_float(m);
        }
    case JO_POW:
        if (ints && y >= 0) {
            int64_t acc = 1;
            bool ovf = false;
            for (int64_t i = 0; i < y && !ovf; i++) {
                ovf = __builtin_mul_overflow(acc, x, &acc);
                if (x == 0 || x == 1) break;
                if (i > 64 && !ovf && (x == -1)) break;
            }
            if (x == 0) acc = y == 0 ? 1 : 0;
            if (x == 1) acc = 1;
            if (x == -1) acc = (y % 2) ? -1 : 1;
            if (!ovf) return jv_int(acc);
        }
        return jv_float(pow(fx, fy));
    default:
        jctx_fail(c, KL_EINVAL, "unknown operator");
    }
}

/* Evaluates n's arguments into a fresh array (positional first, then keyword). */
static jv *eval_args(jctx *c, jscope *s, const jnode *n)
{
    if (!n->nargs) return NULL;
    jv *v = jctx_alloc(c, sizeof(jv) * (size_t)n->nargs);
    for (int i = 0; i < n->nargs; i++)
        v[i] = eval(c, s, n->args[i]);
    return v;
}

static jv call_macro(jctx *c, const jnode *m, jv *args, int npos, jstr *kwn, int nkw)
{
    if (npos > m->nkw)
        jctx_fail(c, KL_EINVAL, "macro '%.*s' takes %d arguments", (int)m->name.n, m->name.p,
                  m->nkw);
    jscope *s = scope_new(c, c->root);
    for (int i = 0; i < m->nkw; i++) {
        jv v = jv_undef();
        bool have = false;
        if (i < npos) {
            v = args[i];
            have = true;
        }
        for (int k = 0; k < nkw; k++)
            if (kwn[k].n == m->kwnames[i].n && !memcmp(kwn[k].p, m->kwnames[i].p, kwn[k].n)) {
                v = args[npos + k];
                have = true;
            }
        if (!have && m->args[i]) v = eval(c, s, m->args[i]);
        scope_set(c, s, m->kwnames[i], v);
    }
    jbuf b = {0};
    jsink k = {.capture = &b};
    exec(c, s, m->b, &k);
    return jv_strn(b.p ? b.p : "", b.n);
}

static jv eval(jctx *c, jscope *s, const jnode *n)
{
    if (++c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "template recursion too deep");
    jctx_charge(c, 1);
    c->line = n->line;
    jv r;
    switch (n->kind) {
    case JN_LIT:
        r = n->lit;
        break;
    case JN_NAME: {
        jv *v = scope_find(s, n->name);
        r = v ? *v : jv_undef();
        break;
    }
    case JN_ATTR: {
        jv a = eval(c, s, n->a);
        c->line = n->line;
        r = jinja_getattr(c, &a, n->name);
        break;
    }
    case JN_ITEM: {
        jv a = eval(c, s, n->a), k = eval(c, s, n->b);
        c->line = n->line;
        r = jinja_getitem(c, &a, &k);
        break;
    }
    case JN_SLICE: {
        jv a = eval(c, s, n->a);
        jv x = n->b ? eval(c, s, n->b) : jv_none();
        jv y = n->c ? eval(c, s, n->c) : jv_none();
        jv z = n->d ? eval(c, s, n->d) : jv_none();
        c->line = n->line;
        r = jinja_slice(c, &a, &x, &y, &z);
        break;
    }
    case JN_CALL: {
        jv *args = eval_args(c, s, n);
        c->line = n->line;
        int npos = n->nargs - n->nkw;
        if (n->op >= 0) {
            r = jinja_call_func(c, n->op, args, npos, n->kwnames, n->nkw);
        } else {
            jv *m = scope_find(s, n->name);
            if (!m || m->t != JV_MACRO)
                jctx_fail(c, KL_EINVAL, "'%.*s' is not defined before it is called", (int)n->name.n,
                          n->name.p);
            r = call_macro(c, m->u.macro, args, npos, n->kwnames, n->nkw);
        }
        break;
    }
    case JN_METHOD: {
        jv obj = eval(c, s, n->a);
        jv *args = eval_args(c, s, n);
        c->line = n->line;
        r = jinja_call_method(c, n->op, obj, args, n->nargs - n->nkw, n->kwnames, n->nkw);
        break;
    }
    case JN_FILTER: {
        jv x = eval(c, s, n->a);
        jv *args = eval_args(c, s, n);
        c->line = n->line;
        r = jinja_call_filter(c, n->op, x, args, n->nargs - n->nkw, n->kwnames, n->nkw);
        break;
    }
    case JN_TEST: {
        jv x = eval(c, s, n->a);
        jv *args = eval_args(c, s, n);
        c->line = n->line;
        r = jv_bool(jinja_call_test(c, n->op, x, args, n->nargs) != n->neg);
        break;
    }
    case JN_BIN: {
        jv a = eval(c, s, n->a), b = eval(c, s, n->b);
        c->line = n->line;
        r = binop(c, n->op, a, b);
        break;
    }
    case JN_NOT: {
        jv a = eval(c, s, n->a);
        r = jv_bool(!jv_truthy(&a));
        break;
    }
    case JN_NEG:
    case JN_POS: {
        jv a = eval(c, s, n->a);
        c->line = n->line;
        if (a.t == JV_INT)
            r = n->kind == JN_POS    ? a
                : a.u.i == INT64_MIN ? jv_float(9.2233720368547758e18)
                                     : jv_int(-a.u.i);
        else if (a.t == JV_FLOAT)
            r = jv_float(n->kind == JN_POS ? a.u.f : -a.u.f);
        else if (a.t == JV_BOOL)
            r = jv_int(n->kind == JN_POS ? a.u.b : -(int64_t)a.u.b);
        else
            jctx_fail(c, KL_EINVAL, "bad operand type for unary %c: %s",
                      n->kind == JN_POS ? '+' : '-', jv_type_name(a.t));
        break;
    }
    case JN_AND: {
        jv a = eval(c, s, n->a);
        r = jv_truthy(&a) ? eval(c, s, n->b) : a;
        break;
    }
    case JN_OR: {
        jv a = eval(c, s, n->a);
        r = jv_truthy(&a) ? a : eval(c, s, n->b);
        break;
    }
    case JN_COND: {
        jv cond = eval(c, s, n->a);
        r = jv_truthy(&cond) ? eval(c, s, n->b) : n->c ? eval(c, s, n->c) : jv_undef();
        break;
    }
    case JN_LIST: {
        r = jv_list_new(c, (size_t)n->nargs);
        r.u.l->tuple = n->neg;
        for (int i = 0; i < n->nargs; i++)
            r.u.l->v[i] = eval(c, s, n->args[i]);
        r.u.l->n = (size_t)n->nargs;
        break;
    }
    case JN_DICT: {
        r = jv_dict_new(c, (size_t)n->nargs / 2);
        for (int i = 0; i + 1 < n->nargs; i += 2) {
            jv k = eval(c, s, n->args[i]), v = eval(c, s, n->args[i + 1]);
            jv_dict_set(c, r.u.d, k, v);
        }
        break;
    }
    default:
        jctx_fail(c, KL_EINVAL, "not an expression");
    }
    c->depth--;
    return r;
}

/* ---- statements ---- */
static void bind_loop_vars(jctx *c, jscope *s, const jnode *n, jv item)
{
    if (!n->name2.n) {
        scope_set(c, s, n->name, item);
        return;
    }
    if (item.t != JV_LIST || item.u.l->n != 2)
        jctx_fail(c, KL_EINVAL, "cannot unpack %s into two loop variables", jv_type_name(item.t));
    scope_set(c, s, n->name, item.u.l->v[0]);
    scope_set(c, s, n->name2, item.u.l->v[1]);
}

static int exec_for(jctx *c, jscope *s, const jnode *n, const jsink *k)
{
    jv it = eval(c, s, n->a);
    c->line = n->line;
    const jlist *items = jinja_iter(c, &it);
    jscope *body = scope_new(c, s);
    if (n->d) { /* the loop filter sees the loop variables but not loop.* */
        jv fl = jv_list_new(c, 0);
        for (size_t i = 0; i < items->n; i++) {
            body->n = 0;
            bind_loop_vars(c, body, n, items->v[i]);
            jv keep = eval(c, body, n->d);
            if (jv_truthy(&keep)) jv_list_push(c, fl.u.l, items->v[i]);
        }
        items = fl.u.l;
    }
    jloop *L = jctx_alloc(c, sizeof *L);
    L->items = items;
    jv *outer = scope_find(s, (jstr){"loop", 4});
    L->depth = outer && outer->t == JV_LOOP ? outer->u.loop->depth + 1 : 1;
    jv lv = {.t = JV_LOOP, .u.loop = L};
    for (size_t i = 0; i < items->n; i++) {
        jctx_charge(c, 1);
        body->n = 0;
        L->index0 = (int64_t)i;
        bind_loop_vars(c, body, n, items->v[i]);
        scope_setc(c, body, "loop", lv);
        int fl = exec(c, body, n->b, k);
        if (fl == FLOW_BREAK) break;
    }
    if (!items->n && n->c) return exec(c, s, n->c, k);
    return FLOW_NEXT;
}

static int exec(jctx *c, jscope *s, const jnode *n, const jsink *k)
{
    if (++c->depth > c->lim.max_depth) jctx_fail(c, KL_ERANGE, "template recursion too deep");
    jctx_charge(c, 1);
    c->line = n->line;
    int fl = FLOW_NEXT;
    switch (n->kind) {
    case JN_BLOCK:
        for (int i = 0; i < n->nargs && fl == FLOW_NEXT; i++)
            fl = exec(c, s, n->args[i], k);
        break;
    case JN_TEXT:
        emit(c, k, n->lit.u.s.p, n->lit.u.s.n);
        break;
    case JN_OUT: {
        jv v = eval(c, s, n->a);
        emit_value(c, k, &v);
        break;
    }
    case JN_IF: {
        jv cond = eval(c, s, n->a);
        if (jv_truthy(&cond))
            fl = exec(c, s, n->b, k);
        else if (n->c)
            fl = exec(c, s, n->c, k);
        break;
    }
    case JN_FOR:
        fl = exec_for(c, s, n, k);
        break;
    case JN_SET: {
        jv v = eval(c, s, n->a);
        c->line = n->line;
        if (n->name2.n) {
            jv *ns = scope_find(s, n->name);
            if (!ns || ns->t != JV_NS)
                jctx_fail(c, KL_EINVAL, "cannot set an attribute of '%.*s': not a namespace",
                          (int)n->name.n, n->name.p);
            jv_dict_set(c, ns->u.d, jv_strn(n->name2.p, n->name2.n), v);
        } else {
            scope_set(c, s, n->name, v);
        }
        break;
    }
    case JN_SETBLOCK: {
        jbuf b = {0};
        jsink cap = {.capture = &b};
        exec(c, s, n->b, &cap);
        scope_set(c, s, n->name, jv_strn(b.p ? b.p : "", b.n));
        break;
    }
    case JN_MACRO: {
        jv m = {.t = JV_MACRO, .u.macro = n};
        scope_set(c, s, n->name, m);
        break;
    }
    case JN_BREAK:
        fl = FLOW_BREAK;
        break;
    case JN_CONTINUE:
        fl = FLOW_CONTINUE;
        break;
    default:
        jctx_fail(c, KL_EINVAL, "not a statement");
    }
    c->depth--;
    return fl;
}

/* ---- entry ---- */
static jv cstr(jctx *c, const char *s)
{
    (void)c;
    return s ? jv_strn(s, strlen(s)) : jv_none();
}

int jinja_render(const jinja_tmpl *t, const jinja_input *in, const jinja_limits *lim, char **out,
                 size_t *out_len, bool *raised, kl_err *err)
{
    if (raised) *raised = false;
    jctx *c = calloc(1, sizeof *c);
    if (!c) return kl_errf(err, KL_ENOMEM, "%s: out of memory", t->name);
    c->t = t;
    c->in = in;
    c->lim = lim ? *lim : jinja_default_limits;
    c->arena.cap = c->lim.max_mem;
    c->err = err;
    if (setjmp(c->jb)) {
        int rc = c->rc;
        if (raised) *raised = c->line < 0;
        free(c->out);
        jarena_free(&c->arena);
        free(c);
        return rc;
    }
    jscope *g = scope_new(c, NULL);
    c->root = g;
    for (int f = 0; f < JF_COUNT; f++) {
        jv fv = {.t = JV_FUNC, .u.fn = f};
        scope_setc(c, g, jinja_func_name(f), fv);
    }
    if (in->n_msgs < 0) jctx_fail(c, KL_EINVAL, "negative message count");
    jv msgs = jv_list_new(c, (size_t)in->n_msgs);
    for (int i = 0; i < in->n_msgs; i++) {
        jv m = jv_dict_new(c, 2);
        jv_dict_set(c, m.u.d, jv_strn("role", 4), cstr(c, in->msgs[i].role));
        jv_dict_set(c, m.u.d, jv_strn("content", 7), cstr(c, in->msgs[i].content));
        msgs.u.l->v[i] = m;
    }
    msgs.u.l->n = (size_t)in->n_msgs;
    scope_setc(c, g, "messages", msgs);
    scope_setc(c, g, "add_generation_prompt", jv_bool(in->add_generation_prompt));
    scope_setc(c, g, "bos_token", in->bos_token ? cstr(c, in->bos_token) : jv_strn("", 0));
    scope_setc(c, g, "eos_token", in->eos_token ? cstr(c, in->eos_token) : jv_strn("", 0));
    scope_setc(c, g, "tools", jv_none());
    if (in->vars && json_is_object(in->vars)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)in->vars, key, val)
        {
            jv kv = jv_str_copy(c, key, strlen(key));
            scope_set(c, g, kv.u.s, jv_from_json(c, val, 0));
        }
    }
    jsink k = {0};
    exec(c, g, t->root, &k);
    char *res = c->out;
    size_t n = c->out_len;
    if (!res) {
        res = calloc(1, 1);
        if (!res) jctx_fail(c, KL_ENOMEM, "out of memory");
    }
    c->out = NULL;
    jarena_free(&c->arena);
    free(c);
    *out = res;
    if (out_len) *out_len = n;
    return 0;
}
