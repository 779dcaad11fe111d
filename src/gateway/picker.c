/* gateway/picker.c: filters, scorers and the ranking of endpoints (see picker.h). */
#include "gateway/picker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

bool gw_endpoint_fresh(const gw_config *c, const gw_endpoint *e, int64_t now_ns)
{
    return e->scraped_ns > 0 && now_ns - e->scraped_ns <= (int64_t)c->scrape_stale_ms * 1000000;
}

bool gw_endpoint_available(const gw_endpoint *e, int64_t now_ns)
{
    return e->healthy && now_ns >= e->ejected_until_ns;
}

bool gw_endpoint_saturated(const gw_config *c, const gw_endpoint *e, int64_t now_ns)
{
    double cap = c->sat_max_inflight * e->cfg->weight;
    if (e->inflight >= (cap < 1 ? 1 : cap)) return true;
    if (!gw_endpoint_fresh(c, e, now_ns))
        return false; /* stale metrics are not trusted either way */
    if (c->sat_max_waiting > 0 && e->waiting >= c->sat_max_waiting) return true;
    return e->kv_usage >= c->sat_max_kv;
}

/* adapter's index in e's adapters (those it holds), or -1. */
static int adapter_index(const gw_endpoint *e, const char *adapter)
{
    for (int i = 0; i < e->n_adapters; i++)
        if (!strcmp(e->adapters[i], adapter)) return i;
    return -1;
}

static bool holds_adapter(const gw_endpoint *e, const char *adapter)
{
    return adapter_index(e, adapter) >= 0;
}

static bool serves_adapter(const gw_endpoint *e, const char *adapter)
{
    if (!adapter) return true;
    for (int i = 0; i < e->pool->n_adapters; i++)
        if (!strcmp(e->pool->adapters[i], adapter)) return true;
    return holds_adapter(e, adapter);
}

void gw_endpoint_note_adapter(gw_endpoint *e, const char *adapter, int64_t now_ns)
{
    if (!adapter) return;
    int k = adapter_index(e, adapter);
    if (k >= 0) {
        e->adapter_used_ns[k] = now_ns;
        return;
    }
    /* Full: the replica evicts its least recently used adapter to load this one; the one the
     * gateway routed there longest ago is the best guess until the next scrape says. */
    k = e->n_adapters;
    if (k == GW_MAX_ADAPTERS || (e->max_lora > 0 && k >= e->max_lora)) {
        k = 0;
        for (int i = 1; i < e->n_adapters; i++)
            if (e->adapter_used_ns[i] < e->adapter_used_ns[k]) k = i;
    } else {
        e->n_adapters++;
    }
    snprintf(e->adapters[k], sizeof e->adapters[0], "%s", adapter);
    e->adapter_used_ns[k] = now_ns;
}

void gw_endpoint_set_adapters(gw_endpoint *e, const char (*names)[64], int n, int max_lora)
{
    int64_t used[GW_MAX_ADAPTERS] = {0};
    if (n > GW_MAX_ADAPTERS) n = GW_MAX_ADAPTERS;
    for (int i = 0; i < n; i++) { /* keep what the gateway knows of each one's last use */
        int j = adapter_index(e, names[i]);
        if (j >= 0) used[i] = e->adapter_used_ns[j];
    }
    for (int i = 0; i < n; i++)
        snprintf(e->adapters[i], sizeof e->adapters[0], "%s", names[i]);
    memcpy(e->adapter_used_ns, used, sizeof used);
    e->n_adapters = n;
    e->max_lora = max_lora;
}

/* ---- scorers: each in [0, 1], higher is better ---- */

static double score_queue(const gw_pick_request *r, const gw_endpoint *e, bool ok,
                          const gw_config *c)
{
    (void)r, (void)c;
    return ok ? 1.0 / (1.0 + e->waiting) : 0.5;
}

static double score_kv(const gw_pick_request *r, const gw_endpoint *e, bool ok, const gw_config *c)
{
    (void)r, (void)c;
    double u = e->kv_usage < 0 ? 0 : e->kv_usage > 1 ? 1 : e->kv_usage;
    return ok ? 1.0 - u : 0.5;
}

static double score_prefix(const gw_pick_request *r, const gw_endpoint *e, bool ok,
                           const gw_config *c)
{
    (void)ok, (void)c;
    if (!r->n_blocks || !e->prefix) return 0;
    return (double)gw_lru_set_match(e->prefix, r->blocks, r->n_blocks) / r->n_blocks;
}

