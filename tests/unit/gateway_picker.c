#include "t.h"

#include "gateway/picker.h"

#define NOW 1000000000000LL

/* A config with one model of n endpoints (the first half in region "a", the rest in "b"). */
static gw_config *make_config(int n, const char *region)
{
    size_t cap = 256 + 48 * (size_t)n;
    char *json = malloc(cap);
    int off = snprintf(json, cap, "{%s%s%s\"models\": [{\"name\": \"m\", \"pools\": [",
                       region ? "\"region\": \"" : "", region ? region : "", region ? "\", " : "");
    for (int half = 0; half < 2; half++) {
        off += snprintf(json + off, cap - (size_t)off,
                        "%s{\"region\": \"%s\", \"adapters\": [\"%s\"], \"endpoints\": [",
                        half ? "," : "", half ? "b" : "a", half ? "lora-b" : "lora-a");
        for (int i = half * n / 2; i < (half + 1) * n / 2; i++)
            off += snprintf(json + off, cap - (size_t)off, "%s{\"url\": \"http://127.0.0.1:%d\"}",
                            i == half * n / 2 ? "" : ",", 8000 + i);
        off += snprintf(json + off, cap - (size_t)off, "]}");
    }
    snprintf(json + off, cap - (size_t)off, "]}]}");
    gw_config *c;
    kl_err err = {0};
    if (gw_config_parse(&c, json, strlen(json), "t", &err))
        t_fail(__FILE__, __LINE__, "%s", err.msg);
    free(json);
    return c;
}

static void make_endpoints(gw_config *c, gw_endpoint *e, gw_endpoint **p, int n)
{
    int k = 0;
    for (int pi = 0; pi < c->models[0].n_pools; pi++)
        for (int i = 0; i < c->models[0].pools[pi].n_endpoints; i++, k++) {
            memset(&e[k], 0, sizeof e[k]);
            e[k].cfg = &c->models[0].pools[pi].endpoints[i];
            e[k].model = &c->models[0];
            e[k].pool = &c->models[0].pools[pi];
            e[k].healthy = true;
            e[k].scraped_ns = NOW;
            e[k].prefix = gw_lru_set_create(1024);
            p[k] = &e[k];
        }
    T_EQ(k, n);
}

static void free_endpoints(gw_endpoint *e, int n)
{
    for (int i = 0; i < n; i++)
        gw_lru_set_destroy(e[i].prefix);
}

TEST(gateway_picker_prefers_short_queues_and_free_kv)
{
    gw_config *c = make_config(4, NULL);
    gw_endpoint e[4], *p[4], *order[4];
    make_endpoints(c, e, p, 4);
    e[0].waiting = 6, e[1].waiting = 0, e[2].waiting = 0, e[3].waiting = 1;
    e[1].kv_usage = 0.8, e[2].kv_usage = 0.1;
    gw_pick_request r = {.now_ns = NOW};
    gw_pick_status st;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 4);
    T_EQ(st, GW_PICK_OK);
    T_ASSERT(order[0] == &e[2]);
    T_ASSERT(order[3] == &e[0]);
    free_endpoints(e, 4);
    gw_config_free(c);
}

TEST(gateway_picker_follows_prefix_affinity_within_bounded_load)
{
    gw_config *c = make_config(4, NULL);
    gw_endpoint e[4], *p[4], *order[4];
    make_endpoints(c, e, p, 4);
    char prompt[1024];
    for (int i = 0; i < 1023; i++)
        prompt[i] = (char)('a' + i % 26);
    prompt[1023] = 0;
    uint64_t h[32];
    int nb = gw_prefix_hashes(prompt, strlen(prompt), 0, h, 32);
    T_EQ(nb, 1023 / GW_PREFIX_BLOCK_BYTES);
    gw_lru_set_add(e[3].prefix, h, nb);
    gw_pick_request r = {.blocks = h, .n_blocks = nb, .now_ns = NOW};
    gw_pick_status st;
    gw_pick(c, p, 4, &r, order, &st);
    T_ASSERT(order[0] == &e[3]);
    /* The same prompt with another salt (another tenant) shares nothing. */
    uint64_t h2[32];
    T_EQ(gw_prefix_hashes(prompt, strlen(prompt), 42, h2, 32), nb);
    T_EQ(gw_lru_set_match(e[3].prefix, h2, nb), 0);
    /* Overloaded beyond 1.25x the mean: affinity no longer counts. */
    e[3].inflight = 10;
    gw_pick(c, p, 4, &r, order, &st);
    T_ASSERT(order[0] != &e[3]);
    free_endpoints(e, 4);
    gw_config_free(c);
}

