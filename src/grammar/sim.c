/* grammar/sim.c: running the pushdown automaton over bytes (see internal.h, "running the
 * automaton"). A byte moves each configuration along its state's transition; the closure
 * then enters calls (pushing a node with the return state) and returns from rules that may
 * end (continuing in the parent's return state), until every configuration sits in a state
 * that reads bytes.
 *
 * Bounded: a closure visits each (state, parent) once, stops after GSIM_CLOSURE_MAX visits, and
 * never pushes past max_depth (both set `overflow`: the paths cut are lost, what remains is
 * still a correct parse, so outputs stay valid). Left recursion, which would push forever
 * without reading, is refused when compiling. */
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

#define TABLE_CAP 8192 /* power of two, twice GSIM_CLOSURE_MAX: probes stay short */

int gsim_init(gsim *m, const gram *g, int max_depth)
{
    memset(m, 0, sizeof *m);
    m->g = g;
    m->max_depth = max_depth;
    m->cap = TABLE_CAP;
    m->key = malloc(sizeof *m->key * TABLE_CAP);
    m->val = malloc(sizeof *m->val * TABLE_CAP);
    m->gen_of = calloc(TABLE_CAP, sizeof *m->gen_of);
    if (!m->key || !m->val || !m->gen_of) {
        gsim_free(m);
        return KL_ENOMEM;
    }
    return 0;
}

void gsim_free(gsim *m)
{
    free(m->nodes);
    free(m->key);
    free(m->val);
    free(m->gen_of);
    free(m->work);
    memset(m, 0, sizeof *m);
}

static bool grow(void **p, int32_t *cap, int32_t need, size_t size)
{
    if (need <= *cap) return true;
    int32_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > (1 << 29)) return false;
        c *= 2;
    }
    void *q = realloc(*p, size * (size_t)c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static inline uint64_t key_of(int32_t state, int32_t parent, int kind)
{
    return ((uint64_t)(uint32_t)(parent + 3) << 33) | ((uint64_t)(uint32_t)state << 1) |
           (uint64_t)kind;
}

/* The slot of key in this closure's table; *fresh says whether it was absent (now taken). */
static uint32_t slot_of(gsim *m, uint64_t key, bool *fresh)
{
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & (m->cap - 1);
    for (;; h = (h + 1) & (m->cap - 1)) {
        if (m->gen_of[h] != m->gen) {
            m->gen_of[h] = m->gen;
            m->n_keys++;
            m->key[h] = key;
            *fresh = true;
            return h;
        }
        if (m->key[h] == key) {
            *fresh = false;
            return h;
        }
    }
}

static int32_t new_node(gsim *m, int32_t state, int32_t parent)
{
    if (!grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof *m->nodes)) return -1;
    m->nodes[m->n_nodes] = (gnode){state, parent, gsim_depth(m, parent)};
    return m->n_nodes++;
}

static bool push_work(gsim *m, int32_t state, int32_t parent)
{
    if (!grow((void **)&m->work, &m->cap_work, m->n_work + 1, sizeof *m->work)) return false;
    m->work[m->n_work++] = (gconf){state, parent};
    return true;
}

static void begin(gsim *m)
{
    if (++m->gen == 0) { /* wrapped: old stamps could collide */
        memset(m->gen_of, 0, sizeof *m->gen_of * m->cap);
        m->gen = 1;
    }
    m->acc = m->esc = m->overflow = false;
    m->n_work = 0;
    m->n_keys = 0;
}

/* Runs the work list to its closure, appending to out. */
static int32_t run(gsim *m, gconf **out, int32_t *n, int32_t *cap)
{
    const gram *g = m->g;
    int32_t added = 0, visits = 0;
    while (m->n_work) {
        gconf c = m->work[--m->n_work];
        if (++visits > GSIM_CLOSURE_MAX || m->n_keys + 2 > m->cap / 2 + m->cap / 4) {
            m->overflow = true;
            break;
        }
        bool fresh;
        slot_of(m, key_of(c.state, c.parent, 0), &fresh);
        if (!fresh) continue;
        const gstate *st = &g->states[c.state];
        if (st->trans >= 0) {
            if (!grow((void **)out, cap, *n + 1, sizeof **out)) return -1;
            (*out)[(*n)++] = c;
            added++;
            int32_t d = gsim_depth(m, c.parent);
            if (d > m->max_seen_depth) m->max_seen_depth = d;
        }
        if (st->accept) {
            if (c.parent == GP_BOTTOM) {
                m->acc = true;
            } else if (c.parent == GP_UNKNOWN) {
                m->esc = true;
            } else {
                const gnode *p = &m->nodes[c.parent];
                if (!push_work(m, p->state, p->parent)) return -1;
            }
        }
        for (int32_t k = st->n_call - 1; k >= 0; k--) {
            const gcall *call = &g->calls[st->call0 + k];
            if (gsim_depth(m, c.parent) + 1 > m->max_depth) {
                m->overflow = true;
                continue;
            }
            if (m->n_keys + 2 > m->cap / 2 + m->cap / 4) {
                m->overflow = true;
                break;
            }
            uint32_t h = slot_of(m, key_of(call->ret, c.parent, 1), &fresh);
            if (fresh) {
                m->val[h] = new_node(m, call->ret, c.parent);
                if (m->val[h] < 0) return -1;
            }
            if (!push_work(m, g->rules[call->rule].start, m->val[h])) return -1;
        }
    }
    return added;
}

int32_t gsim_closure(gsim *m, const gconf *seeds, int32_t n_seeds, gconf **out, int32_t *n,
                     int32_t *cap)
{
    begin(m);
    for (int32_t i = n_seeds - 1; i >= 0; i--)
        if (!push_work(m, seeds[i].state, seeds[i].parent)) return -1;
    return run(m, out, n, cap);
}

int32_t gsim_step(gsim *m, const gconf *in, int32_t n_in, uint8_t byte, gconf **out, int32_t *n,
                  int32_t *cap)
{
    const gram *g = m->g;
    if (n_in == 1) { /* the common case: one stack, a plain byte step */
        const gstate *st = &g->states[in[0].state];
        m->acc = m->esc = m->overflow = false;
        if (st->trans < 0) return 0;
        int32_t t = g->trans[st->trans + g->rules[st->rule].cls[byte]];
        if (t < 0) return 0;
        if (g->states[t].simple) {
            if (!grow((void **)out, cap, *n + 1, sizeof **out)) return -1;
            (*out)[(*n)++] = (gconf){t, in[0].parent};
            return 1;
        }
    }
    begin(m);
    for (int32_t i = n_in - 1; i >= 0; i--) {
        const gstate *st = &g->states[in[i].state];
        if (st->trans < 0) continue;
        int32_t t = g->trans[st->trans + g->rules[st->rule].cls[byte]];
        if (t >= 0 && !push_work(m, t, in[i].parent)) return -1;
    }
    return run(m, out, n, cap);
}

int32_t gsim_pop(gsim *m, gconf c, gconf **out, int32_t *n, int32_t *cap)
{
    begin(m);
    if (c.parent == GP_BOTTOM) {
        m->acc = true;
        return 0;
    }
    if (c.parent == GP_UNKNOWN) {
        m->esc = true;
        return 0;
    }
    const gnode *p = &m->nodes[c.parent];
    if (!push_work(m, p->state, p->parent)) return -1;
    return run(m, out, n, cap);
}