static double score_adapter(const gw_pick_request *r, const gw_endpoint *e, bool ok,
                            const gw_config *c)
{
    (void)ok, (void)c;
    return r->adapter && holds_adapter(e, r->adapter); /* already loaded: no swap */
}

static double score_inflight(const gw_pick_request *r, const gw_endpoint *e, bool ok,
                             const gw_config *c)
{
    (void)r, (void)ok, (void)c;
    return 1.0 / (1.0 + e->inflight / e->cfg->weight);
}

static const gw_scorer scorers[] = {
    {"queue", score_queue},       {"kv", score_kv},
    {"prefix", score_prefix},     {"adapter", score_adapter},
    {"inflight", score_inflight},
};

static double weight_of(const gw_config *c, int i)
{
    const double w[] = {c->w_queue, c->w_kv, c->w_prefix, c->w_adapter, c->w_inflight};
    _Static_assert(sizeof w / sizeof w[0] == sizeof scorers / sizeof scorers[0], "weights");
    return w[i];
}

typedef struct ranked {
    gw_endpoint *e;
    double score;
    int tier;     /* 0: preferred region, 1: elsewhere */
    bool affine;  /* holds the request's adapter and has room: ranked before those that do not */
    int loss;     /* when none is affine: adapters a load here could evict that no other
                     endpoint holds (0 with a free slot); within the bounded load, fewer first */
    uint64_t tie; /* breaks equal scores: rotates with the request counter */
} ranked;

static int by_rank(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->tier != y->tier) return x->tier - y->tier;
    if (x->affine != y->affine) return x->affine ? -1 : 1;
    if (x->loss != y->loss) return x->loss < y->loss ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    /* equal scores (idle replicas): take turns, so light traffic does not all land on one */
    if (x->tie != y->tie) return x->tie < y->tie ? -1 : 1;
    return strcmp(x->e->cfg->url, y->e->cfg->url);
}

static int rank(const gw_config *c, gw_endpoint *const *eps, int n, const gw_pick_request *r,
                gw_endpoint **order, gw_pick_status *status, bool ignore_ejection);

/* How many of the ranked endpoints hold an adapter: one slot of an open-addressing table
 * keyed by name (the names are borrowed from the endpoints). */
typedef struct holders {
    const char *name; /* NULL: a free slot */
    int n;            /* endpoints that hold it */
    int last;         /* the last one counted: an endpoint listing a name twice counts once */
} holders;

/* name's slot in h (cap a power of two, more slots than names: the probe ends) */
static holders *holders_of(holders *h, size_t cap, const char *name)
{
    size_t k = (size_t)XXH3_64bits(name, strlen(name)) & (cap - 1);
    while (h[k].name && strcmp(h[k].name, name))
        k = (k + 1) & (cap - 1);
    return &h[k];
}

/* An adapter no endpoint holds with room is loaded somewhere, evicting another there: prefer
 * an endpoint with a free slot (fewer adapters than its max_lora), else the one whose
 * adapters are most often held elsewhere too, so the fleet keeps one copy of each; endpoints
 * over the bounded load rank after. One pass counts each adapter's holders among the m
 * endpoints (at most m * GW_MAX_ADAPTERS names), one more reads them: linear in the names,
 * where asking every other endpoint about every adapter was (m * GW_MAX_ADAPTERS)^2. Out of
 * memory, the full endpoints are not told apart (the scores decide among them). */
static void place_adapter(const gw_config *c, const gw_pick_request *r, ranked *rk, int m,
                          double bound)
{
    if (!r->adapter || c->w_adapter <= 0 || c->round_robin) return;
    for (int i = 0; i < m; i++)
        if (rk[i].affine) return;
    size_t names = 0, cap = 1;
    for (int i = 0; i < m; i++)
        names += (size_t)rk[i].e->n_adapters;
    while (cap <= 2 * names)
        cap <<= 1;
    holders *h = calloc(cap, sizeof *h);
    if (!h) return;
    for (int j = 0; j < m; j++)
        for (int a = 0; a < rk[j].e->n_adapters; a++) {
            holders *x = holders_of(h, cap, rk[j].e->adapters[a]);
            if (!x->name) x->name = rk[j].e->adapters[a], x->last = -1;
            if (x->last != j) x->n++, x->last = j;
        }
    for (int i = 0; i < m; i++) {
        const gw_endpoint *e = rk[i].e;
        if (e->inflight > bound) {
            rk[i].loss = GW_MAX_ADAPTERS + 1;
            continue;
        }
        if (e->max_lora > 0 && e->n_adapters < e->max_lora) continue; /* a free slot */
        for (int a = 0; a < e->n_adapters; a++) /* held here, and elsewhere when by 2 or more */
            rk[i].loss += holders_of(h, cap, e->adapters[a])->n < 2;
    }
    free(h);
}

