/* gateway/picker.c: filters, scorers and the ranking of endpoints (see picker.h). */
#include "gateway/picker.h"

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

static bool serves_adapter(const gw_endpoint *e, const char *adapter)
{
    if (!adapter) return true;
    for (int i = 0; i < e->pool->n_adapters; i++)
        if (!strcmp(e->pool->adapters[i], adapter)) return true;
    for (int i = 0; i < e->n_adapters; i++)
        if (!strcmp(e->adapters[i], adapter)) return true;
    return false;
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
    if (!r->adapter) return 0;
    for (int i = 0; i < e->n_adapters; i++)
        if (!strcmp(e->adapters[i], r->adapter)) return 1; /* already loaded: no swap */
    return 0;
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
    uint64_t tie; /* breaks equal scores: rotates with the request counter */
} ranked;

static int by_rank(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->tier != y->tier) return x->tier - y->tier;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    /* equal scores (idle replicas): take turns, so light traffic does not all land on one */
    if (x->tie != y->tie) return x->tie < y->tie ? -1 : 1;
    return strcmp(x->e->cfg->url, y->e->cfg->url);
}

static int rank(const gw_config *c, gw_endpoint *const *eps, int n, const gw_pick_request *r,
                gw_endpoint **order, gw_pick_status *status, bool ignore_ejection);

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
        rk[m++] = (ranked){e, 0, tier, tie};
    }
    /* Bounded load: prefix affinity may not pile work on an endpoint already carrying more
     * than 1.25x the mean in-flight load plus one. */
    double bound = m ? 1.25 * (double)total_inflight / m + 1 : 0;
    /* round robin leaves every score 0: the rotation below runs over the fixed URL order,
     * not over one that changing loads reshuffle between picks */
    for (int i = 0; i < m && !c->round_robin; i++) {
        gw_endpoint *e = rk[i].e;
        bool ok = gw_endpoint_fresh(c, e, r->now_ns);
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
