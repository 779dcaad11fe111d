/* grammar/schema.c: JSON Schema into an automaton whose sentences are JSON texts that
 * validate against the schema.
 *
 * Supported (drafts 7 to 2020-12): type (one or a list), enum, const, properties, required,
 * additionalProperties (false, true or a schema), items (a schema; draft-7's array form and
 * additionalItems), prefixItems, minItems, maxItems, minLength, maxLength, pattern,
 * format (date, time, date-time, uuid, email, ipv4), minimum / maximum / exclusiveMinimum /
 * exclusiveMaximum (integers exactly; numbers by their integer part), anyOf, oneOf (as
 * anyOf: the alternatives should not overlap), allOf of one schema, $ref to "#..." JSON
 * pointers ($defs, definitions, recursion included). Annotations (title, description,
 * default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are ignored.
 * Any other keyword is refused with its name and place (KL_EUNSUP): never ignored.
 *
 * Choices made for generation (each output still validates):
 *   - properties come in the schema's order; optional ones may be left out;
 *   - without additionalProperties, an object with "properties" gets no other properties
 *     (as OpenAI's strict mode, XGrammar and llama.cpp), one without gets any;
 *   - additional property names are written without escapes, never one of "properties";
 *   - numbers with bounds are written without an exponent; fractional bounds are rounded
 *     inwards (minimum 0.5 generates from 1);
 *   - whitespace between tokens is bounded (json.c). */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

typedef struct ref_rule {
    char *ptr;
    int32_t rule;
} ref_rule;

typedef struct sc {
    nfa *b;
    json_t *root;
    int max_nesting;
    ref_rule *refs;
    int n_refs, cap_refs;
    int n_items; /* item rules made (names) */
} sc;

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64 };

static frag schema(sc *c, json_t *s, int depth, const char *path);

static frag fail(sc *c, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static frag fail(sc *c, int code, const char *path, const char *fmt, ...)
{
    char m[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    nfa_fail(c->b, code, "%s at %.200s", m, path[0] ? path : "/");
    return FRAG_ERR;
}

static const char *const annotations[] = {
    "title",      "description", "default",   "examples", "$schema",     "$id", "$comment",
    "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", NULL};
static const char *const keywords[] = {"type",
                                       "enum",
                                       "const",
                                       "properties",
                                       "required",
                                       "additionalProperties",
                                       "items",
                                       "prefixItems",
                                       "additionalItems",
                                       "minItems",
                                       "maxItems",
                                       "minLength",
                                       "maxLength",
                                       "pattern",
                                       "format",
                                       "minimum",
                                       "maximum",
                                       "exclusiveMinimum",
                                       "exclusiveMaximum",
                                       "anyOf",
                                       "oneOf",
                                       "allOf",
                                       "$ref",
                                       NULL};

static bool in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k)) return true;
    return false;
}

/* ---- literals ---- */

static frag literal(sc *c, const json_t *v, const char *path)
{
    char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!txt) return fail(c, KL_EINVAL, path, "%s", "a value that cannot be written as JSON");
    frag f = fr_lit(c->b, txt, strlen(txt));
    free(txt);
    return f;
}

static int type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return T_NULL;
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOL;
    case JSON_INTEGER:
        return T_INT | T_NUM;
    case JSON_REAL:
        return floor(json_real_value(v)) == json_real_value(v) ? T_INT | T_NUM : T_NUM;
    case JSON_STRING:
        return T_STR;
    case JSON_ARRAY:
        return T_ARR;
    default:
        return T_OBJ;
    }
}

/* ---- numbers ---- */

