/* grammar/compile.c: a built NFA (rules of byte, epsilon and call edges) into a gram.
 *
 *   1. each rule's states: everything its start reaches inside the rule;
 *   2. productive rules (they derive some string), then nullable ones (the empty string);
 *      the root must be productive ("matches nothing" otherwise), calls of unproductive
 *      rules are dropped;
 *   3. left recursion (a rule that can reach a call of itself without reading a byte) is an
 *      error naming the rule: the matcher would loop without consuming;
 *   4. small rules that are not recursive are inlined into their callers (fewer stack
 *      operations at run time, more tokens whose fate is known without the stack);
 *   5. every rule is determinized (subset construction over the rule's byte classes and
 *      its callees), keeping only states from which the rule's end is reachable.
 *
 * All of it counts against the budget, and the DFA has at most max_states states. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/clock.h"
#include "grammar/internal.h"

#define INLINE_MAX   128  /* NFA states of a rule we copy into each caller */
#define INLINE_TOTAL 4096 /* ... and in all its callers together */

typedef struct ivec {
    int32_t *v;
    int32_t n, cap;
} ivec;

static bool ivec_push(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        int32_t cap = a->cap ? a->cap * 2 : 16;
        int32_t *p = realloc(a->v, sizeof *p * (size_t)cap);
        if (!p) return false;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

typedef struct cstate {
    nfa *b;
    int32_t n_rules;
    ivec *rstates;     /* (n_rules) NFA states of each rule */
    bool *reach;       /* (n_rules) reachable from the root */
    bool *productive;  /* (n_rules) */
    bool *nullable;    /* (n_rules) */
    bool *recursive;   /* (n_rules) on a call cycle */
    int32_t *stamp;    /* (cap_arrays) visit marks */
    int32_t stamp_gen; /* current mark */
    int32_t *pos;      /* (cap_arrays) scratch: a state's index in some list */
    int32_t cap_arrays;
    ivec stack;
} cstate;

static int oom(cstate *c)
{
    return nfa_fail(c->b, KL_ENOMEM, "out of memory");
}

static void next_stamp(cstate *c)
{
    c->stamp_gen++;
}

/* Sizes stamp and pos for every state of the builder (new stamps start unmarked). */
static bool grow_arrays(cstate *c)
{
    int32_t n = c->b->n_states;
    if (n <= c->cap_arrays) return true;
    int32_t cap = c->cap_arrays ? c->cap_arrays : 256;
    while (cap < n)
        cap *= 2;
    int32_t *p = realloc(c->stamp, sizeof *p * (size_t)cap);
    if (!p) return false;
    c->stamp = p;
    int32_t *q = realloc(c->pos, sizeof *q * (size_t)cap);
    if (!q) return false;
    c->pos = q;
    for (int32_t i = c->cap_arrays; i < cap; i++)
        c->stamp[i] = 0;
    c->cap_arrays = cap;
    return true;
}

/* 1. The states of rule r: everything reachable from its start along any edge (a call's
 * edge leads to its return state, inside r). */
static int collect_rule(cstate *c, int32_t r)
{
    nfa *b = c->b;
    ivec *out = &c->rstates[r];
    out->n = 0;
    if (b->rules[r].start < 0) return 0;
    next_stamp(c);
    c->stack.n = 0;
    if (!ivec_push(&c->stack, b->rules[r].start)) return oom(c);
    c->stamp[b->rules[r].start] = c->stamp_gen;
    while (c->stack.n) {
        int32_t s = c->stack.v[--c->stack.n];
        if (!ivec_push(out, s)) return oom(c);
        for (int32_t e = b->head[s]; e >= 0; e = b->edges[e].next) {
            int32_t t = b->edges[e].to;
            if (c->stamp[t] == c->stamp_gen) continue;
            c->stamp[t] = c->stamp_gen;
            if (!ivec_push(&c->stack, t)) return oom(c);
        }
        if (nfa_tick(b, 1)) return b->rc;
    }
    return 0;
}

/* Can rule r's final be reached from its start, with byte edges if bytes_ok and calls of
 * rules for which ok[] holds? */
static bool reaches_final(cstate *c, int32_t r, bool bytes_ok, const bool *ok)
{
    nfa *b = c->b;
    int32_t fin = b->rules[r].final;
    if (fin < 0) return false;
    next_stamp(c);
    c->stack.n = 0;
    ivec_push(&c->stack, b->rules[r].start);
    c->stamp[b->rules[r].start] = c->stamp_gen;
    while (c->stack.n) {
        int32_t s = c->stack.v[--c->stack.n];
        if (s == fin) return true;
        for (int32_t e = b->head[s]; e >= 0; e = b->edges[e].next) {
            const nedge *ed = &b->edges[e];
            if (ed->kind == NE_BYTES && !bytes_ok) continue;
            if (ed->kind == NE_CALL && !ok[ed->rule]) continue;
            if (c->stamp[ed->to] == c->stamp_gen) continue;
            c->stamp[ed->to] = c->stamp_gen;
            if (!ivec_push(&c->stack, ed->to)) return false;
        }
        if (nfa_tick(b, 1)) return false;
    }
    return false;
}

/* 2. productive and nullable, each a fixpoint over the rules. */
static int fixpoints(cstate *c)
{
    for (int pass = 0; pass < 2; pass++) {
        bool *flag = pass == 0 ? c->productive : c->nullable;
        bool changed = true;
        while (changed && !c->b->rc) {
            changed = false;
            for (int32_t r = 0; r < c->n_rules; r++) {
                if (flag[r] || !c->reach[r]) continue;
                if (pass == 1 && !c->productive[r]) continue;
                if (reaches_final(c, r, pass == 0, flag)) flag[r] = changed = true;
            }
        }
    }
    return c->b->rc;
}

/* Reachable rules from the root along calls. */
static int mark_reach(cstate *c, int32_t root)
{
    nfa *b = c->b;
    ivec work = {0};
    c->reach[root] = true;
    if (!ivec_push(&work, root)) return oom(c);
    while (work.n) {
        int32_t r = work.v[--work.n];
        if (b->rules[r].start < 0) {
            free(work.v);
            return nfa_fail(b, KL_EINVAL, "undefined rule '%s'", b->rules[r].name);
        }
        if (collect_rule(c, r)) break;
        for (int32_t i = 0; i < c->rstates[r].n; i++)
            for (int32_t e = b->head[c->rstates[r].v[i]]; e >= 0; e = b->edges[e].next) {
                const nedge *ed = &b->edges[e];
                if (ed->kind != NE_CALL || c->reach[ed->rule]) continue;
                c->reach[ed->rule] = true;
                if (!ivec_push(&work, ed->rule)) {
                    free(work.v);
                    return oom(c);
                }
            }
    }
    free(work.v);
    return b->rc;
}

/* 3. Left recursion: rule r calls callee "on the left" when a call of callee is reachable
 * from r's start through epsilon edges and calls of nullable rules. A cycle in that graph
 * would let the matcher push forever without reading a byte. */
static int check_left_recursion(cstate *c)
{
    nfa *b = c->b;
    int32_t n = c->n_rules;
    ivec *left = calloc((size_t)n, sizeof *left);
    uint8_t *color = calloc((size_t)n, 1);
    int32_t *it = calloc((size_t)n, sizeof *it);
    int rc = 0;
    if (!left || !color || !it) {
        rc = oom(c);
        goto done;
    }
    for (int32_t r = 0; r < n && !rc; r++) {
        if (!c->reach[r] || !c->productive[r]) continue;
        next_stamp(c);
        c->stack.n = 0;
        ivec_push(&c->stack, b->rules[r].start);
        c->stamp[b->rules[r].start] = c->stamp_gen;
        while (c->stack.n && !rc) {
            int32_t s = c->stack.v[--c->stack.n];
            for (int32_t e = b->head[s]; e >= 0; e = b->edges[e].next) {
                const nedge *ed = &b->edges[e];
                if (ed->kind == NE_BYTES) continue;
                if (ed->kind == NE_CALL) {
                    if (!c->productive[ed->rule]) continue;
                    if (!ivec_push(&left[r], ed->rule)) rc = oom(c);
                    if (!c->nullable[ed->rule]) continue;
                }
                if (c->stamp[ed->to] == c->stamp_gen) continue;
                c->stamp[ed->to] = c->stamp_gen;
                if (!ivec_push(&c->stack, ed->to)) rc = oom(c);
            }
            if (!rc) rc = nfa_tick(b, 1);
        }
    }
    /* iterative DFS: gray = on the path */
    for (int32_t r0 = 0; r0 < n && !rc; r0++) {
        if (color[r0]) continue;
        ivec path = {0};
        ivec_push(&path, r0);
        color[r0] = 1;
        it[r0] = 0;
        while (path.n && !rc) {
            int32_t r = path.v[path.n - 1];
            if (it[r] < left[r].n) {
                int32_t d = left[r].v[it[r]++];
                if (color[d] == 1) {
                    rc = nfa_fail(b, KL_EINVAL,
                                  "left recursion: rule '%s' can reach itself without reading "
                                  "anything",
                                  b->rules[d].name);
                } else if (!color[d]) {
                    color[d] = 1;
                    it[d] = 0;
                    if (!ivec_push(&path, d)) rc = oom(c);
                }
            } else {
                color[r] = 2;
                path.n--;
            }
        }
        free(path.v);
    }
done:
    for (int32_t r = 0; left && r < n; r++)
        free(left[r].v);
    free(left);
    free(color);
    free(it);
    return rc ? rc : b->rc;
}

/* Rules on a call cycle (Tarjan's strongly connected components, iteratively); order gets
 * the rules callees first, which is the order inlining needs. */
static int find_recursive(cstate *c, ivec *order)
{
    nfa *b = c->b;
    int32_t n = c->n_rules;
    int32_t *index = malloc(sizeof *index * (size_t)n), *low = malloc(sizeof *low * (size_t)n);
    bool *on = calloc((size_t)n, 1);
    ivec *out = calloc((size_t)n, sizeof *out);
    int rc = 0;
    if (!index || !low || !on || !out) {
        rc = oom(c);
        goto done;
    }
    for (int32_t r = 0; r < n && !rc; r++) {
        index[r] = -1;
        if (!c->reach[r] || !c->productive[r]) continue;
        for (int32_t i = 0; i < c->rstates[r].n && !rc; i++)
            for (int32_t e = b->head[c->rstates[r].v[i]]; e >= 0; e = b->edges[e].next) {
                const nedge *ed = &b->edges[e];
                if (ed->kind != NE_CALL || !c->productive[ed->rule]) continue;
                if (ed->rule == r) c->recursive[r] = true;
                if (!ivec_push(&out[r], ed->rule)) rc = oom(c);
            }
    }
    int32_t counter = 0;
    ivec st = {0}, call = {0}, pos = {0};
    for (int32_t r0 = 0; r0 < n && !rc; r0++) {
        if (index[r0] >= 0 || !c->reach[r0] || !c->productive[r0]) continue;
        ivec_push(&call, r0);
        ivec_push(&pos, 0);
        index[r0] = low[r0] = counter++;
        ivec_push(&st, r0);
        on[r0] = true;
        while (call.n && !rc) {
            int32_t r = call.v[call.n - 1];
            int32_t *p = &pos.v[pos.n - 1];
            if (*p < out[r].n) {
                int32_t d = out[r].v[(*p)++];
                if (index[d] < 0) {
                    index[d] = low[d] = counter++;
                    if (!ivec_push(&st, d) || !ivec_push(&call, d) || !ivec_push(&pos, 0))
                        rc = oom(c);
                    on[d] = true;
                } else if (on[d] && index[d] < low[r]) {
                    low[r] = index[d];
                }
                continue;
            }
            call.n--;
            pos.n--;
            if (call.n) {
                int32_t up = call.v[call.n - 1];
                if (low[r] < low[up]) low[up] = low[r];
            }
            if (low[r] == index[r]) {
                int32_t first = st.n;
                do {
                    first--;
                } while (st.v[first] != r);
                bool cyc = st.n - first > 1;
                for (int32_t k = first; k < st.n; k++) {
                    on[st.v[k]] = false;
                    if (cyc) c->recursive[st.v[k]] = true;
                    if (!ivec_push(order, st.v[k])) rc = oom(c);
                }
                st.n = first;
            }
            if (!rc) rc = nfa_tick(b, 1);
        }
    }
    free(st.v);
    free(call.v);
    free(pos.v);
done:
    for (int32_t r = 0; out && r < n; r++)
        free(out[r].v);
    free(out);
    free(index);
    free(low);
    free(on);
    return rc ? rc : b->rc;
}

/* 4. Replaces call edges of small non-recursive rules by a copy of the callee. */
static int inline_calls(cstate *c, const ivec *order)
{
    nfa *b = c->b;
    int32_t *map = NULL;
    size_t cap_map = 0;
    int32_t *sites = calloc((size_t)c->n_rules, sizeof *sites);
    if (!sites) return oom(c);
    for (int32_t k = 0; k < order->n; k++) {
        int32_t r = order->v[k];
        for (int32_t i = 0; i < c->rstates[r].n; i++)
            for (int32_t e = b->head[c->rstates[r].v[i]]; e >= 0; e = b->edges[e].next)
                if (b->edges[e].kind == NE_CALL) sites[b->edges[e].rule]++;
    }
    for (int32_t k = 0; k < order->n && !b->rc; k++) {
        int32_t r = order->v[k];
        for (int32_t i = 0; i < c->rstates[r].n && !b->rc; i++) {
            int32_t s = c->rstates[r].v[i];
            for (int32_t e = b->head[s]; e >= 0 && !b->rc; e = b->edges[e].next) {
                nedge ed = b->edges[e];
                if (ed.kind != NE_CALL || !c->productive[ed.rule] || c->recursive[ed.rule])
                    continue;
                const ivec *cs = &c->rstates[ed.rule];
                if (cs->n > INLINE_MAX || (int64_t)cs->n * sites[ed.rule] > INLINE_TOTAL ||
                    b->n_states + cs->n > b->max_states / 2)
                    continue;
                /* copy the callee's states: map[j] = the copy of cs->v[j] */
                if ((size_t)cs->n > cap_map) {
                    int32_t *p = realloc(map, sizeof *p * (size_t)cs->n);
                    if (!p) {
                        free(sites);
                        free(map);
                        return oom(c);
                    }
                    map = p;
                    cap_map = (size_t)cs->n;
                }
                for (int32_t j = 0; j < cs->n; j++)
                    map[j] = nfa_state(b);
                if (!b->rc && !grow_arrays(c)) oom(c);
                if (b->rc) break;
                next_stamp(c); /* stamp marks the callee's states, pos their index */
                for (int32_t j = 0; j < cs->n; j++) {
                    c->stamp[cs->v[j]] = c->stamp_gen;
                    c->pos[cs->v[j]] = j;
                }
                for (int32_t j = 0; j < cs->n; j++) {
                    for (int32_t f = b->head[cs->v[j]]; f >= 0 && !b->rc; f = b->edges[f].next) {
                        nedge g = b->edges[f];
                        if (c->stamp[g.to] != c->stamp_gen) continue;
                        int32_t to = map[c->pos[g.to]];
                        if (g.kind == NE_EPS) nfa_eps(b, map[j], to);
                        if (g.kind == NE_BYTES) nfa_bytes(b, map[j], to, g.lo, g.hi);
                        if (g.kind == NE_CALL) nfa_call(b, map[j], to, g.rule);
                    }
                }
                int32_t cs_start = map[c->pos[b->rules[ed.rule].start]];
                int32_t cs_final = map[c->pos[b->rules[ed.rule].final]];
                /* the call edge becomes epsilon into the copy; the copy's end returns */
                b->edges[e].kind = NE_EPS;
                b->edges[e].to = cs_start;
                nfa_eps(b, cs_final, ed.to);
                /* the copies belong to r now */
                for (int32_t j = 0; j < cs->n; j++)
                    if (!ivec_push(&c->rstates[r], map[j])) oom(c);
            }
        }
    }
    free(sites);
    free(map);
    return b->rc;
}

/* ---- 5. determinization ---- */

typedef struct setmap {
    int32_t *slot; /* (cap) DFA state index into the local list, -1 empty */
    uint32_t cap;
} setmap;

typedef struct dstate { /* a DFA state under construction */
    int32_t off, n;     /* its NFA set in pool */
    uint64_t hash;
} dstate;

typedef struct det {
    cstate *c;
    int32_t rule;
    ivec pool; /* NFA sets, concatenated */
    dstate *ds;
    int32_t n_ds, cap_ds;
    setmap map;
    bool *live; /* (n_states) the rule's end is reachable from it */
    ivec tmp;
} det;

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : a > b;
}

