/* jinja/internal.h: the insides of the Jinja interpreter shared by parse.c,
 * value.c, builtin.c and eval.c. Not for other modules.
 *
 * Memory: the AST lives in the template's arena, values in a per-render arena; both are
 * freed whole, so nothing is reference-counted and errors can unwind with longjmp. */
#ifndef KILN_JINJA_INTERNAL_H
#define KILN_JINJA_INTERNAL_H
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "base/err.h"
#include "jinja/jinja.h"

/* ---- arena ---- */
typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *head;
    size_t used; /* bytes handed out so far */
    size_t cap;  /* limit on used */
} jarena;
/* Returns n zeroed bytes (8-aligned), or NULL when the cap is reached or malloc fails. */
void *jarena_alloc(jarena *a, size_t n);
void jarena_free(jarena *a);

/* ---- strings and values ---- */
typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

typedef enum jv_type {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,    /* namespace(): a dict whose attributes may be set */
    JV_LOOP,  /* the loop variable */
    JV_FUNC,  /* a global function (raise_exception, range ...) */
    JV_MACRO, /* a macro defined in the template */
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
struct jnode;

typedef struct jv {
    jv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;
        jlist *l;
        jdict *d; /* JV_DICT and JV_NS */
        jloop *loop;
        int fn;
        const struct jnode *macro;
    } u;
} jv;

struct jlist {
    jv *v;
    size_t n, cap;
    bool tuple; /* prints as (a, b) */
};
struct jdict {
    jv *k; /* keys: usually strings, compared with jv_eq */
    jv *v;
    size_t n, cap;
};
struct jloop {
    const jlist *items; /* what is iterated (after the loop filter) */
    int64_t index0;
    int depth;
};

/* ---- AST ---- */
typedef enum jn_kind {
    /* expressions */
    JN_LIT,    /* lit */
    JN_NAME,   /* name */
    JN_ATTR,   /* a.name */
    JN_ITEM,   /* a[b] */
    JN_SLICE,  /* a[b:c:d]; b, c, d may be NULL */
    JN_CALL,   /* name(args): op is a JF_* function, or -1 for a macro/variable */
    JN_METHOD, /* a.name(args): op is a JM_* method */
    JN_FILTER, /* a | name(args): op is a JFL_* filter */
    JN_TEST,   /* a is [not] name(args): op is a JT_* test, neg */
    JN_BIN,    /* a op b: op is a JO_* */
    JN_NOT,
    JN_NEG,
    JN_POS,
    JN_AND,
    JN_OR,
    JN_COND, /* b if a else c (c may be NULL) */
    JN_LIST, /* args; neg: a tuple */
    JN_DICT, /* args: key, value, key, value ... */
    /* statements */
    JN_BLOCK,    /* args: statements */
    JN_TEXT,     /* lit (a string) */
    JN_OUT,      /* {{ a }} */
    JN_IF,       /* if a: b else c (c: a block or a JN_IF for elif, may be NULL) */
    JN_FOR,      /* for name[, name2] in a [if d]: b else c */
    JN_SET,      /* name = a, or name.name2 = a (name2.n > 0) */
    JN_SETBLOCK, /* name = rendered b */
    JN_BREAK,
    JN_CONTINUE,
    JN_MACRO, /* macro name(params: kwnames, defaults: args, NULL when none): b */
} jn_kind;

typedef struct jnode {
    jn_kind kind;
    int op;
    int line;
    bool neg;
    jstr name, name2;
    struct jnode *a, *b, *c, *d;
    struct jnode **args; /* positional then keyword arguments; list items; statements */
    int nargs;
    jstr *kwnames; /* names of the last nkw args */
    int nkw;
    jv lit;
} jnode;

/* binary operators */
enum {
    JO_ADD,
    JO_SUB,
    JO_MUL,
    JO_DIV,
    JO_FDIV,
    JO_MOD,
    JO_POW,
    JO_CONCAT,
    JO_EQ,
    JO_NE,
    JO_LT,
    JO_LE,
    JO_GT,
    JO_GE,
    JO_IN,
    JO_NOTIN,
};