static bool num(const json_t *v, double *out)
{
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Integer bounds [*lo, *hi] (has_* false: open) from minimum & co; false after failing. */
static bool int_bounds(sc *c, json_t *s, const char *path, bool *has_lo, int64_t *lo, bool *has_hi,
                       int64_t *hi)
{
    *has_lo = *has_hi = false;
    const double cap = 1e16;
    const char *names[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(s, names[k]);
        if (!v) continue;
        double x;
        if (json_is_boolean(v) && k % 2 == 1) { /* draft 4: a flag on minimum / maximum */
            if (!json_is_true(v)) continue;
            json_t *base = json_object_get(s, names[k - 1]);
            if (!base || !num(base, &x)) {
                fail(c, KL_EINVAL, path, "%s needs a number beside it", names[k]);
                return false;
            }
        } else if (!num(v, &x)) {
            fail(c, KL_EINVAL, path, "%s must be a number", names[k]);
            return false;
        }
        if (k < 2) {
            double b = k == 0 ? ceil(x) : floor(x) + 1;
            if (b > cap) b = cap;
            if (b >= -cap && (!*has_lo || (int64_t)b > *lo)) *lo = (int64_t)b, *has_lo = true;
        } else {
            double b = k == 2 ? floor(x) : ceil(x) - 1;
            if (b < -cap) b = -cap;
            if (b <= cap && (!*has_hi || (int64_t)b < *hi)) *hi = (int64_t)b, *has_hi = true;
        }
    }
    if (*has_lo && *has_hi && *lo > *hi) {
        fail(c, KL_EINVAL, path, "%s", "no integer satisfies the bounds");
        return false;
    }
    return true;
}

static bool has_bounds(const json_t *s)
{
    return json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
           json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum");
}

static frag digits(nfa *b, void *ctx)
{
    (void)ctx;
    return fr_bytes(b, '0', '9');
}

/* A number in the bounds: the integers in them, and I.F (F digits, not all zero) for every
 * integer part I with I and I + 1 both in them (such numbers lie strictly between). */
static frag bounded_number(sc *c, json_t *s, const char *path)
{
    nfa *b = c->b;
    bool hl, hh;
    int64_t lo, hi;
    double x;
    /* the integers: rounded inwards as for type integer */
    if (!int_bounds(c, s, path, &hl, &lo, &hh, &hi)) return FRAG_ERR;
    frag alt = fr_alt_new(b);
    fr_alt_add(b, alt, js_integer_range(b, hl, lo, hh, hi));
    /* fractions between consecutive integers I, I+1 inside the real bounds */
    bool flo = false, fhi = false;
    int64_t ilo = 0, ihi = 0;
    json_t *v;
    if ((v = json_object_get(s, "minimum")) && num(v, &x)) flo = true, ilo = (int64_t)ceil(x);
    if ((v = json_object_get(s, "exclusiveMinimum")) && num(v, &x)) {
        int64_t t = (int64_t)ceil(x);
        if (!flo || t > ilo) ilo = t, flo = true;
    }
    if ((v = json_object_get(s, "maximum")) && num(v, &x)) fhi = true, ihi = (int64_t)floor(x);
    if ((v = json_object_get(s, "exclusiveMaximum")) && num(v, &x)) {
        int64_t t = (int64_t)floor(x);
        if (!fhi || t < ihi) ihi = t, fhi = true;
    }
    /* non-negative integer parts I in [max(ilo, 0), ihi - 1]: "I.F" lies in (I, I+1) */
    frag frac = fr_seq(b, fr_lit(b, ".", 1),
                       fr_seq(b, fr_repeat(b, digits, NULL, 0, 15), fr_bytes(b, '1', '9')));
    int64_t plo = flo && ilo > 0 ? ilo : 0, phi = fhi ? ihi - 1 : 9999999999999999LL;
    if (phi >= plo) fr_alt_add(b, alt, fr_seq(b, js_integer_range(b, true, plo, true, phi), frac));
    /* negative: "-I.F" in (-I-1, -I): needs -I-1 >= ilo and -I <= ihi */
    int64_t nlo = fhi && ihi < 0 ? -ihi : 0, nhi = flo ? -ilo - 1 : 9999999999999999LL;
    if (nhi >= nlo) {
        frag f2 = fr_seq(b, fr_lit(b, ".", 1),
                         fr_seq(b, fr_repeat(b, digits, NULL, 0, 15), fr_bytes(b, '1', '9')));
        fr_alt_add(
            b, alt,
            fr_seq(b, fr_lit(b, "-", 1), fr_seq(b, js_integer_range(b, true, nlo, true, nhi), f2)));
    }
    return b->rc ? FRAG_ERR : alt;
}

/* ---- strings ---- */

static const struct {
    const char *name, *re;
} formats[] = {
    {"date", "[0-9]{4}-((01|03|05|07|08|10|12)-(0[1-9]|[12][0-9]|3[01])|(04|06|09|11)-"
             "(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"},
    {"time", "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):"
             "[0-5][0-9])"},
    {"date-time", "[0-9]{4}-((01|03|05|07|08|10|12)-(0[1-9]|[12][0-9]|3[01])|(04|06|09|11)-"
                  "(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))T([01][0-9]|2[0-3]):[0-5]"
                  "[0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"},
    {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
    {"email", "[a-zA-Z0-9_+-]+(\\.[a-zA-Z0-9_+-]+)*@[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
              "(\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*\\.[a-zA-Z]{2,}"},
    {"ipv4", "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]"
             "|[1-9]?[0-9])){3}"},
};

static bool count(sc *c, json_t *s, const char *key, const char *path, int64_t *out)
{
    json_t *v = json_object_get(s, key);
    if (!v) return true;
    if (!json_is_integer(v) &&
        !(json_is_real(v) && floor(json_real_value(v)) == json_real_value(v))) {
        fail(c, KL_EINVAL, path, "%s must be a non-negative integer", key);
        return false;
    }
    double x = json_number_value(v);
    if (x < 0) {
        fail(c, KL_EINVAL, path, "%s must be a non-negative integer", key);
        return false;
    }
    *out = x > 1e9 ? (int64_t)1e9 : (int64_t)x;
    return true;
}

static frag string_schema(sc *c, json_t *s, const char *path, int depth)
{
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    int64_t min = 0, max = -1;
    if (!count(c, s, "minLength", path, &min)) return FRAG_ERR;
    if (!count(c, s, "maxLength", path, &max)) return FRAG_ERR;
    if (max >= 0 && max < min)
        return fail(c, KL_EINVAL, path, "%s", "maxLength is below minLength");
    bool lens = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if ((pat != NULL) + (fmt != NULL) + lens > 1)
        return fail(c, KL_EUNSUP, path, "%s",
                    "pattern, format and minLength/maxLength together are not supported");
    if (pat) {
        if (!json_is_string(pat)) return fail(c, KL_EINVAL, path, "%s", "pattern must be a string");
        return js_string_regex(c->b, json_string_value(pat), json_string_length(pat),
                               c->max_nesting - depth);
    }
    if (fmt) {
        if (!json_is_string(fmt)) return fail(c, KL_EINVAL, path, "%s", "format must be a string");
        for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
            if (!strcmp(formats[i].name, json_string_value(fmt)))
                return js_string_regex(c->b, formats[i].re, strlen(formats[i].re), 8);
        return fail(c, KL_EUNSUP, path, "unsupported format '%.100s'", json_string_value(fmt));
    }
    return js_string(c->b, min, max);
}

/* ---- arrays ---- */

typedef struct item_gen {
    int32_t rule;
} item_gen;

static frag call_item(nfa *b, void *ctx)
{
    item_gen *g = ctx;
    return fr_seq(b, js_ws(b),
                  fr_seq(b, fr_lit(b, ",", 1), fr_seq(b, js_ws(b), fr_call(b, g->rule))));
}

/* A rule whose body is schema s (so repeated items are calls, not copies). */
static int32_t rule_of(sc *c, json_t *s, int depth, const char *path)
{
    char name[32];
    snprintf(name, sizeof name, "item-%d", c->n_items++);
    int32_t r = nfa_rule(c->b, name, strlen(name));
    nfa_rule_define(c->b, r, schema(c, s, depth, path));
    return c->b->rc ? -1 : r;
}

static frag array_schema(sc *c, json_t *s, int depth, const char *path)
{
    nfa *b = c->b;
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *addl = json_object_get(s, "additionalItems");
    if (json_is_array(items)) { /* draft 7 tuple form */
        if (prefix) return fail(c, KL_EINVAL, path, "%s", "items as an array with prefixItems");
        prefix = items;
        items = addl;
    } else if (addl) {
        return fail(c, KL_EUNSUP, path, "%s", "additionalItems without an items array");
    }
    if (prefix && !json_is_array(prefix))
        return fail(c, KL_EINVAL, path, "%s", "prefixItems must be an array");
    int64_t min = 0, max = -1;
    if (!count(c, s, "minItems", path, &min) || !count(c, s, "maxItems", path, &max))
        return FRAG_ERR;
    if (max >= 0 && max < min) return fail(c, KL_EINVAL, path, "%s", "maxItems is below minItems");
    int64_t n_prefix = prefix ? (int64_t)json_array_size(prefix) : 0;
    bool tail = !json_is_false(items);
    if (!tail && (max < 0 || max > n_prefix)) max = n_prefix;
    if (min > max && max >= 0)
        return fail(c, KL_EINVAL, path, "%s", "minItems is more than the items allowed");
    char sub[256];
    /* positions 0..n_prefix-1 from prefixItems, then items */
    int32_t *rules = malloc(sizeof *rules * (size_t)(n_prefix + 1));
    if (!rules) return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    for (int64_t i = 0; i < n_prefix && !b->rc; i++) {
        snprintf(sub, sizeof sub, "%s/prefixItems/%lld", path, (long long)i);
        rules[i] = rule_of(c, json_array_get(prefix, (size_t)i), depth + 1, sub);
    }
    int32_t item_rule = -1;
    if (tail && !b->rc) {
        snprintf(sub, sizeof sub, "%s/items", path);
        item_rule = items ? rule_of(c, items, depth + 1, sub) : -1;
        if (!items) { /* any value */
            item_rule = nfa_rule(b, "any-item", 8);
            nfa_rule_define(b, item_rule, js_any_value(b));
        }
    }
    if (b->rc) {
        free(rules);
        return FRAG_ERR;
    }
    /* the elements: a chain where position k may stop once k >= min */
    frag open = fr_seq(b, fr_lit(b, "[", 1), js_ws(b));
    int32_t end = nfa_state(b);   /* after the last element (ws "]" follows) */
    int32_t empty = nfa_state(b); /* no element at all */
    int32_t cur = open.e;
    int64_t k = 0;
    bool first = true;
    int64_t fixed = n_prefix > min ? n_prefix : min;
    if (max >= 0 && fixed > max) fixed = max;
    if (min == 0) nfa_eps(b, open.e, empty);
    for (; k < fixed && !b->rc; k++) {
        int32_t rule = k < n_prefix ? rules[k] : item_rule;
        frag el = first ? fr_call(b, rule) : call_item(b, &(item_gen){rule});
        nfa_eps(b, cur, el.s);
        cur = el.e;
        first = false;
        if (k + 1 >= min) nfa_eps(b, cur, end);
        if (nfa_tick(b, 1)) break;
    }
    if (k < max || (max < 0 && tail)) {
        item_gen g = {item_rule};
        frag more;
        if (first) {
            /* nothing fixed: an optional first element, then the rest */
            frag el = fr_call(b, item_rule);
            nfa_eps(b, cur, el.s);
            int64_t left = max < 0 ? -1 : max - 1;
            more = fr_repeat(b, call_item, &g, 0, left);
            nfa_eps(b, el.e, more.s);
            nfa_eps(b, more.e, end);
        } else {
            more = fr_repeat(b, call_item, &g, 0, max < 0 ? -1 : max - k);
            nfa_eps(b, cur, more.s);
            nfa_eps(b, more.e, end);
        }
    }
    free(rules);
    frag close = fr_lit(b, "]", 1);
    frag tail_ws = js_ws(b);
    nfa_eps(b, end, tail_ws.s);
    nfa_eps(b, tail_ws.e, close.s);
    nfa_eps(b, empty, close.s);
    return b->rc ? FRAG_ERR : (frag){open.s, close.e};
}

/* ---- objects ---- */

typedef struct prop {
    const char *name;
    size_t len;
    json_t *schema; /* NULL: any value */
    bool required;
} prop;

static frag member(sc *c, const prop *p, int depth, const char *path)
{
    nfa *b = c->b;
    json_t *key = json_stringn(p->name, p->len);
    frag k = key ? literal(c, key, path) : FRAG_ERR;
    json_decref(key);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/properties/%.100s", path, p->name);
    frag v = p->schema ? schema(c, p->schema, depth + 1, sub) : js_any_value(b);
    return fr_seq(b, k, fr_seq(b, js_ws(b), fr_seq(b, fr_lit(b, ":", 1), fr_seq(b, js_ws(b), v))));
}

static frag object_schema(sc *c, json_t *s, int depth, const char *path)
{
    nfa *b = c->b;
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(c, KL_EINVAL, path, "%s", "properties must be an object");
    if (req && !json_is_array(req))
        return fail(c, KL_EINVAL, path, "%s", "required must be an array");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail(c, KL_EINVAL, path, "%s", "additionalProperties must be a boolean or a schema");
    if (!props && !addl && !req) return js_any_object(b);
    bool extra = addl ? !json_is_false(addl) : !props;
    json_t *extra_schema = json_is_object(addl) ? addl : NULL;
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    prop *p = calloc(n_props + n_req + 1, sizeof *p);
    if (!p) return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(props, key, val)
    {
        if (json_is_false(val)) continue; /* may not appear: leave it out */
        p[n++] = (prop){key, strlen(key), json_is_true(val) ? NULL : val, false};
    }
    for (size_t i = 0; i < n_req && !b->rc; i++) {
        json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) {
            fail(c, KL_EINVAL, path, "%s", "required must list strings");
            break;
        }
        size_t j = 0;
        while (j < n && !(p[j].len == json_string_length(r) &&
                          !memcmp(p[j].name, json_string_value(r), p[j].len)))
            j++;
        if (j < n) {
            p[j].required = true;
        } else if (props && json_is_false(json_object_get(props, json_string_value(r)))) {
            fail(c, KL_EINVAL, path, "required property '%.100s' has the schema false",
                 json_string_value(r));
        } else if (!extra) {
            fail(c, KL_EINVAL, path,
                 "required property '%.100s' is not allowed (additionalProperties is false)",
                 json_string_value(r));
        } else {
            p[n++] = (prop){json_string_value(r), json_string_length(r), extra_schema, true};
        }
    }
    if (b->rc) {
        free(p);
        return FRAG_ERR;
    }
    /* A_i: nothing written yet, B_i: something written, before property i; X_i: about to
     * write property i. A_i -> X_i, B_i -ws "," ws-> X_i, X_i -member-> B_{i+1}; optional
     * properties also A_i -> A_{i+1}, B_i -> B_{i+1}. */
    frag open = fr_seq(b, fr_lit(b, "{", 1), js_ws(b));
    int32_t A = open.e, B = nfa_state(b);
    for (size_t i = 0; i < n && !b->rc; i++) {
        int32_t X = nfa_state(b), A2 = nfa_state(b), B2 = nfa_state(b);
        nfa_eps(b, A, X);
        frag sep = fr_seq(b, js_ws(b), fr_seq(b, fr_lit(b, ",", 1), js_ws(b)));
        nfa_eps(b, B, sep.s);
        nfa_eps(b, sep.e, X);
        frag m = member(c, &p[i], depth, path);
        nfa_eps(b, X, m.s);
        nfa_eps(b, m.e, B2);
        if (!p[i].required) {
            nfa_eps(b, A, A2);
            nfa_eps(b, B, B2);
        }
        A = A2;
        B = B2;
    }
    if (extra && !b->rc) { /* more members, any name but the listed ones */
        const char **names = malloc(sizeof *names * (n + 1));
        size_t *lens = malloc(sizeof *lens * (n + 1));
        if (!names || !lens) {
            nfa_fail(b, KL_ENOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < n; i++)
                names[i] = p[i].name, lens[i] = p[i].len;
            int32_t X = nfa_state(b);
            nfa_eps(b, A, X);
            frag sep = fr_seq(b, js_ws(b), fr_seq(b, fr_lit(b, ",", 1), js_ws(b)));
            nfa_eps(b, B, sep.s);
            nfa_eps(b, sep.e, X);
            frag k = js_string_except(b, names, lens, (int)n);
            char sub[256];
            snprintf(sub, sizeof sub, "%s/additionalProperties", path);
            frag v = extra_schema ? schema(c, extra_schema, depth + 1, sub) : js_any_value(b);
            frag m = fr_seq(
                b, k, fr_seq(b, js_ws(b), fr_seq(b, fr_lit(b, ":", 1), fr_seq(b, js_ws(b), v))));
            nfa_eps(b, X, m.s);
            nfa_eps(b, m.e, B);
        }
        free(names);
        free(lens);
    }
    free(p);
    frag close = fr_lit(b, "}", 1);
    frag tail_ws = js_ws(b);
    nfa_eps(b, B, tail_ws.s);
    nfa_eps(b, tail_ws.e, close.s);
    nfa_eps(b, A, close.s);
    return b->rc ? FRAG_ERR : (frag){open.s, close.e};
}

/* ---- $ref ---- */

/* The schema a "#..." pointer names, or NULL. */
static json_t *resolve(sc *c, const char *ref)
{
    if (ref[0] != '#') return NULL;
    json_t *cur = c->root;
    const char *p = ref + 1;
    if (!*p) return cur;
    if (*p != '/') return NULL;
    while (*p == '/' && cur) {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            if (p[0] == '~' && p[1] == '0')
                tok[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1')
                tok[n++] = '/', p += 2;
            else
                tok[n++] = *p++;
        }
        if (*p && *p != '/') return NULL;
        tok[n] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *e;
            long i = strtol(tok, &e, 10);
            cur = *e || i < 0 ? NULL : json_array_get(cur, (size_t)i);
        } else {
            cur = NULL;
        }
    }
    return cur;
}