/* epsilon closure of tmp's states (live only), sorted, into tmp */
static int closure(det *d)
{
    cstate *c = d->c;
    nfa *b = c->b;
    next_stamp(c);
    c->stack.n = 0;
    for (int32_t i = 0; i < d->tmp.n; i++)
        if (c->stamp[d->tmp.v[i]] != c->stamp_gen) {
            c->stamp[d->tmp.v[i]] = c->stamp_gen;
            if (!ivec_push(&c->stack, d->tmp.v[i])) return oom(c);
        }
    d->tmp.n = 0;
    while (c->stack.n) {
        int32_t s = c->stack.v[--c->stack.n];
        if (d->live[s] && !ivec_push(&d->tmp, s)) return oom(c);
        for (int32_t e = b->head[s]; e >= 0; e = b->edges[e].next) {
            const nedge *ed = &b->edges[e];
            if (ed->kind != NE_EPS || c->stamp[ed->to] == c->stamp_gen) continue;
            c->stamp[ed->to] = c->stamp_gen;
            if (!ivec_push(&c->stack, ed->to)) return oom(c);
        }
    }
    /* insertion sort is fine for small sets; qsort otherwise */
    int32_t *v = d->tmp.v, n = d->tmp.n;
    for (int32_t i = 1; i < n && n < 32; i++)
        for (int32_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    if (n >= 32) qsort(v, (size_t)n, sizeof *v, cmp_i32);
    return nfa_tick(b, (uint64_t)n + 1);
}

/* The DFA state of the set in d->tmp (index into d->ds), added when new; -1 for the empty
 * set, -2 on error. */
static int32_t intern(det *d)
{
    cstate *c = d->c;
    if (!d->tmp.n) return -1;
    uint64_t h = XXH3_64bits(d->tmp.v, sizeof(int32_t) * (size_t)d->tmp.n);
    if ((uint32_t)d->n_ds * 2 >= d->map.cap) { /* grow and rehash */
        uint32_t cap = d->map.cap ? d->map.cap * 2 : 64;
        int32_t *slot = malloc(sizeof *slot * cap);
        if (!slot) return oom(c), -2;
        for (uint32_t i = 0; i < cap; i++)
            slot[i] = -1;
        for (int32_t i = 0; i < d->n_ds; i++) {
            uint32_t p = (uint32_t)d->ds[i].hash & (cap - 1);
            while (slot[p] >= 0)
                p = (p + 1) & (cap - 1);
            slot[p] = i;
        }
        free(d->map.slot);
        d->map.slot = slot;
        d->map.cap = cap;
    }
    uint32_t p = (uint32_t)h & (d->map.cap - 1);
    for (; d->map.slot[p] >= 0; p = (p + 1) & (d->map.cap - 1)) {
        const dstate *x = &d->ds[d->map.slot[p]];
        if (x->hash == h && x->n == d->tmp.n &&
            !memcmp(d->pool.v + x->off, d->tmp.v, sizeof(int32_t) * (size_t)x->n))
            return d->map.slot[p];
    }
    if (d->n_ds == d->cap_ds) {
        int32_t cap = d->cap_ds ? d->cap_ds * 2 : 64;
        dstate *q = realloc(d->ds, sizeof *q * (size_t)cap);
        if (!q) return oom(c), -2;
        d->ds = q;
        d->cap_ds = cap;
    }
    int32_t off = d->pool.n;
    for (int32_t i = 0; i < d->tmp.n; i++)
        if (!ivec_push(&d->pool, d->tmp.v[i])) return oom(c), -2;
    d->ds[d->n_ds] = (dstate){off, d->tmp.n, h};
    d->map.slot[p] = d->n_ds;
    return d->n_ds++;
}

typedef struct gout { /* the gram's arrays under construction */
    gstate *st;
    int32_t n_st, cap_st;
    int32_t *trans;
    size_t n_trans, cap_trans;
    gcall *calls;
    int32_t n_calls, cap_calls;
} gout;

/* Live states of rule r: those from which its final is reachable (calls of productive
 * rules only): a breadth-first search backwards from the final state. */
static int mark_live(cstate *c, int32_t r, bool *live)
{
    nfa *b = c->b;
    const ivec *rs = &c->rstates[r];
    int32_t n = rs->n;
    int32_t *cnt = calloc((size_t)n + 1, sizeof *cnt), *src = NULL, *work = NULL;
    int rc = 0;
    if (!cnt || !grow_arrays(c)) {
        rc = oom(c);
        goto done;
    }
    next_stamp(c);
    for (int32_t i = 0; i < n; i++) {
        live[rs->v[i]] = false;
        c->stamp[rs->v[i]] = c->stamp_gen;
        c->pos[rs->v[i]] = i;
    }
    /* incoming edges as a compressed list: cnt[i] .. cnt[i+1] in src */
    int64_t n_in = 0;
    for (int32_t i = 0; i < n; i++)
        for (int32_t e = b->head[rs->v[i]]; e >= 0; e = b->edges[e].next) {
            const nedge *ed = &b->edges[e];
            if (ed->kind == NE_CALL && !c->productive[ed->rule]) continue;
            if (c->stamp[ed->to] != c->stamp_gen) continue;
            cnt[c->pos[ed->to] + 1]++;
            n_in++;
        }
    for (int32_t i = 0; i < n; i++)
        cnt[i + 1] += cnt[i];
    src = malloc(sizeof *src * (size_t)(n_in + 1));
    work = malloc(sizeof *work * (size_t)(n + 1));
    int32_t *fill = malloc(sizeof *fill * (size_t)(n + 1));
    if (!src || !work || !fill) {
        free(fill);
        rc = oom(c);
        goto done;
    }
    memcpy(fill, cnt, sizeof *fill * (size_t)n);
    for (int32_t i = 0; i < n; i++)
        for (int32_t e = b->head[rs->v[i]]; e >= 0; e = b->edges[e].next) {
            const nedge *ed = &b->edges[e];
            if (ed->kind == NE_CALL && !c->productive[ed->rule]) continue;
            if (c->stamp[ed->to] != c->stamp_gen) continue;
            src[fill[c->pos[ed->to]]++] = i;
        }
    free(fill);
    int32_t nw = 0;
    int32_t fin = b->rules[r].final;
    if (c->stamp[fin] == c->stamp_gen) {
        live[fin] = true;
        work[nw++] = c->pos[fin];
    }
    while (nw) {
        int32_t i = work[--nw];
        for (int32_t k = cnt[i]; k < cnt[i + 1]; k++) {
            int32_t j = src[k];
            if (live[rs->v[j]]) continue;
            live[rs->v[j]] = true;
            work[nw++] = j;
        }
    }
    rc = nfa_tick(b, (uint64_t)n + (uint64_t)n_in);
done:
    free(cnt);
    free(src);
    free(work);
    return rc;
}

static int determinize(cstate *c, int32_t r, gout *o, grule *gr, int32_t max_states)
{
    nfa *b = c->b;
    det d = {.c = c, .rule = r};
    int rc = 0;
    d.live = malloc(sizeof *d.live * (size_t)b->n_states);
    if (!d.live) return oom(c);
    if ((rc = mark_live(c, r, d.live))) goto done;
    /* byte classes: intervals between the boundaries of the rule's byte edges */
    bool cut[257] = {0};
    cut[0] = cut[256] = true;
    for (int32_t i = 0; i < c->rstates[r].n; i++)
        for (int32_t e = b->head[c->rstates[r].v[i]]; e >= 0; e = b->edges[e].next) {
            const nedge *ed = &b->edges[e];
            if (ed->kind != NE_BYTES) continue;
            cut[ed->lo] = true;
            cut[ed->hi + 1] = true;
        }
    int32_t ncls = 0;
    for (int x = 0; x < 256; x++) {
        if (cut[x]) ncls++;
        gr->cls[x] = (uint8_t)(ncls - 1);
    }
    gr->n_class = ncls;
    /* start */
    d.tmp.n = 0;
    ivec_push(&d.tmp, b->rules[r].start);
    if ((rc = closure(&d))) goto done;
    int32_t base = o->n_st;
    if (intern(&d) < 0) {
        rc = b->rc ? b->rc : nfa_fail(b, KL_EINVAL, "rule '%s' matches nothing", b->rules[r].name);
        goto done;
    }
    gr->start = base;
    ivec *buckets = calloc((size_t)ncls, sizeof *buckets);
    if (!buckets) {
        rc = oom(c);
        goto done;
    }
    for (int32_t k = 0; k < d.n_ds && !rc; k++) {
        if (base + k >= max_states) {
            rc = nfa_fail(b, KL_ERANGE, "too large: more than %d automaton states", max_states);
            break;
        }
        if (o->n_st == o->cap_st) {
            int32_t cap = o->cap_st ? o->cap_st * 2 : 256;
            gstate *p = realloc(o->st, sizeof *p * (size_t)cap);
            if (!p) {
                rc = oom(c);
                break;
            }
            o->st = p;
            o->cap_st = cap;
        }
        gstate *g = &o->st[o->n_st++];
        memset(g, 0, sizeof *g);
        g->rule = r;
        g->trans = -1;
        g->call0 = o->n_calls;
        for (int32_t x = 0; x < ncls; x++)
            buckets[x].n = 0;
        bool any_bytes = false;
        int32_t off = d.ds[k].off, n = d.ds[k].n;
        for (int32_t i = 0; i < n && !rc; i++) {
            int32_t s = d.pool.v[off + i];
            if (s == b->rules[r].final) g->accept = 1;
            for (int32_t e = b->head[s]; e >= 0; e = b->edges[e].next) {
                const nedge *ed = &b->edges[e];
                if (ed->kind != NE_BYTES || !d.live[ed->to]) continue;
                for (int32_t x = gr->cls[ed->lo]; x <= gr->cls[ed->hi]; x++)
                    if (!ivec_push(&buckets[x], ed->to)) rc = oom(c);
                any_bytes = true;
            }
        }
        if (any_bytes && !rc) {
            if (o->n_trans + (size_t)ncls > o->cap_trans) {
                size_t cap = o->cap_trans ? o->cap_trans * 2 : 4096;
                while (cap < o->n_trans + (size_t)ncls)
                    cap *= 2;
                int32_t *p = realloc(o->trans, sizeof *p * cap);
                if (!p) {
                    rc = oom(c);
                    break;
                }
                o->trans = p;
                o->cap_trans = cap;
            }
            g->trans = (int32_t)o->n_trans;
            for (int32_t x = 0; x < ncls && !rc; x++) {
                d.tmp.n = 0;
                for (int32_t i = 0; i < buckets[x].n; i++)
                    ivec_push(&d.tmp, buckets[x].v[i]);
                if ((rc = closure(&d))) break;
                int32_t t = intern(&d);
                if (t == -2) rc = b->rc;
                o->trans[o->n_trans + (size_t)x] = t < 0 ? -1 : base + t;
            }
            o->n_trans += (size_t)ncls;
        }
        /* calls: one per callee, to the closure of all its return states */
        for (int32_t i = 0; i < n && !rc; i++) {
            int32_t s = d.pool.v[off + i];
            for (int32_t e = b->head[s]; e >= 0 && !rc; e = b->edges[e].next) {
                const nedge *ed = &b->edges[e];
                if (ed->kind != NE_CALL || !c->productive[ed->rule] || !d.live[ed->to]) continue;
                bool seen = false;
                for (int32_t q = g->call0; q < o->n_calls; q++)
                    if (o->calls[q].rule == ed->rule) seen = true;
                if (seen) continue;
                d.tmp.n = 0;
                for (int32_t i2 = 0; i2 < n; i2++) {
                    int32_t s2 = d.pool.v[off + i2];
                    for (int32_t e2 = b->head[s2]; e2 >= 0; e2 = b->edges[e2].next) {
                        const nedge *x = &b->edges[e2];
                        if (x->kind == NE_CALL && x->rule == ed->rule && d.live[x->to])
                            ivec_push(&d.tmp, x->to);
                    }
                }
                if ((rc = closure(&d))) break;
                int32_t t = intern(&d);
                if (t < 0) {
                    rc = b->rc ? b->rc : oom(c);
                    break;
                }
                if (o->n_calls == o->cap_calls) {
                    int32_t cap = o->cap_calls ? o->cap_calls * 2 : 64;
                    gcall *p = realloc(o->calls, sizeof *p * (size_t)cap);
                    if (!p) {
                        rc = oom(c);
                        break;
                    }
                    o->calls = p;
                    o->cap_calls = cap;
                }
                o->calls[o->n_calls++] = (gcall){ed->rule, base + t};
                g = &o->st[base + k];
            }
        }
        g = &o->st[base + k];
        g->n_call = (int16_t)(o->n_calls - g->call0);
        if (o->n_calls - g->call0 > 30000)
            rc = nfa_fail(b, KL_ERANGE, "too large: a state calls too many rules");
    }
    for (int32_t x = 0; x < ncls; x++)
        free(buckets[x].v);
    free(buckets);
done:
    free(d.live);
    free(d.pool.v);
    free(d.ds);
    free(d.map.slot);
    free(d.tmp.v);
    return rc ? rc : b->rc;
}

static void cstate_free(cstate *c)
{
    for (int32_t r = 0; c->rstates && r < c->n_rules; r++)
        free(c->rstates[r].v);
    free(c->rstates);
    free(c->reach);
    free(c->productive);
    free(c->nullable);
    free(c->recursive);
    free(c->stamp);
    free(c->pos);
    free(c->stack.v);
}

int gram_from_nfa(gram **out, nfa *b, int32_t root, const gram_limits *lim, const char *desc,
                  kl_err *err)
{
    *out = NULL;
    if (b->rc) return b->rc;
    if (root < 0 || root >= b->n_rules) return kl_errf(err, KL_EINVAL, "no root rule");
    cstate c = {.b = b, .n_rules = b->n_rules};
    gout o = {0};
    int32_t *rmap = NULL;
    ivec order = {0};
    int rc = 0;
    c.rstates = calloc((size_t)c.n_rules, sizeof *c.rstates);
    c.reach = calloc((size_t)c.n_rules, 1);
    c.productive = calloc((size_t)c.n_rules, 1);
    c.nullable = calloc((size_t)c.n_rules, 1);
    c.recursive = calloc((size_t)c.n_rules, 1);
    if (!c.rstates || !c.reach || !c.productive || !c.nullable || !c.recursive ||
        !grow_arrays(&c)) {
        rc = oom(&c);
        goto done;
    }
    if ((rc = mark_reach(&c, root)) || (rc = fixpoints(&c))) goto done;
    if (!c.productive[root]) {
        rc = nfa_fail(b, KL_EINVAL, "the grammar matches nothing");
        goto done;
    }
    if ((rc = check_left_recursion(&c)) || (rc = find_recursive(&c, &order)) ||
        (rc = inline_calls(&c, &order)))
        goto done;
    /* rules still called after inlining, from the root */
    memset(c.reach, 0, (size_t)c.n_rules);
    if ((rc = mark_reach(&c, root))) goto done;
    rmap = malloc(sizeof *rmap * (size_t)c.n_rules);
    if (!rmap) {
        rc = oom(&c);
        goto done;
    }
    int32_t n_out = 0;
    for (int32_t r = 0; r < c.n_rules; r++)
        rmap[r] = c.reach[r] && c.productive[r] ? n_out++ : -1;
    grule *rules = calloc((size_t)n_out, sizeof *rules);
    if (!rules) {
        rc = oom(&c);
        goto done;
    }
    for (int32_t r = 0; r < c.n_rules && !rc; r++)
        if (rmap[r] >= 0) rc = determinize(&c, r, &o, &rules[rmap[r]], lim->max_states);
    if (rc) {
        free(rules);
        goto done;
    }
    for (int32_t i = 0; i < o.n_calls; i++)
        o.calls[i].rule = rmap[o.calls[i].rule];
    for (int32_t i = 0; i < o.n_st; i++) {
        gstate *g = &o.st[i];
        g->rule = rmap[g->rule];
        g->simple = g->trans >= 0 && g->n_call == 0 && !g->accept;
    }
    gram *g = calloc(1, sizeof *g);
    if (!g) {
        free(rules);
        rc = oom(&c);
        goto done;
    }
    atomic_init(&g->refs, 1);
    g->n_states = o.n_st;
    g->states = o.st;
    g->trans = o.trans;
    g->n_trans = o.n_trans;
    g->calls = o.calls;
    g->n_calls = o.n_calls;
    g->rules = rules;
    g->n_rules = n_out;
    g->root = rmap[root];
    g->max_depth = lim->max_depth;
    g->max_table_bytes = lim->max_tables;
    g->struct_bytes = sizeof *g + sizeof(gstate) * (size_t)o.n_st + sizeof(int32_t) * o.n_trans +
                      sizeof(gcall) * (size_t)o.n_calls + sizeof(grule) * (size_t)n_out;
    atomic_init(&g->table_bytes, 0);
    pthread_mutex_init(&g->mu, NULL);
    snprintf(g->desc, sizeof g->desc, "%s", desc);
    o.st = NULL, o.trans = NULL, o.calls = NULL;
    *out = g;
done:
    if (rc && err && !err->msg[0]) kl_errf(err, rc, "%s", "grammar compile failed");
    free(o.st);
    free(o.trans);
    free(o.calls);
    free(rmap);
    free(order.v);
    cstate_free(&c);
    return rc;
}