/* ---- builtins (builtin.c): name tables resolved at parse time ---- */
enum { /* functions */
       JF_RANGE,
       JF_RAISE,
       JF_NAMESPACE,
       JF_STRFTIME,
       JF_DICT,
       JF_COUNT
};
enum { /* filters */
       JFL_TRIM,
       JFL_LENGTH,
       JFL_UPPER,
       JFL_LOWER,
       JFL_TOJSON,
       JFL_DEFAULT,
       JFL_FIRST,
       JFL_LAST,
       JFL_JOIN,
       JFL_REPLACE,
       JFL_CAPITALIZE,
       JFL_TITLE,
       JFL_ITEMS,
       JFL_LIST,
       JFL_STRING,
       JFL_INT,
       JFL_FLOAT,
       JFL_ABS,
       JFL_SELECTATTR,
       JFL_REJECTATTR,
       JFL_SELECT,
       JFL_REJECT,
       JFL_MAP,
       JFL_SAFE,
       JFL_REVERSE,
       JFL_SORT,
       JFL_UNIQUE,
       JFL_DICTSORT,
       JFL_INDENT,
       JFL_BOOL,
       JFL_COUNT
};
enum { /* tests */
       JT_DEFINED,
       JT_UNDEFINED,
       JT_NONE,
       JT_STRING,
       JT_NUMBER,
       JT_INTEGER,
       JT_FLOAT,
       JT_MAPPING,
       JT_ITERABLE,
       JT_SEQUENCE,
       JT_BOOLEAN,
       JT_TRUE,
       JT_FALSE,
       JT_EQ,
       JT_NE,
       JT_ODD,
       JT_EVEN,
       JT_DIVISIBLEBY,
       JT_IN,
       JT_CALLABLE,
       JT_LT,
       JT_GT,
       JT_COUNT
};
enum { /* methods */
       JM_STRIP,
       JM_LSTRIP,
       JM_RSTRIP,
       JM_STARTSWITH,
       JM_ENDSWITH,
       JM_SPLIT,
       JM_REPLACE,
       JM_UPPER,
       JM_LOWER,
       JM_TITLE,
       JM_CAPITALIZE,
       JM_FIND,
       JM_COUNT_SUB,
       JM_ITEMS,
       JM_GET,
       JM_KEYS,
       JM_VALUES,
       JM_CYCLE,
       JM_COUNT
};
/* Index of name in the table of that kind, or -1. */
int jinja_func_find(jstr name);
int jinja_filter_find(jstr name);
int jinja_test_find(jstr name);
int jinja_method_find(jstr name);
const char *jinja_func_name(int id);

/* ---- the template ---- */
struct jinja_tmpl {
    jarena arena;
    jnode *root;
    char *name; /* for messages */
    char *src;  /* copy of the source: the AST points into it */
    size_t len;
};

/* ---- render state ---- */
typedef struct jscope jscope;
struct jscope {
    jscope *parent;
    jstr *names;
    jv *vals;
    size_t n, cap;
};

typedef struct jctx {
    const jinja_tmpl *t;
    const jinja_input *in;
    jinja_limits lim;
    jarena arena; /* every value of this render */
    char *out;    /* (out_cap) the text rendered so far, malloc'd */
    size_t out_len, out_cap;
    uint64_t steps;
    int depth;
    int line; /* of the node being evaluated, for messages */
    jscope *root;
    kl_err *err;
    int rc;
    jmp_buf jb;
} jctx;