static frag ref_schema(sc *c, const char *ref, int depth, const char *path)
{
    nfa *b = c->b;
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ptr, ref)) return fr_call(b, c->refs[i].rule);
    json_t *target = resolve(c, ref);
    if (!target) {
        if (ref[0] != '#')
            return fail(c, KL_EUNSUP, path, "remote $ref '%.100s' is not supported", ref);
        return fail(c, KL_EINVAL, path, "$ref '%.100s' points nowhere", ref);
    }
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? c->cap_refs * 2 : 8;
        ref_rule *p = realloc(c->refs, sizeof *p * (size_t)cap);
        if (!p) return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
        c->refs = p;
        c->cap_refs = cap;
    }
    char *dup = strdup(ref);
    int32_t rule = nfa_rule(b, ref, strlen(ref));
    if (!dup || rule < 0) {
        free(dup);
        return nfa_fail(b, KL_ENOMEM, "out of memory"), FRAG_ERR;
    }
    c->refs[c->n_refs++] = (ref_rule){dup, rule};
    /* the rule exists before its body: a recursive schema calls it */
    nfa_rule_define(b, rule, schema(c, target, depth + 1, ref + 1));
    return fr_call(b, rule);
}

/* ---- the dispatcher ---- */

static int types_of(sc *c, json_t *s, const char *path)
{
    json_t *t = json_object_get(s, "type");
    static const struct {
        const char *n;
        int t;
    } names[] = {{"null", T_NULL},  {"boolean", T_BOOL}, {"integer", T_INT}, {"number", T_NUM},
                 {"string", T_STR}, {"array", T_ARR},    {"object", T_OBJ}};
    if (!t) { /* inferred from the keywords present */
        int m = 0;
        if (json_object_get(s, "properties") || json_object_get(s, "required") ||
            json_object_get(s, "additionalProperties"))
            m |= T_OBJ;
        if (json_object_get(s, "items") || json_object_get(s, "prefixItems") ||
            json_object_get(s, "minItems") || json_object_get(s, "maxItems"))
            m |= T_ARR;
        if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
            json_object_get(s, "pattern") || json_object_get(s, "format"))
            m |= T_STR;
        if (has_bounds(s)) m |= T_NUM;
        return m ? m : -1; /* -1: anything */
    }
    int m = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_is_array(t) ? json_array_get(t, i) : t;
        int found = 0;
        for (size_t k = 0; json_is_string(x) && k < sizeof names / sizeof *names; k++)
            if (!strcmp(names[k].n, json_string_value(x))) found = names[k].t;
        if (!found) {
            fail(c, KL_EINVAL, path, "%s", "type must name JSON types");
            return 0;
        }
        m |= found;
    }
    if (!m) fail(c, KL_EINVAL, path, "%s", "type lists nothing");
    return m;
}