TEST(gateway_picker_filters_saturated_and_unhealthy)
{
    gw_config *c = make_config(2, NULL);
    gw_endpoint e[2], *p[2], *order[2];
    make_endpoints(c, e, p, 2);
    gw_pick_request r = {.now_ns = NOW};
    gw_pick_status st;
    e[0].waiting = c->sat_max_waiting;
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 1);
    T_ASSERT(order[0] == &e[1]);
    e[1].kv_usage = 0.99;
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 0);
    T_EQ(st, GW_PICK_SATURATED);
    /* Stale metrics are not trusted: no longer saturated by them. */
    e[1].scraped_ns = NOW - 10LL * c->scrape_stale_ms * 1000000;
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 1);
    e[0].waiting = 0;
    e[0].ejected_until_ns = NOW + 1; /* passively ejected: the other is preferred */
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 1);
    T_ASSERT(order[0] == &e[1]);
    e[1].ejected_until_ns = NOW + 1; /* both ejected but healthy: panic mode tries both */
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 2);
    e[0].healthy = false;
    e[1].healthy = false;
    T_EQ(gw_pick(c, p, 2, &r, order, &st), 0);
    T_EQ(st, GW_PICK_UNAVAILABLE);
    free_endpoints(e, 2);
    gw_config_free(c);
}

TEST(gateway_picker_prefers_home_region_and_fails_over)
{
    gw_config *c = make_config(4, "b");
    gw_endpoint e[4], *p[4], *order[4];
    make_endpoints(c, e, p, 4);
    e[2].waiting = e[3].waiting = 5; /* busier, but home */
    gw_pick_request r = {.now_ns = NOW};
    gw_pick_status st;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 4);
    T_STREQ(order[0]->cfg->region, "b");
    T_STREQ(order[1]->cfg->region, "b");
    T_STREQ(order[2]->cfg->region, "a"); /* retry targets in the other region come after */
    e[2].healthy = e[3].healthy = false;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2);
    T_STREQ(order[0]->cfg->region, "a");
    free_endpoints(e, 4);
    gw_config_free(c);
}

TEST(gateway_picker_adapters_and_sessions)
{
    gw_config *c = make_config(4, NULL);
    gw_endpoint e[4], *p[4], *order[4];
    make_endpoints(c, e, p, 4);
    gw_pick_status st;
    gw_pick_request r = {.adapter = "lora-b", .now_ns = NOW};
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2); /* only pool b serves it */
    T_STREQ(order[0]->pool->adapters[0], "lora-b");
    r.adapter = "nope";
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 0);
    T_EQ(st, GW_PICK_UNAVAILABLE);
    /* Sessions stick, and different sessions spread. */
    int seen[4] = {0};
    for (uint64_t s = 1; s <= 64; s++) {
        gw_pick_request q = {.has_session = true, .session = s, .now_ns = NOW};
        gw_pick(c, p, 4, &q, order, &st);
        gw_endpoint *first = order[0];
        e[0].inflight++; /* load moves around; the session must still stick */
        gw_pick(c, p, 4, &q, order, &st);
        T_ASSERT(order[0] == first);
        e[0].inflight--;
        seen[first - e]++;
    }
    for (int i = 0; i < 4; i++)
        T_ASSERT(seen[i] > 4);
    free_endpoints(e, 4);
    gw_config_free(c);
}