/* Sets err to "<name>:<line>: <msg>" with code and unwinds to jinja_render. */
_Noreturn void jctx_fail(jctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Charges n steps; unwinds with KL_ERANGE past the limit. */
void jctx_charge(jctx *c, uint64_t n);
/* Arena allocation that unwinds with KL_ERANGE past max_mem. */
void *jctx_alloc(jctx *c, size_t n);

/* ---- values (value.c) ---- */
static inline jv jv_undef(void)
{
    jv v = {.t = JV_UNDEF};
    return v;
}
static inline jv jv_none(void)
{
    jv v = {.t = JV_NONE};
    return v;
}
static inline jv jv_bool(bool b)
{
    jv v = {.t = JV_BOOL, .u.b = b};
    return v;
}
static inline jv jv_int(int64_t i)
{
    jv v = {.t = JV_INT, .u.i = i};
    return v;
}
static inline jv jv_float(double f)
{
    jv v = {.t = JV_FLOAT, .u.f = f};
    return v;
}
static inline jv jv_strn(const char *p, size_t n)
{
    jv v = {.t = JV_STR, .u.s = {p, n}};
    return v;
}

jv jv_str_copy(jctx *c, const char *p, size_t n);
jv jv_str_cat(jctx *c, jstr a, jstr b);
jv jv_list_new(jctx *c, size_t cap);
void jv_list_push(jctx *c, jlist *l, jv v);
jv jv_dict_new(jctx *c, size_t cap);
void jv_dict_set(jctx *c, jdict *d, jv k, jv v);
/* The value under key k, or NULL. */
jv *jv_dict_get(const jdict *d, jstr k);
jv *jv_dict_getv(jctx *c, const jdict *d, jv k);

bool jv_truthy(const jv *v);
/* Python ==: numbers by value, strings by bytes, lists and dicts deeply. */
bool jv_eq(jctx *c, const jv *a, const jv *b);
/* <0, 0, >0 for numbers or strings; unwinds otherwise. */
int jv_cmp(jctx *c, const jv *a, const jv *b);
const char *jv_type_name(jv_type t);

/* A growable string in the render arena. */
typedef struct jbuf {
    char *p;
    size_t n, cap;
} jbuf;
void jbuf_put(jctx *c, jbuf *b, const char *s, size_t n);
static inline void jbuf_puts(jctx *c, jbuf *b, const char *s)
{
    jbuf_put(c, b, s, strlen(s));
}
/* Appends str(v) as Python/Jinja prints it (None, True, 1.5, ['a'], {'k': 1}). */
void jv_to_str(jctx *c, jbuf *b, const jv *v);
/* str(v) as a string value (strings are returned as they are). */
jstr jv_str_of(jctx *c, const jv *v);
/* Appends v as JSON the way Python's json.dumps writes it (ensure_ascii off); indent < 0:
 * one line with ", " and ": " separators. */
void jv_to_json(jctx *c, jbuf *b, const jv *v, int indent, int level);
/* Converts a JSON value to a jinja value (depth-limited). */
jv jv_from_json(jctx *c, const json_t *j, int depth);

/* Unicode code points of a string: count, and the byte offset of code point i. */
size_t jstr_ncp(jstr s);
/* Byte offsets of each code point plus the end: (ncp + 1) entries in the arena. */
size_t *jstr_cp_offsets(jctx *c, jstr s, size_t *ncp);

/* ---- builtins (builtin.c) ---- */
jv jinja_call_func(jctx *c, int fn, jv *args, int npos, jstr *kwn, int nkw);
jv jinja_call_filter(jctx *c, int f, jv x, jv *args, int npos, jstr *kwn, int nkw);
bool jinja_call_test(jctx *c, int t, jv x, jv *args, int nargs);
jv jinja_call_method(jctx *c, int m, jv obj, jv *args, int npos, jstr *kwn, int nkw);
/* Iteration view: a list of the items of v (list items, dict keys, string code points);
 * undefined iterates as empty; anything else unwinds. */
const jlist *jinja_iter(jctx *c, const jv *v);
/* Lookup of attribute name on v (dict key, namespace attribute, loop.*); undefined when
 * absent. */
jv jinja_getattr(jctx *c, const jv *v, jstr name);
/* v[k] (list index with negatives, dict key, string code point); undefined when absent. */
jv jinja_getitem(jctx *c, const jv *v, const jv *k);
/* needle in hay: substring, list item or dict key. */
bool jinja_contains(jctx *c, const jv *hay, const jv *needle);
/* Python slicing of lists and strings. */
jv jinja_slice(jctx *c, const jv *v, const jv *a, const jv *b, const jv *s);

static inline bool jstr_eq(jstr a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}
#endif