int gw_pick(const gw_config *c, gw_endpoint *const *eps, int n, const gw_pick_request *r,
            gw_endpoint **order, gw_pick_status *status)
{
    int m = rank(c, eps, n, r, order, status, false);
    /* Panic mode: when passive ejection has removed every endpoint the active health checks
     * still pass, try them anyway rather than fail the whole model. */
    if (m == 0 && *status == GW_PICK_UNAVAILABLE) m = rank(c, eps, n, r, order, status, true);
    return m;
}

static int rank(const gw_config *c, gw_endpoint *const *eps, int n, const gw_pick_request *r,
                gw_endpoint **order, gw_pick_status *status, bool ignore_ejection)
{
    ranked *rk = malloc((size_t)(n > 0 ? n : 1) * sizeof *rk);
    int m = 0, up = 0, total_inflight = 0;
    if (!rk) {
        *status = GW_PICK_UNAVAILABLE;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        gw_endpoint *e = eps[i];
        bool avail = ignore_ejection ? e->healthy : gw_endpoint_available(e, r->now_ns);
        if (!avail || !serves_adapter(e, r->adapter)) continue;
        up++;
        if (gw_endpoint_saturated(c, e, r->now_ns)) continue;
        total_inflight += e->inflight;
        int tier = c->region && strcmp(e->cfg->region, c->region) ? 1 : 0;
        /* round robin rotates below over the URL order: no rotating tie-break there */
        uint64_t tie = c->round_robin ? 0 : ((uint64_t)i + r->seq) % (uint64_t)n;
        rk[m++] = (ranked){e, 0, tier, false, 0, tie};
    }
    /* Bounded load: prefix affinity may not pile work on an endpoint already carrying more
     * than 1.25x the mean in-flight load plus one. */
    double bound = m ? 1.25 * (double)total_inflight / m + 1 : 0;
    /* round robin leaves every score 0: the rotation below runs over the fixed URL order,
     * not over one that changing loads reshuffle between picks */
    for (int i = 0; i < m && !c->round_robin; i++) {
        gw_endpoint *e = rk[i].e;
        bool ok = gw_endpoint_fresh(c, e, r->now_ns);
        /* Adapter affinity: a replica that holds the adapter (running, waiting or resident,
         * or routed to it since its last scrape) gets the request while it has room (not
         * saturated, within the bounded load); otherwise the scores pick the least loaded of
         * those that can load it, and a swap happens there. */
        rk[i].affine =
            r->adapter && c->w_adapter > 0 && e->inflight <= bound && holds_adapter(e, r->adapter);
        for (int s = 0; s < (int)(sizeof scorers / sizeof scorers[0]); s++) {
            if (scorers[s].score == score_prefix && e->inflight > bound) continue;
            rk[i].score += weight_of(c, s) * scorers[s].score(r, e, ok, c);
        }
        if (r->has_session) /* rendezvous hashing: a stable favourite per session */
            rk[i].score +=
                100.0 *
                (double)(XXH3_64bits_withSeed(e->cfg->url, strlen(e->cfg->url), r->session) >> 11) *
                0x1.0p-53;
    }
    place_adapter(c, r, rk, m, bound);
    qsort(rk, (size_t)m, sizeof *rk, by_rank);
    /* round robin: the eligible endpoints of the best tier in turn, scores ignored */
    int m0 = 0;
    while (m0 < m && rk[m0].tier == rk[0].tier)
        m0++;
    int rot = c->round_robin && m0 ? (int)(r->seq % (uint64_t)m0) : 0;
    for (int i = 0; i < m; i++)
        order[i] = rk[i < m0 ? (i + rot) % m0 : i].e;
    free(rk);
    *status = m ? GW_PICK_OK : up ? GW_PICK_SATURATED : GW_PICK_UNAVAILABLE;
    return m;
}
