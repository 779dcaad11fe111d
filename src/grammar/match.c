/* grammar/match.c: one sequence's position in a grammar, and its token masks.
 *
 * The position is a set of configurations (tops) over a node pool (sim.c). Accepting a
 * token reads its bytes; the old tops go to a ring of GRAM_HISTORY positions so the last
 * tokens can be undone (speculative decoding). Nodes no position refers to any more are
 * compacted away now and then, so a long generation holds memory in proportion to its
 * nesting, not its length.
 *
 * A mask is the union over tops (state s, parent p) of s's table entry (table.h): the tokens
 * valid from s alone, plus, for each escape node of s, the walk of that node's subtree from
 * the configurations that follow once s's rule ends (p's return state). A top too close to
 * the depth limit, or whose entry was cut, is walked over the whole trie instead. */
#include <stdlib.h>
#include <string.h>

#include "grammar/table.h"

typedef struct hist {
    gconf *tops;
    int32_t n, cap;
    bool acc, ended;
} hist;

struct gram_matcher {
    gram *g;
    const gram_vocab *v;
    gtable *tab;
    gsim sim;
    gconf *tops;
    int32_t n_tops, cap_tops;
    bool acc;     /* the output so far is complete */
    bool ended;   /* an end token was accepted */
    gconf *a, *b; /* stepping buffers */
    int32_t cap_a, cap_b;
    gconf *cont; /* configurations after a pop */
    int32_t cap_cont;
    hist hist[GRAM_HISTORY];
    int h_next, h_n; /* next slot; positions held */
    gwalk w;
    gentry own;
    int32_t live_nodes; /* nodes kept at the last compaction */
    uint8_t *mark;
    int32_t cap_mark;
};

static bool set_tops(gconf **dst, int32_t *cap, const gconf *src, int32_t n)
{
    if (n > *cap) {
        int32_t c = *cap ? *cap : 8;
        while (c < n)
            c *= 2;
        gconf *p = realloc(*dst, sizeof *p * (size_t)c);
        if (!p) return false;
        *dst = p;
        *cap = c;
    }
    if (n) memcpy(*dst, src, sizeof *src * (size_t)n);
    return true;
}