static frag enum_schema(sc *c, json_t *s, const char *path, int types)
{
    nfa *b = c->b;
    json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
    frag alt = fr_alt_new(b);
    int n = 0;
    if (cst) {
        if (types < 0 || (type_of(cst) & types)) fr_alt_add(b, alt, literal(c, cst, path)), n++;
    } else {
        if (!json_is_array(en)) return fail(c, KL_EINVAL, path, "%s", "enum must be an array");
        size_t i;
        json_t *v;
        json_array_foreach(en, i, v)
        {
            if (types >= 0 && !(type_of(v) & types)) continue;
            fr_alt_add(b, alt, literal(c, v, path));
            n++;
            if (nfa_tick(b, 1)) break;
        }
    }
    if (!n && !b->rc)
        return fail(c, KL_EINVAL, path, "%s", "enum/const allows no value of the type");
    return b->rc ? FRAG_ERR : alt;
}

static frag schema(sc *c, json_t *s, int depth, const char *path)
{
    nfa *b = c->b;
    if (b->rc) return FRAG_ERR;
    if (depth > c->max_nesting) {
        nfa_fail(b, KL_ERANGE, "schema nested deeper than %d levels at %.200s", c->max_nesting,
                 path[0] ? path : "/");
        return FRAG_ERR;
    }
    if (json_is_true(s)) return js_any_value(b);
    if (json_is_false(s)) return fail(c, KL_EINVAL, path, "%s", "the schema false matches nothing");
    if (!json_is_object(s)) return fail(c, KL_EINVAL, path, "%s", "a schema must be an object");
    /* every keyword is known, or refused by name */
    const char *k;
    json_t *v;
    int constraining = 0;
    json_object_foreach(s, k, v)
    {
        if (in_list(annotations, k)) continue;
        if (!in_list(keywords, k))
            return fail(c, KL_EUNSUP, path, "unsupported keyword '%.100s'", k);
        constraining++;
    }
    if (nfa_tick(b, (uint64_t)json_object_size(s) + 1)) return FRAG_ERR;
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        if (!json_is_string(ref)) return fail(c, KL_EINVAL, path, "%s", "$ref must be a string");
        if (constraining > 1)
            return fail(c, KL_EUNSUP, path, "%s", "$ref with other keywords beside it");
        return ref_schema(c, json_string_value(ref), depth, path);
    }
    const char *combo = json_object_get(s, "anyOf")   ? "anyOf"
                        : json_object_get(s, "oneOf") ? "oneOf"
                        : json_object_get(s, "allOf") ? "allOf"
                                                      : NULL;
    if (combo) {
        json_t *list = json_object_get(s, combo);
        if (constraining > 1)
            return fail(c, KL_EUNSUP, path, "%s with other keywords beside it", combo);
        if (!json_is_array(list) || !json_array_size(list))
            return fail(c, KL_EINVAL, path, "%s must be a non-empty array", combo);
        if (!strcmp(combo, "allOf")) {
            if (json_array_size(list) > 1)
                return fail(c, KL_EUNSUP, path, "%s", "allOf with more than one schema");
            char sub[256];
            snprintf(sub, sizeof sub, "%s/allOf/0", path);
            return schema(c, json_array_get(list, 0), depth + 1, sub);
        }
        frag alt = fr_alt_new(b);
        size_t i;
        json_array_foreach(list, i, v)
        {
            char sub[256];
            snprintf(sub, sizeof sub, "%s/%s/%zu", path, combo, i);
            fr_alt_add(b, alt, schema(c, v, depth + 1, sub));
        }
        return b->rc ? FRAG_ERR : alt;
    }
    int types = types_of(c, s, path);
    if (b->rc) return FRAG_ERR;
    if (json_object_get(s, "const") || json_object_get(s, "enum"))
        return enum_schema(c, s, path, types);
    if (types < 0) return js_any_value(b);
    frag alt = fr_alt_new(b);
    if (types & T_NULL) fr_alt_add(b, alt, fr_lit(b, "null", 4));
    if (types & T_BOOL) {
        fr_alt_add(b, alt, fr_lit(b, "true", 4));
        fr_alt_add(b, alt, fr_lit(b, "false", 5));
    }
    if (types & T_NUM) {
        fr_alt_add(b, alt, has_bounds(s) ? bounded_number(c, s, path) : js_number(b));
    } else if (types & T_INT) {
        bool hl, hh;
        int64_t lo, hi;
        if (int_bounds(c, s, path, &hl, &lo, &hh, &hi))
            fr_alt_add(b, alt, hl || hh ? js_integer_range(b, hl, lo, hh, hi) : js_integer(b));
    }
    if (types & T_STR) fr_alt_add(b, alt, string_schema(c, s, path, depth));
    if (types & T_ARR) fr_alt_add(b, alt, array_schema(c, s, depth, path));
    if (types & T_OBJ) fr_alt_add(b, alt, object_schema(c, s, depth, path));
    return b->rc ? FRAG_ERR : alt;
}

/* Called by gram_compile_schema (gram.c) with the builder ready: parses the text, makes the
 * rule "root". Returns the root rule or -1 (the builder has the error). */
int32_t schema_build(nfa *b, const char *text, size_t len, int max_nesting)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        nfa_fail(b, KL_EINVAL, "not valid JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        return -1;
    }
    sc c = {.b = b, .root = root, .max_nesting = max_nesting};
    int32_t r = nfa_rule(b, "root", 4);
    nfa_rule_define(b, r, schema(&c, root, 0, ""));
    for (int i = 0; i < c.n_refs; i++)
        free(c.refs[i].ptr);
    free(c.refs);
    json_decref(root);
    return b->rc ? -1 : r;
}