TEST(gateway_lru_set_evicts_oldest)
{
    gw_lru_set *s = gw_lru_set_create(64);
    uint64_t h[1000];
    for (int i = 0; i < 1000; i++)
        h[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull | 1;
    gw_lru_set_add(s, h, 1000);
    T_EQ(gw_lru_set_match(s, h, 1), 0);       /* old ones are gone */
    T_EQ(gw_lru_set_match(s, h + 999, 1), 1); /* the newest is present */
    int present = 0;
    for (int i = 0; i < 1000; i++)
        present += gw_lru_set_match(s, h + i, 1);
    T_ASSERT(present <= 64);
    T_ASSERT(present >= 32);
    gw_lru_set_destroy(s);
}

TEST(gateway_picker_round_robin_policy_rotates)
{
    gw_config c = {.w_prefix = 10, .round_robin = true, .sat_max_inflight = 100};
    gw_endpoint_cfg cf[3] = {{.url = "http://a", .region = ""},
                             {.url = "http://b", .region = ""},
                             {.url = "http://c", .region = ""}};
    gw_endpoint e[3];
    gw_endpoint *eps[3], *order[3];
    for (int i = 0; i < 3; i++) {
        e[i] = (gw_endpoint){.cfg = &cf[i], .healthy = true};
        eps[i] = &e[i];
    }
    int seen[3] = {0};
    for (uint64_t s = 0; s < 30; s++) {
        gw_pick_request r = {.now_ns = 1, .seq = s};
        gw_pick_status st;
        T_EQ(gw_pick(&c, eps, 3, &r, order, &st), 3);
        seen[order[0] - e]++;
    }
    for (int i = 0; i < 3; i++)
        T_EQ(seen[i], 10);
}

/* Round robin is a baseline: scores must not reorder the rotation, even when the loads they
 * read change between picks (each pick here adds to the chosen endpoint's in-flight count). */
TEST(gateway_picker_round_robin_ignores_changing_scores)
{
    gw_config c = {.w_queue = 1,
                   .w_kv = 1,
                   .w_inflight = 1,
                   .round_robin = true,
                   .sat_max_inflight = 1000,
                   .sat_max_kv = 1,
                   .scrape_stale_ms = 1000};
    gw_endpoint_cfg cf[3] = {{.url = "http://a", .region = "", .weight = 1},
                             {.url = "http://b", .region = "", .weight = 1},
                             {.url = "http://c", .region = "", .weight = 1}};
    gw_endpoint e[3];
    gw_endpoint *eps[3], *order[3];
    for (int i = 0; i < 3; i++) {
        e[i] = (gw_endpoint){.cfg = &cf[i], .healthy = true, .scraped_ns = 1};
        eps[i] = &e[i];
    }
    e[1].kv_usage = 0.5;
    int seen[3] = {0};
    for (uint64_t s = 0; s < 30; s++) {
        gw_pick_request r = {.now_ns = 1, .seq = s};
        gw_pick_status st;
        T_EQ(gw_pick(&c, eps, 3, &r, order, &st), 3);
        seen[order[0] - e]++;
        order[0]->inflight += 1 + (int)(s % 4); /* uneven work */
    }
    for (int i = 0; i < 3; i++)
        T_EQ(seen[i], 10);
}

TEST(gateway_picker_idle_ties_take_turns)
{
    gw_config c = {
        .w_queue = 1, .w_kv = 1, .w_prefix = 2, .w_inflight = 1, .sat_max_inflight = 100};
    gw_endpoint_cfg cf[3] = {{.url = "http://a", .region = "", .weight = 1},
                             {.url = "http://b", .region = "", .weight = 1},
                             {.url = "http://c", .region = "", .weight = 1}};
    gw_endpoint e[3];
    gw_endpoint *eps[3], *order[3];
    for (int i = 0; i < 3; i++) {
        e[i] = (gw_endpoint){.cfg = &cf[i], .healthy = true};
        eps[i] = &e[i];
    }
    int seen[3] = {0};
    for (uint64_t s = 0; s < 30; s++) { /* identical idle endpoints: every one gets a turn */
        gw_pick_request r = {.now_ns = 1, .seq = s};
        gw_pick_status st;
        T_EQ(gw_pick(&c, eps, 3, &r, order, &st), 3);
        seen[order[0] - e]++;
    }
    for (int i = 0; i < 3; i++)
        T_EQ(seen[i], 10);
}

/* A replica holding the request's adapter gets it while it has room, however much better the
 * others' load scores are; past the bounded load (1.25x the mean in flight + 1) or when
 * saturated, the least loaded replica that can load it does. */
TEST(gateway_picker_adapter_affinity_with_room)
{
    gw_config *c = make_config(4, NULL);
    gw_endpoint e[4], *p[4], *order[4];
    make_endpoints(c, e, p, 4);
    gw_pick_status st;
    gw_pick_request r = {.adapter = "lora-b", .now_ns = NOW};
    /* e[2] and e[3] serve lora-b; e[3] holds it but has a longer queue and fuller KV */
    gw_endpoint_note_adapter(&e[3], "lora-b", NOW);
    e[3].waiting = 3, e[3].kv_usage = 0.6, e[3].inflight = 1;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2);
    T_ASSERT(order[0] == &e[3]);
    /* no room: e[3] carries more than 1.25x the mean + 1, the least loaded one loads it */
    e[3].inflight = 5;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2);
    T_ASSERT(order[0] == &e[2]);
    /* a request routed to e[2] counts there until its next scrape: both hold it, the better
     * scored one wins */
    gw_endpoint_note_adapter(&e[2], "lora-b", NOW);
    gw_endpoint_note_adapter(&e[2], "lora-b", NOW); /* once */
    T_EQ(e[2].n_adapters, 1);
    e[3].inflight = 1;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2);
    T_ASSERT(order[0] == &e[2]);
    /* weight 0 turns the affinity off: scores alone */
    c->w_adapter = 0;
    e[2].n_adapters = 0;
    T_EQ(gw_pick(c, p, 4, &r, order, &st), 2);
    T_ASSERT(order[0] == &e[2]);
    free_endpoints(e, 4);
    gw_config_free(c);
}