int gram_matcher_create(gram_matcher **out, gram *g, const gram_vocab *v, kl_err *err)
{
    *out = NULL;
    gram_matcher *m = calloc(1, sizeof *m);
    if (!m || gsim_init(&m->sim, g, g->max_depth)) {
        free(m);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    m->g = gram_ref(g);
    m->v = v;
    if (v && !(m->tab = gtable_for(g, v))) {
        gram_matcher_free(m);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    gconf root = {g->rules[g->root].start, GP_BOTTOM};
    if (gsim_closure(&m->sim, &root, 1, &m->tops, &m->n_tops, &m->cap_tops) < 0) {
        gram_matcher_free(m);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    m->acc = m->sim.acc;
    m->live_nodes = m->sim.n_nodes;
    *out = m;
    return 0;
}

void gram_matcher_free(gram_matcher *m)
{
    if (!m) return;
    for (int i = 0; i < GRAM_HISTORY; i++)
        free(m->hist[i].tops);
    free(m->tops);
    free(m->a);
    free(m->b);
    free(m->cont);
    free(m->mark);
    gwalk_free(&m->w);
    gentry_own_free(&m->own);
    gsim_free(&m->sim);
    gram_unref(m->g);
    free(m);
}

bool gram_matcher_can_end(const gram_matcher *m)
{
    return !m->ended && m->acc;
}

bool gram_matcher_must_end(const gram_matcher *m)
{
    return !m->ended && m->acc && m->n_tops == 0;
}

int gram_matcher_history(const gram_matcher *m)
{
    return m->h_n;
}

/* Saves the current position in the ring before it changes. */
static bool push_history(gram_matcher *m)
{
    hist *h = &m->hist[m->h_next];
    if (!set_tops(&h->tops, &h->cap, m->tops, m->n_tops)) return false;
    h->n = m->n_tops;
    h->acc = m->acc;
    h->ended = m->ended;
    m->h_next = (m->h_next + 1) % GRAM_HISTORY;
    if (m->h_n < GRAM_HISTORY) m->h_n++;
    return true;
}

bool gram_matcher_rollback(gram_matcher *m, int n)
{
    if (n < 0 || n > m->h_n) return false;
    if (!n) return true;
    int i = ((m->h_next - n) % GRAM_HISTORY + GRAM_HISTORY) % GRAM_HISTORY;
    hist *h = &m->hist[i];
    if (!set_tops(&m->tops, &m->cap_tops, h->tops, h->n)) return false;
    m->n_tops = h->n;
    m->acc = h->acc;
    m->ended = h->ended;
    m->h_next = i;
    m->h_n -= n;
    return true;
}

/* Drops nodes that neither the position nor its history refers to. Nodes are created after
 * their parents, so one pass in index order renumbers parents before children. */
static void compact(gram_matcher *m)
{
    gsim *s = &m->sim;
    if (s->n_nodes < 4096 || s->n_nodes < 2 * m->live_nodes) return;
    if (s->n_nodes > m->cap_mark) {
        uint8_t *p = realloc(m->mark, (size_t)s->n_nodes);
        if (!p) return;
        m->mark = p;
        m->cap_mark = s->n_nodes;
    }
    memset(m->mark, 0, (size_t)s->n_nodes);
    for (int k = -1; k < m->h_n; k++) {
        const gconf *t =
            k < 0 ? m->tops : m->hist[(m->h_next - 1 - k + 2 * GRAM_HISTORY) % GRAM_HISTORY].tops;
        int32_t n =
            k < 0 ? m->n_tops : m->hist[(m->h_next - 1 - k + 2 * GRAM_HISTORY) % GRAM_HISTORY].n;
        for (int32_t i = 0; i < n; i++)
            for (int32_t p = t[i].parent; p >= 0 && !m->mark[p]; p = s->nodes[p].parent)
                m->mark[p] = 1;
    }
    int32_t *remap = malloc(sizeof *remap * (size_t)s->n_nodes);
    if (!remap) return;
    int32_t k = 0;
    for (int32_t i = 0; i < s->n_nodes; i++) {
        if (!m->mark[i]) {
            remap[i] = -1;
            continue;
        }
        gnode nd = s->nodes[i];
        if (nd.parent >= 0) nd.parent = remap[nd.parent];
        s->nodes[k] = nd;
        remap[i] = k++;
    }
    s->n_nodes = k;
    m->live_nodes = k;
    for (int32_t i = 0; i < m->n_tops; i++)
        if (m->tops[i].parent >= 0) m->tops[i].parent = remap[m->tops[i].parent];
    for (int j = 0; j < m->h_n; j++) {
        hist *h = &m->hist[(m->h_next - 1 - j + 2 * GRAM_HISTORY) % GRAM_HISTORY];
        for (int32_t i = 0; i < h->n; i++)
            if (h->tops[i].parent >= 0) h->tops[i].parent = remap[h->tops[i].parent];
    }
    free(remap);
}

bool gram_matcher_accept_bytes(gram_matcher *m, const char *s, size_t len)
{
    if (m->ended) return false;
    if (!len) return true;
    int32_t mark = m->sim.n_nodes;
    const gconf *in = m->tops;
    int32_t n_in = m->n_tops;
    bool acc = m->acc;
    gconf **bufs[2] = {&m->a, &m->b};
    int32_t *caps[2] = {&m->cap_a, &m->cap_b};
    for (size_t i = 0; i < len; i++) {
        if (!n_in) goto fail;
        int32_t n = 0;
        gconf **out = bufs[i & 1];
        if (gsim_step(&m->sim, in, n_in, (uint8_t)s[i], out, &n, caps[i & 1]) < 0) goto fail;
        in = *out;
        n_in = n;
        acc = m->sim.acc;
    }
    if (!n_in && !acc) goto fail;
    if (!push_history(m)) goto fail;
    if (!set_tops(&m->tops, &m->cap_tops, in, n_in)) goto fail;
    m->n_tops = n_in;
    m->acc = acc;
    compact(m);
    return true;
fail:
    m->sim.n_nodes = mark;
    return false;
}

static bool is_end(const gram_vocab *v, int32_t t)
{
    for (int32_t i = 0; i < v->n_ends; i++)
        if (v->ends[i] == t) return true;
    return false;
}

bool gram_matcher_accept(gram_matcher *m, int32_t t)
{
    const gram_vocab *v = m->v;
    if (!v || t < 0 || t >= v->n_vocab || m->ended) return false;
    if (is_end(v, t)) {
        if (!m->acc || !push_history(m)) return false;
        m->ended = true;
        m->n_tops = 0;
        return true;
    }
    uint32_t l = v->poff[t + 1] - v->poff[t];
    if (!l) return false;
    return gram_matcher_accept_bytes(m, v->pbytes + v->poff[t], l);
}

static void or_entry(const gentry *e, uint32_t *mask, int32_t words)
{
    if (e->bitmap) {
        for (int32_t i = 0; i < words; i++)
            mask[i] |= e->acc[i];
    } else {
        for (int32_t i = 0; i < e->n_acc; i++)
            mask[e->acc[i] >> 5] |= 1u << (e->acc[i] & 31);
    }
}

int32_t gram_matcher_mask(gram_matcher *m, uint32_t *mask)
{
    const gram_vocab *v = m->v;
    int32_t words = (v->n_vocab + 31) / 32;
    memset(mask, 0, sizeof *mask * (size_t)words);
    if (m->ended) return 0;
    for (int32_t i = 0; i < m->n_tops; i++) {
        gconf c = m->tops[i];
        const gentry *e = gtable_entry(m->g, m->tab, v, c.state, &m->own);
        int32_t h = gsim_depth(&m->sim, c.parent);
        if (!e || e->full || h + e->max_push > m->g->max_depth) {
            gwalk_subtree(&m->sim, &m->w, v, 0, &c, 1, mask); /* exact, slower */
            continue;
        }
        or_entry(e, mask, words);
        if (c.parent < 0 || !e->n_esc) continue;
        int32_t mark = m->sim.n_nodes, n = 0;
        if (gsim_pop(&m->sim, c, &m->cont, &n, &m->cap_cont) > 0)
            for (int32_t k = 0; k < e->n_esc; k++)
                gwalk_subtree(&m->sim, &m->w, v, e->esc[k], m->cont, n, mask);
        m->sim.n_nodes = mark;
    }
    if (m->acc)
        for (int32_t i = 0; i < v->n_ends; i++)
            mask[v->ends[i] >> 5] |= 1u << (v->ends[i] & 31);
    int32_t count = 0;
    for (int32_t i = 0; i < words; i++)
        count += __builtin_popcount(mask[i]);
    return count;
}

void gram_mask_apply(const uint32_t *mask, float *logits, int32_t n)
{
    const float ninf = -__builtin_inff();
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint32_t w = mask[i >> 5];
        if (w == 0xFFFFFFFFu) continue;
        if (!w) {
            for (int j = 0; j < 32; j++)
                logits[i + j] = ninf;
            continue;
        }
        for (int j = 0; j < 32; j++)
            if (!((w >> j) & 1u)) logits[i + j] = ninf;
    }
    for (; i < n; i++)
        if (!gram_mask_has(mask, i)) logits[i] = ninf;
}

bool gram_matches(const gram *g, const char *s, size_t len)
{
    gram_matcher *m;
    /* the matcher holds a reference for its lifetime only: g is not changed */
    if (gram_matcher_create(&m, (gram *)g, NULL, NULL)) return false;
    bool ok = gram_matcher_accept_bytes(m, s, len) && m->acc;
    gram_matcher_free(m);
    return ok;
}
