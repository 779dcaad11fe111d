/* grammar/gram.c: the compilers' entry points (each sets up a builder with its budget,
 * runs a front end, and compiles the result), choices, and a grammar's lifetime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/table.h"

typedef int32_t (*front_fn)(nfa *b, const void *ctx, const gram_limits *lim);

/* Runs front under lim's budget and compiles what it built. Error messages are prefixed
 * with nothing: the caller names the parameter. */
static int compile(gram **out, const gram_limits *lim_in, const char *desc, front_fn front,
                   const void *ctx, kl_err *err)
{
    *out = NULL;
    kl_err local;
    if (!err) err = &local;
    err->code = 0;
    err->msg[0] = 0;
    gram_limits lim;
    if (lim_in) {
        lim = *lim_in;
    } else {
        gram_limits_defaults(&lim);
    }
    gbudget bud = {.deadline_ns = gbudget_now_ns() + (int64_t)(lim.max_ms * 1e6),
                   .max_ticks = (uint64_t)(lim.max_ms * 2e5) + 100000};
    nfa b;
    nfa_init(&b, &lim, &bud, err);
    int32_t root = front(&b, ctx, &lim);
    int rc = b.rc;
    if (!rc && root < 0) rc = kl_errf(err, KL_EINVAL, "nothing to compile");
    if (!rc) rc = gram_from_nfa(out, &b, root, &lim, desc, err);
    nfa_free(&b);
    return rc;
}

typedef struct text_ctx {
    const char *s;
    size_t len;
    bool flag;
} text_ctx;

static int32_t front_json(nfa *b, const void *ctx, const gram_limits *lim)
{
    const text_ctx *t = ctx;
    (void)lim;
    int32_t r = nfa_rule(b, "root", 4);
    nfa_rule_define(b, r, t->flag ? js_any_object(b) : js_any_value(b));
    return r;
}

int gram_compile_json(gram **out, bool object_only, const gram_limits *lim, kl_err *err)
{
    text_ctx t = {NULL, 0, object_only};
    return compile(out, lim, object_only ? "json object" : "json", front_json, &t, err);
}

static int32_t front_schema(nfa *b, const void *ctx, const gram_limits *lim)
{
    const text_ctx *t = ctx;
    return schema_build(b, t->s, t->len, lim->max_nesting);
}

int gram_compile_schema(gram **out, const char *text, size_t len, const gram_limits *lim,
                        kl_err *err)
{
    text_ctx t = {text, len, false};
    return compile(out, lim, "json schema", front_schema, &t, err);
}

static int32_t front_regex(nfa *b, const void *ctx, const gram_limits *lim)
{
    const text_ctx *t = ctx;
    int32_t r = nfa_rule(b, "root", 4);
    nfa_rule_define(b, r, rx_compile(b, t->s, t->len, false, false, lim->max_nesting));
    return r;
}

int gram_compile_regex(gram **out, const char *re, size_t len, const gram_limits *lim, kl_err *err)
{
    text_ctx t = {re, len, false};
    return compile(out, lim, "regex", front_regex, &t, err);
}

static int32_t front_gbnf(nfa *b, const void *ctx, const gram_limits *lim)
{
    const text_ctx *t = ctx;
    return gbnf_build(b, t->s, t->len, lim->max_nesting);
}

int gram_compile_gbnf(gram **out, const char *src, size_t len, const gram_limits *lim, kl_err *err)
{
    text_ctx t = {src, len, false};
    return compile(out, lim, "gbnf", front_gbnf, &t, err);
}

typedef struct choice_ctx {
    const char *const *s;
    const size_t *lens;
    int n;
} choice_ctx;

static int32_t front_choice(nfa *b, const void *ctx, const gram_limits *lim)
{
    const choice_ctx *c = ctx;
    (void)lim;
    if (c->n < 1) return nfa_fail(b, KL_EINVAL, "no choices given"), -1;
    int32_t r = nfa_rule(b, "root", 4);
    frag alt = fr_alt_new(b);
    for (int i = 0; i < c->n && !b->rc; i++)
        fr_alt_add(b, alt, fr_lit(b, c->s[i], c->lens[i]));
    nfa_rule_define(b, r, alt);
    return r;
}

int gram_compile_choice(gram **out, const char *const *choices, const size_t *lens, int n,
                        const gram_limits *lim, kl_err *err)
{
    choice_ctx c = {choices, lens, n};
    return compile(out, lim, "choice", front_choice, &c, err);
}

gram *gram_ref(gram *g)
{
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void gram_unref(gram *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    gtable_free_all(g);
    pthread_mutex_destroy(&g->mu);
    free(g->states);
    free(g->trans);
    free(g->calls);
    free(g->rules);
    free(g);
}

size_t gram_bytes(const gram *g)
{
    return g->struct_bytes + atomic_load(&((gram *)g)->table_bytes); /* read-only */
}

int32_t gram_n_states(const gram *g)
{
    return g->n_states;
}