/* Routing an adapter to a full endpoint replaces, in the gateway's view, the adapter it routed
 * there longest ago (the replica's LRU evicts that one); a scrape replaces the list and keeps
 * the last-routed times by name. */
TEST(gateway_picker_guesses_the_replicas_eviction)
{
    gw_config *c = make_config(2, NULL);
    gw_endpoint e[2], *p[2];
    make_endpoints(c, e, p, 2);
    const char scraped[3][64] = {"x", "y", "z"};
    gw_endpoint_set_adapters(&e[0], scraped, 2, 2); /* holds x, y; room for 2 */
    gw_endpoint_note_adapter(&e[0], "y", NOW);
    gw_endpoint_note_adapter(&e[0], "x", NOW + 1);
    gw_endpoint_note_adapter(&e[0], "z", NOW + 2); /* y was routed longest ago: z replaces it */
    T_EQ(e[0].n_adapters, 2);
    T_STREQ(e[0].adapters[0], "x");
    T_STREQ(e[0].adapters[1], "z");
    gw_endpoint_set_adapters(&e[0], scraped + 1, 2, 2); /* the replica says: y, z */
    T_STREQ(e[0].adapters[0], "y");
    T_EQ(e[0].adapter_used_ns[0], 0);
    T_EQ(e[0].adapter_used_ns[1], NOW + 2); /* z's time carried over */
    free_endpoints(e, 2);
    gw_config_free(c);
}

/* Placing an adapter nobody holds on a fleet of full endpoints: the one whose adapters are
 * most often held elsewhere goes first, fewest lost copies first all down the order, over the
 * bounded load last. 64 endpoints of 32 adapters each: endpoint k holds u(k) adapters of its
 * own and shared ones; z's one "own" adapter is also held by o (over the bounded load, still
 * a holder); endpoints that do not serve the model's adapter hold endpoint 0's own ones (they
 * are no holders: only the ranked endpoints count); d lists its own adapter twice (two
 * losses, not a second holder). */
TEST(gateway_picker_places_adapters_where_fewest_copies_are_lost)
{
    enum { N = 128, M = N / 2, A = GW_MAX_ADAPTERS };
    gw_config *c = make_config(N, NULL);
    gw_endpoint *e = calloc(N, sizeof *e), **p = calloc(N, sizeof *p),
                **order = calloc(N, sizeof *order);
    make_endpoints(c, e, p, N);
    int own[M], z = 10, o = 20, d = 13;
    for (int k = 0; k < M; k++) {
        gw_endpoint *x = &e[M + k]; /* pool b: serves lora-b */
        own[k] = k == z ? 1 : 2 + k * 7 % 29;
        for (int a = 0; a < A; a++)
            if (a < own[k])
                snprintf(x->adapters[a], sizeof x->adapters[0], "own-%d-%d", k, a);
            else /* held by every endpoint with fewer of its own: by 3 at least */
                snprintf(x->adapters[a], sizeof x->adapters[0], "shared-%d", a);
        x->n_adapters = x->max_lora = A;
    }
    snprintf(e[M + o].adapters[A - 1], sizeof e[0].adapters[0], "own-%d-0", z);
    snprintf(e[M + d].adapters[1], sizeof e[0].adapters[0], "own-%d-0", d);
    for (int a = 0; a < 2; a++) /* pool a holds all of endpoint 0's own (it ranks before z
                                   on the tie-break: were pool a counted, 0 would come first) */
        snprintf(e[a].adapters[0], sizeof e[0].adapters[0], "own-0-%d", a);
    e[0].n_adapters = e[1].n_adapters = 1;
    e[M + o].inflight = 10; /* over 1.25 x the mean + 1 */
    gw_pick_status st;
    gw_pick_request r = {.adapter = "lora-b", .now_ns = NOW, .seq = 3};
    T_EQ(gw_pick(c, p, N, &r, order, &st), M);
    T_ASSERT(order[0] == &e[M + z]); /* loses no copy */
    T_ASSERT(order[M - 1] == &e[M + o]);
    for (int i = 1; i < M - 1; i++) {
        int k0 = (int)(order[i - 1] - e) - M, k1 = (int)(order[i] - e) - M;
        T_ASSERT(k0 >= 0 && k1 >= 0);
        if (own[k0] > own[k1])
            printf("# %d: %d (%d own) before %d (%d own)\n", i, k0, own[k0], k1, own[k1]);
        T_ASSERT(own[k0] <= own[k1]);
    }
    free_endpoints(e, N);
    free(e), free(p), free(order);
    gw_config_free(c);
}
