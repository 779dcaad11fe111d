/* Speculative decoding in the engine (engine/spec*.c): the n-gram lookup, the setting's text
 * form, the draft policy on its own, then whole engines with speculation against the same
 * engines without: every reference generation of stories260K, random models, sampling, stop
 * strings, max_tokens, logprobs and the event stream compared event by event, a tight KV pool
 * (preemption), rollback (blocks back, prefix-cache hashes only of committed tokens), forking
 * choices, and the sampled distribution at drafted positions (chi-square over many seeds) for
 * n-gram, draft-model and layer-skip drafts. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "engine/engine.h"
#include "engine/open.h"
#include "engine/spec.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "model/lora.h"
#include "model/make.h"
#include "t.h"
#include "tok/tok.h"

/* ---- the n-gram lookup ---- */

TEST(spec_ngram_lookup_continues_latest_longest_match)
{
    int32_t out[8];
    /* "1 2 3 9 | 7 2 3 5 | ... 2 3": the 2-gram "2 3" occurred twice; the latest wins */
    int32_t t[] = {1, 2, 3, 9, 7, 2, 3, 5, 6, 2, 3};
    T_EQ(spec_ngram_lookup(t, 11, 2, 4, 3, out), 3);
    T_EQ(out[0], 5);
    T_EQ(out[1], 6);
    T_EQ(out[2], 2);
    /* the longer match wins over the later one: "1 2 3" occurred once, "2 3" later */
    int32_t u[] = {1, 2, 3, 8, 8, 2, 3, 4, 1, 2, 3};
    T_EQ(spec_ngram_lookup(u, 11, 2, 4, 2, out), 2);
    T_EQ(out[0], 8);
    T_EQ(out[1], 8);
    /* no earlier occurrence of a suffix of min tokens: nothing */
    int32_t v[] = {1, 2, 3, 4, 5, 6};
    T_EQ(spec_ngram_lookup(v, 6, 1, 4, 4, out), 0);
    T_EQ(spec_ngram_lookup(v, 1, 1, 4, 4, out), 0);
    /* a match whose continuation reaches the end repeats its cycle */
    int32_t w[] = {5, 7, 5, 7, 5};
    T_EQ(spec_ngram_lookup(w, 5, 1, 4, 5, out), 5);
    int32_t cyc[] = {7, 5, 7, 5, 7};
    T_MEMEQ(out, cyc, sizeof cyc);
    /* min above what matched */
    int32_t x[] = {4, 1, 2, 9, 2};
    T_EQ(spec_ngram_lookup(x, 5, 2, 4, 2, out), 0);
    T_EQ(spec_ngram_lookup(x, 5, 1, 4, 2, out), 2);
    T_EQ(out[0], 9);
    T_EQ(out[1], 2);
}

/* ---- the setting as text ---- */

TEST(spec_parse_and_format)
{
    engine_spec sp = {0};
    kl_err err;
    char buf[128];
    T_EQ(engine_spec_parse(&sp, "ngram", &err), 0);
    T_EQ(sp.kind, ENGINE_SPEC_NGRAM);
    engine_spec_format(&sp, buf, sizeof buf);
    T_STREQ(buf, "ngram:k=8,n=4,min=2");
    T_EQ(engine_spec_parse(&sp, "ngram:k=5,n=3,min=1,fixed", &err), 0);
    T_EQ(sp.k, 5);
    T_EQ(sp.ngram_max, 3);
    T_EQ(sp.ngram_min, 1);
    T_ASSERT(sp.fixed);
    engine_spec_format(&sp, buf, sizeof buf);
    T_STREQ(buf, "ngram:k=5,n=3,min=1,fixed");
    T_EQ(engine_spec_parse(&sp, "layerskip:layers=3,k=4", &err), 0);
    T_EQ(sp.kind, ENGINE_SPEC_SKIP);
    T_EQ(sp.skip_layers, 3);
    engine_spec_format(&sp, buf, sizeof buf);
    T_STREQ(buf, "layerskip:k=4,layers=3");
    T_EQ(engine_spec_parse(&sp, "draft:k=5,fixed", &err), 0);
    T_EQ(sp.kind, ENGINE_SPEC_DRAFT);
    engine_spec_format(&sp, buf, sizeof buf);
    T_STREQ(buf, "draft:k=5,fixed");
    T_EQ(engine_spec_parse(&sp, "off", &err), 0);
    T_EQ(sp.kind, ENGINE_SPEC_OFF);
    const char *bad[] = {
        "",        "ngrams",  "ngram:k=0",   "ngram:k=17", "ngram:k=",     "ngram:x=1",
        "ngram:n", "off:k=2", "ngram:min=5", "ngram:k=3x", "layerskip:n=2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sp = (engine_spec){.kind = ENGINE_SPEC_SKIP, .k = 3};
        T_EQ(engine_spec_parse(&sp, bad[i], &err), KL_EINVAL);
        T_CONTAINS(err.msg, "speculation");
        T_EQ(sp.kind, ENGINE_SPEC_SKIP); /* unchanged */
        T_EQ(sp.k, 3);
    }
}

/* ---- the policy ---- */

/* A cost fit fed steps of time a + b * n for n in 1..8. */
static spec_cost fitted(double a, double b)
{
    spec_cost c = {0};
    for (int i = 0; i < 200; i++) {
        int n = 1 + i % 8;
        spec_cost_observe(&c, n, a + b * n);
    }
    return c;
}

TEST(spec_grant_follows_cost_and_acceptance)
{
    int nd[16];
    float hi[16], lo[16];
    int avail[16];
    for (int i = 0; i < 16; i++)
        hi[i] = 0.8f, lo[i] = 0.1f, avail[i] = 8;
    /* memory-bound (one more token costs 2% of a step): one stream drafts up to its limit */
    spec_cost mem = fitted(0.010, 0.0002);
    T_NEAR(spec_cost_at(&mem, 5), 0.011, 2e-5); /* the prior pulls a little */
    spec_grant_in in = {&mem, 0, false, 1, 32, 1, hi, avail};
    T_EQ(spec_grant(&in, nd), 8);
    T_EQ(nd[0], 8);
    /* a decoder whose drafts keep failing drafts nothing */
    in.rate = lo;
    T_EQ(spec_grant(&in, nd), 0);
    /* compute-bound (every token costs ten times the step's fixed part): nothing pays */
    spec_cost cpu = fitted(0.0002, 0.002);
    in = (spec_grant_in){&cpu, 0, false, 1, 32, 1, hi, avail};
    T_EQ(spec_grant(&in, nd), 0);
    /* 16 decoders on the memory-bound machine: the step's spare caps the total; a step where
     * 16 tokens already cost much more than one (a + 16 b = 17 a) drafts nothing, although one
     * stream on the same machine would */
    in = (spec_grant_in){&mem, 0, false, 16, 32, 16, hi, avail};
    T_EQ(spec_grant(&in, nd), 32);
    spec_cost loaded = fitted(0.001, 0.001);
    in = (spec_grant_in){&loaded, 0, false, 1, 32, 1, hi, avail};
    T_ASSERT(spec_grant(&in, nd) > 0);
    in = (spec_grant_in){&loaded, 0, false, 16, 32, 16, hi, avail};
    T_EQ(spec_grant(&in, nd), 0);
    /* the spare caps the total; fixed grants whatever fits, best first */
    in = (spec_grant_in){&cpu, 0, true, 4, 10, 4, lo, avail};
    T_EQ(spec_grant(&in, nd), 10);
    T_EQ(nd[0] + nd[1] + nd[2] + nd[3], 10);
    /* a model drafter's passes count: a pass as dear as the step stops drafting */
    in = (spec_grant_in){&mem, 0.010, false, 1, 32, 1, hi, avail};
    T_EQ(spec_grant(&in, nd), 0);
    /* the pass cost comes from decode-shaped passes: a new sequence's prompt fed to the draft
     * model (300 tokens, as long as 30 steps) is not one, and would have stopped drafting */
    double pass = 0;
    spec_pass_observe(&pass, 300, 1, 0.300);
    T_NEAR(pass, 0, 0);
    spec_pass_observe(&pass, 2, 2, 0.001);
    T_NEAR(pass, 0.001, 0);
    spec_pass_observe(&pass, 290, 3, 0.300);
    spec_pass_observe(&pass, 0, 0, 0.300);
    T_NEAR(pass, 0.001, 0);
    spec_pass_observe(&pass, 4, 2, 0.002);
    T_NEAR(pass, 0.0012, 1e-12);
    in = (spec_grant_in){&mem, pass, false, 1, 32, 1, hi, avail};
    T_ASSERT(spec_grant(&in, nd) > 0);
}

/* ---- whole engines ---- */

#define MAXTOK 300
#define LOGCAP 32768

/* Everything a client sees of one request, event by event. */
typedef struct rec {
    char log[4][LOGCAP]; /* per choice: each event's token, text, logprobs, finish */
    size_t len[4];
    int32_t ids[4][MAXTOK];
    int n[4];
    char text[4][4096];
    size_t text_len[4];
    engine_finish finish[4];
    int last_events, completion_tokens, cached_tokens, drafted, accepted;
} rec;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void put(rec *r, int i, const void *p, size_t n)
{
    if (n == 0) return; /* p may be NULL then (no text, no top logprobs): memcpy's UB */
    if (r->len[i] + n > LOGCAP) t_fail(__FILE__, __LINE__, "event log too long");
    memcpy(r->log[i] + r->len[i], p, n);
    r->len[i] += n;
}

static void on_event(void *ctx, const engine_event *ev)
{
    rec *r = ctx;
    pthread_mutex_lock(&mu);
    int i = ev->index;
    put(r, i, &ev->token, sizeof ev->token);
    put(r, i, &ev->text_len, sizeof ev->text_len);
    put(r, i, ev->text, ev->text_len);
    put(r, i, &ev->logprob, sizeof ev->logprob);
    put(r, i, &ev->n_top, sizeof ev->n_top);
    put(r, i, ev->top, sizeof *ev->top * (size_t)ev->n_top);
    put(r, i, &ev->finish, sizeof ev->finish);
    if (ev->token >= 0 && r->n[i] < MAXTOK) r->ids[i][r->n[i]++] = ev->token;
    if (ev->text_len && r->text_len[i] + ev->text_len < sizeof r->text[i]) {
        memcpy(r->text[i] + r->text_len[i], ev->text, ev->text_len);
        r->text_len[i] += ev->text_len;
    }
    if (ev->finish != ENGINE_RUNNING) r->finish[i] = ev->finish;
    if (ev->last) {
        r->last_events++;
        r->completion_tokens = ev->completion_tokens;
        r->cached_tokens = ev->cached_tokens;
        r->drafted = ev->spec_draft_tokens;
        r->accepted = ev->spec_accepted_tokens;
    }
    pthread_mutex_unlock(&mu);
}

typedef struct eng_opts {
    const char *path;
    const char *spec;  /* engine_spec_parse text */
    const char *draft; /* draft: the draft model (NULL: the target drafts for itself) */
    size_t kv_bytes;
    int max_seqs, max_batch;
} eng_opts;

static void open_engine(engine_stack *st, const eng_opts *o)
{
    kl_err err;
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = o->path;
    c.model.max_ctx = 512;
    c.engine.n_threads = 2;
    c.engine.kv_mem_bytes = o->kv_bytes ? o->kv_bytes : 4u << 20;
    c.engine.kv_dtype = KL_F32;
    c.engine.max_seqs = o->max_seqs ? o->max_seqs : 8;
    c.engine.max_batch_tokens = o->max_batch ? o->max_batch : 64;
    T_EQ(engine_spec_parse(&c.engine.spec, o->spec, &err), 0);
    c.draft_path = o->draft;
    int rc = engine_open(st, &c, &err);
    if (rc) t_fail(__FILE__, __LINE__, "engine_open: %s", err.msg);
}

static void submit(engine *e, const int32_t *p, int n, const engine_sampling *sp, int nchoice,
                   int spec_k, rec *r)
{
    engine_request q = {.prompt = p,
                        .n_prompt = n,
                        .n = nchoice,
                        .sp = *sp,
                        .spec_k = spec_k,
                        .on_event = on_event,
                        .ctx = r};
    uint64_t id;
    kl_err err;
    int rc = engine_submit(e, &q, &id, &err);
    if (rc) t_fail(__FILE__, __LINE__, "submit: %s", err.msg);
}

static engine_sampling greedy(int max)
{
    engine_sampling sp;
    engine_sampling_defaults(&sp);
    sp.temperature = 0;
    sp.max_tokens = max;
    return sp;
}

static void expect_same(const rec *a, const rec *b, int nchoice)
{
    T_EQ(b->last_events, 1);
    T_EQ(b->completion_tokens, a->completion_tokens);
    for (int i = 0; i < nchoice; i++) {
        T_EQ(b->finish[i], a->finish[i]);
        T_EQ(b->n[i], a->n[i]);
        T_MEMEQ(b->ids[i], a->ids[i], sizeof(int32_t) * (size_t)a->n[i]);
        T_EQ((int64_t)b->len[i], (int64_t)a->len[i]);
        T_MEMEQ(b->log[i], a->log[i], a->len[i]);
    }
}

static const char *const specs[] = {"off",   "ngram:k=8,n=4,min=1,fixed",    "ngram:k=3,fixed",
                                    "ngram", "layerskip:k=4,layers=1,fixed", "draft:k=5,fixed"};
#define N_SPECS 6

/* The reference prompts of stories260K (up to 16), their greedy ids. */
typedef struct refs {
    int n;
    int32_t prompt[16][64];
    int n_prompt[16];
    int32_t greedy[16][128];
    int n_greedy[16];
} refs;

static void load_refs(refs *R)
{
    memset(R, 0, sizeof *R);
    FILE *fp = fopen(t_shared("reference/stories260K.jsonl"), "r");
    T_ASSERT(fp);
    char line[1 << 16];
    while (R->n < 16 && fgets(line, sizeof line, fp)) {
        json_t *ref = json_loads(line, 0, NULL);
        json_t *pid = json_object_get(ref, "prompt_ids"), *g = json_object_get(ref, "greedy_ids");
        int k = R->n++;
        R->n_prompt[k] = (int)json_array_size(pid);
        R->n_greedy[k] = (int)json_array_size(g);
        T_ASSERT(R->n_prompt[k] <= 64 && R->n_greedy[k] <= 128);
        for (int i = 0; i < R->n_prompt[k]; i++)
            R->prompt[k][i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
        for (int i = 0; i < R->n_greedy[k]; i++)
            R->greedy[k][i] = (int32_t)json_integer_value(json_array_get(g, (size_t)i));
        json_decref(ref);
    }
    fclose(fp);
    T_ASSERT(R->n > 0);
}

/* Every reference generation, greedy, token for token, with each speculation setting: one at a
 * time and all at once (drafts beside prefill chunks and other decoders). */
TEST(spec_reference_greedy_identical)
{
    refs *R = malloc(sizeof *R);
    load_refs(R);
    rec *r = calloc((size_t)R->n, sizeof *r);
    for (int s = 0; s < N_SPECS; s++)
        for (int together = 0; together < 2; together++) {
            engine_stack st;
            open_engine(&st,
                        &(eng_opts){.path = t_shared("models/stories260K.gguf"), .spec = specs[s]});
            memset(r, 0, sizeof *r * (size_t)R->n);
            engine_sampling sp = greedy(100);
            for (int k = 0; k < R->n; k++) {
                submit(st.eng, R->prompt[k], R->n_prompt[k], &sp, 1, 0, &r[k]);
                if (!together) T_ASSERT(engine_wait_idle(st.eng, 60000));
            }
            T_ASSERT(engine_wait_idle(st.eng, 60000));
            int drafted = 0, accepted = 0;
            for (int k = 0; k < R->n; k++) {
                T_EQ(r[k].last_events, 1);
                T_EQ(r[k].n[0], R->n_greedy[k]);
                T_MEMEQ(r[k].ids[0], R->greedy[k], sizeof(int32_t) * (size_t)R->n_greedy[k]);
                drafted += r[k].drafted, accepted += r[k].accepted;
            }
            engine_stats es;
            engine_stats_get(st.eng, &es);
            T_EQ(es.kv_blocks_used, 0);
            T_EQ((int64_t)es.spec_draft_tokens, drafted);
            T_EQ((int64_t)es.spec_accepted_tokens, accepted);
            uint64_t per_pos = 0;
            for (int j = 0; j < ENGINE_SPEC_MAX_K; j++)
                per_pos += es.spec_accepted_per_pos[j];
            T_EQ((int64_t)per_pos, accepted);
            if (s == 0) T_EQ(drafted, 0);
            if (s == 1 || s == 2) { /* fixed: drafts were made, and some kept, some not */
                T_ASSERT(accepted > 0 && accepted < drafted);
                T_ASSERT(es.spec_drafts > 0 && es.spec_accepted_per_pos[0] > 0);
            }
            engine_close(&st);
        }
    free(r);
    free(R);
}

/* A random-weight model in the test's directory. */
static const char *random_model(const char *name, kl_dtype type, int dim, int layers, float std)
{
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 1024, "%s/%s.gguf", t_tmpdir(), name);
    model_make_opts o;
    model_make_defaults(&o);
    o.type = type;
    o.dim = dim;
    o.layers = layers;
    o.ffn = 3 * dim;
    o.std = std;
    o.ctx = 512;
    kl_err err;
    if (model_make(&o, p, &err)) t_fail(__FILE__, __LINE__, "model_make: %s", err.msg);
    return p;
}

/* 12 requests: greedy and sampled, top-k/top-p, penalties, logprobs, two choices, short and
 * long max_tokens, stop strings (from stops[k] when given). */
#define N_MIX 12
static void mix_request(int k, int32_t *p, int *n, engine_sampling *sp, int *nchoice,
                        const char *stop)
{
    *n = 4 + (k * 29) % 40;
    p[0] = 1;
    for (int i = 1; i < *n; i++) /* short cycles so the n-gram source finds matches */
        p[i] = 3 + ((k * 131 + (i % (3 + k % 5)) * 17) % 500);
    *sp = greedy(k % 6 == 5 ? 3 : 40 + 7 * k);
    sp->ignore_eos = k % 2;
    if (k % 3 == 1) {
        sp->temperature = 0.9f;
        sp->top_k = k % 2 ? 40 : 0;
        sp->top_p = 0.95f;
        sp->seed = 1000 + (uint64_t)k;
    }
    if (k % 4 == 2) sp->repetition_penalty = 1.3f;
    if (k % 4 == 3) sp->frequency_penalty = 0.5f, sp->presence_penalty = 0.3f;
    sp->logprobs = k % 3 == 2 ? 3 : k % 5 == 0 ? 0 : -1;
    *nchoice = k % 5 == 4 ? 2 : 1;
    if (stop && *stop) sp->stop[sp->n_stop++] = stop;
}

/* Runs the mix on one engine; stops[k] (may be NULL) is request k's stop string. */
static void run_mix(const eng_opts *o, char stops[][8], rec *r, engine_stats *es)
{
    engine_stack st;
    open_engine(&st, o);
    for (int k = 0; k < N_MIX; k++) {
        int32_t p[64];
        int n, nchoice;
        engine_sampling sp;
        mix_request(k, p, &n, &sp, &nchoice, stops ? stops[k] : NULL);
        submit(st.eng, p, n, &sp, nchoice, 0, &r[k]);
    }
    T_ASSERT(engine_wait_idle(st.eng, 100000));
    engine_stats_get(st.eng, es);
    T_EQ(es->kv_blocks_used, 0);
    engine_close(&st);
}

/* A model's mix with each speculation setting, then again with a stop string taken from the
 * middle of each request's text, and in a KV pool small enough to preempt: every event the
 * same as without speculation. Returns the draft tokens accepted. */
static uint64_t mix_identical(const char *path)
{
    rec *base = calloc(N_MIX, sizeof *base), *r = calloc(N_MIX, sizeof *r);
    char(*stops)[8] = calloc(N_MIX, 8);
    engine_stats es;
    run_mix(&(eng_opts){.path = path, .spec = "off"}, NULL, base, &es);
    uint64_t accepted = 0;
    for (int s = 1; s < N_SPECS; s++) {
        memset(r, 0, sizeof *r * N_MIX);
        run_mix(&(eng_opts){.path = path, .spec = specs[s]}, NULL, r, &es);
        for (int k = 0; k < N_MIX; k++)
            expect_same(&base[k], &r[k], k % 5 == 4 ? 2 : 1);
        accepted += es.spec_accepted_tokens;
    }
    /* stop strings: 3 bytes of the text's middle (where it has them) */
    int with_stop = 0;
    for (int k = 0; k < N_MIX; k++) {
        size_t len = base[k].text_len[0];
        if (len < 12) continue;
        memcpy(stops[k], base[k].text[0] + len / 2, 3);
        if (memchr(stops[k], 0, 3)) stops[k][0] = 0;
        with_stop += stops[k][0] != 0;
    }
    T_ASSERT(with_stop >= 4);
    memset(base, 0, sizeof *base * N_MIX);
    run_mix(&(eng_opts){.path = path, .spec = "off"}, stops, base, &es);
    int stopped = 0;
    for (int k = 0; k < N_MIX; k++)
        stopped += base[k].finish[0] == ENGINE_FINISH_STOP;
    T_ASSERT(stopped >= 4);
    for (int s = 1; s < N_SPECS; s++) {
        memset(r, 0, sizeof *r * N_MIX);
        run_mix(&(eng_opts){.path = path, .spec = specs[s]}, stops, r, &es);
        for (int k = 0; k < N_MIX; k++)
            expect_same(&base[k], &r[k], k % 5 == 4 ? 2 : 1);
    }
    /* a pool of 24 blocks of 16 tokens: sequences are preempted and recomputed */
    memset(r, 0, sizeof *r * N_MIX);
    engine_stack st;
    open_engine(&st, &(eng_opts){.path = path, .spec = "off"});
    size_t per_block = 16 * 2 * (size_t)st.hp->n_layers *
                       (size_t)(st.hp->n_kv_heads * st.hp->head_dim) * sizeof(float);
    engine_close(&st);
    static const int tight[] = {1, 4, 5}; /* n-gram, layer skip, draft model */
    uint64_t preempted = 0;
    for (int t = 0; t < 3; t++) {
        int s = tight[t];
        memset(r, 0, sizeof *r * N_MIX);
        run_mix(&(eng_opts){.path = path,
                            .spec = specs[s],
                            .kv_bytes = 24 * per_block,
                            .max_seqs = 8,
                            .max_batch = 48},
                stops, r, &es);
        printf("# %s, 24 blocks: %llu preemptions\n", specs[s], (unsigned long long)es.preemptions);
        preempted += es.preemptions;
        for (int k = 0; k < N_MIX; k++)
            expect_same(&base[k], &r[k], k % 5 == 4 ? 2 : 1);
    }
    /* Whether one setting preempts depends on when the engine thread picks the requests up
     * (a draft that keeps most tokens may outrun the pool): the three together must. */
    T_ASSERT(preempted > 0);
    free(base), free(r), free(stops);
    return accepted;
}

TEST(spec_events_identical_stories260k)
{
    T_ASSERT(mix_identical(t_shared("models/stories260K.gguf")) > 0);
}

TEST(spec_events_identical_random_models)
{
    uint64_t a = mix_identical(random_model("f32", KL_F32, 64, 2, 0.02f));
    a += mix_identical(random_model("q8", KL_Q8_0, 128, 3, 0.05f));
    T_ASSERT(a > 0);
}

/* A request under a grammar, on a LoRA adapter, or both, and an embedding request (never
 * drafts), beside each other: the same events with speculation as without, and the grammar's
 * and the adapter's requests did draft and keep drafts (the grammar loops, so the n-gram
 * lookup finds its earlier rounds). A grammar needs no rollback: each verified row is masked by
 * the matcher as advanced by the kept tokens only. */
TEST(spec_grammar_lora_embed_identical)
{
    const char *mpath = t_shared("models/stories260K.gguf");
    char path[512];
    snprintf(path, sizeof path, "%s/spec_lora.gguf", t_tmpdir());
    kl_err err = {0};
    model_make_lora_opts lo;
    model_make_lora_defaults(&lo);
    lo.base_path = mpath;
    lo.rank = 4;
    lo.alpha = 8.f;
    lo.targets = "q,k,v,o,gate,up,down";
    lo.seed = 7;
    lo.std = 0.1f;
    T_EQ(model_make_lora(&lo, path, &err), 0);
    const char *re = "(Lily (was|is) (happy|sad|big)\\. )+";
    gram *g = NULL;
    T_EQ(gram_compile_regex(&g, re, strlen(re), NULL, &err), 0);
    enum { N = 4 };
    rec *r[2] = {calloc(N, sizeof(rec)), calloc(N, sizeof(rec))};
    int32_t prompt[16];
    for (int s = 0; s < 2; s++) {
        engine_stack st;
        open_engine(&st, &(eng_opts){.path = mpath, .spec = s ? specs[1] : specs[0]});
        int np = (int)tok_encode(st.tok, "Lily was sad. Lily", 18, TOK_ADD_BOS, prompt, 16);
        T_ASSERT(np > 2);
        gguf_file *f;
        T_EQ(gguf_open(&f, path, &err), 0);
        model_lora *lora;
        T_EQ(model_lora_load(&lora, st.model, f, 1.f, &err), 0);
        gguf_close(f);
        for (int k = 0; k < N; k++) {
            engine_sampling sp = greedy(60);
            sp.ignore_eos = true;
            sp.logprobs = 2;
            if (k == 2) sp.temperature = 0.9f, sp.seed = 5;
            engine_request q = {.prompt = prompt,
                                .n_prompt = k == 3 ? 1 : np,
                                .n = 1,
                                .sp = sp,
                                .grammar = k == 0 || k == 2 ? g : NULL,
                                .lora = k >= 1 && k <= 2 ? lora : NULL,
                                .embed = k == 3,
                                .on_event = on_event,
                                .ctx = &r[s][k]};
            uint64_t id;
            if (engine_submit(st.eng, &q, &id, &err))
                t_fail(__FILE__, __LINE__, "submit %d: %s", k, err.msg);
        }
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        engine_close(&st);
        model_lora_free(lora);
    }
    for (int k = 0; k < N; k++)
        expect_same(&r[0][k], &r[1][k], 1);
    T_EQ(r[1][3].drafted, 0); /* the embedding */
    for (int k = 0; k < 3; k++) {
        T_ASSERT(r[1][k].drafted > 0);
        T_ASSERT(r[1][k].accepted > 0);
    }
    r[1][0].text[0][r[1][0].text_len[0]] = 0;
    T_ASSERT(gram_matches(g, r[1][0].text[0], strlen(r[1][0].text[0])) ||
             r[1][0].finish[0] == ENGINE_FINISH_LENGTH);
    T_CONTAINS(r[1][0].text[0], "Lily ");
    gram_unref(g);
    free(r[0]), free(r[1]);
}

/* Greedy requests on stories260K through fixed drafts of a model; returns the acceptance and
 * checks the events against the same requests without speculation. */
static double drafted_greedy(const char *spec, const char *draft)
{
    const char *path = t_shared("models/stories260K.gguf");
    enum { N = 6 };
    rec *r[2] = {calloc(N, sizeof(rec)), calloc(N, sizeof(rec))};
    int32_t p[N][8];
    for (int s = 0; s < 2; s++) {
        engine_stack st;
        open_engine(&st,
                    &(eng_opts){.path = path, .spec = s ? spec : "off", .draft = s ? draft : NULL});
        for (int k = 0; k < N; k++) {
            for (int i = 0; i < 8; i++)
                p[k][i] = i ? 20 + (k * 37 + i * 11) % 400 : 1;
            engine_sampling sp = greedy(40 + 7 * k);
            sp.ignore_eos = true;
            submit(st.eng, p[k], 8, &sp, 1, 0, &r[s][k]);
        }
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        engine_close(&st);
    }
    int drafted = 0, accepted = 0;
    for (int k = 0; k < N; k++) {
        expect_same(&r[0][k], &r[1][k], 1);
        drafted += r[1][k].drafted, accepted += r[1][k].accepted;
    }
    free(r[0]), free(r[1]);
    T_ASSERT(drafted > 0);
    return (double)accepted / drafted;
}

/* The target as its own draft model drafts exactly its greedy tokens: every draft is kept
 * (the draft's cache follows the kept tokens; a draft one position off, or a draft cache not
 * rolled back after a rejection, would not be). A random draft of the same vocabulary (model
 * make from the target's tokenizer) changes nothing in the output. */
TEST(spec_draft_model_self_and_random)
{
    double self = drafted_greedy("draft:k=4,fixed", NULL);
    printf("# target as its own draft: %.1f%% accepted\n", 100 * self);
    T_ASSERT(self > 0.97);
    char rnd[1024];
    snprintf(rnd, sizeof rnd, "%s/spec_draft_rnd.gguf", t_tmpdir());
    model_make_opts o;
    model_make_defaults(&o);
    o.vocab_from = t_shared("models/stories260K.gguf");
    o.dim = 32;
    o.layers = 1;
    o.ffn = 64;
    o.ctx = 512;
    kl_err err;
    T_EQ(model_make(&o, rnd, &err), 0);
    double other = drafted_greedy("draft:k=3,fixed", rnd);
    printf("# random draft: %.1f%% accepted\n", 100 * other);
    double skip = drafted_greedy("layerskip:k=3,layers=3,fixed", NULL);
    printf("# layer skip, 3 layers: %.1f%% accepted\n", 100 * skip);
}

/* A draft model whose vocabulary is not the target's is refused at load, by name; a layer
 * skip that skips nothing is refused. */
TEST(spec_draft_model_refused)
{
    char other[1024];
    snprintf(other, sizeof other, "%s/spec_draft_other.gguf", t_tmpdir());
    model_make_opts o;
    model_make_defaults(&o);
    o.vocab = 512; /* as many tokens as stories260K, other pieces */
    o.ctx = 512;
    kl_err err;
    T_EQ(model_make(&o, other, &err), 0);
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = t_shared("models/stories260K.gguf");
    c.model.max_ctx = 512;
    c.engine.kv_mem_bytes = 4u << 20;
    T_EQ(engine_spec_parse(&c.engine.spec, "draft", &err), 0);
    c.draft_path = other;
    engine_stack st;
    T_ASSERT(engine_open(&st, &c, &err) < 0);
    T_CONTAINS(err.msg, "spec_draft_other.gguf: draft vocabulary differs from the target's (");
    T_ASSERT(st.eng == NULL);
    T_EQ(engine_spec_parse(&c.engine.spec, "layerskip:layers=64", &err), 0);
    c.draft_path = NULL;
    T_ASSERT(engine_open(&st, &c, &err) < 0);
    T_CONTAINS(err.msg, "layers=64");
    T_EQ(engine_spec_parse(&c.engine.spec, "ngram", &err), 0);
    c.draft_path = other;
    T_ASSERT(engine_open(&st, &c, &err) < 0);
    T_CONTAINS(err.msg, "a draft model is for --spec draft");
}

/* Rejected drafts leave nothing behind: blocks go back, and the prefix cache holds only blocks
 * of committed tokens, with their true K/V: a later request made of the prompt and the
 * output finds the same cached blocks as without speculation, and continues the same. */
TEST(spec_rollback_blocks_and_prefix_cache)
{
    refs *R = malloc(sizeof *R);
    load_refs(R);
    int cached[2], n_out[2];
    int32_t out[2][128];
    for (int s = 0; s < 2; s++) {
        engine_stack st;
        open_engine(&st,
                    &(eng_opts){.path = t_shared("models/stories260K.gguf"), .spec = specs[s]});
        rec *r = calloc(2, sizeof *r);
        int k = R->n - 1;
        engine_sampling sp = greedy(100);
        submit(st.eng, R->prompt[k], R->n_prompt[k], &sp, 1, 0, &r[0]);
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        engine_stats es;
        engine_stats_get(st.eng, &es);
        T_EQ(es.kv_blocks_used, 0);
        if (s) T_ASSERT(r[0].accepted > 0 && r[0].accepted < r[0].drafted);
        int32_t p[256];
        int n = R->n_prompt[k];
        memcpy(p, R->prompt[k], sizeof(int32_t) * (size_t)n);
        memcpy(p + n, r[0].ids[0], sizeof(int32_t) * (size_t)r[0].n[0]);
        n += r[0].n[0];
        sp = greedy(40);
        sp.ignore_eos = true;
        submit(st.eng, p, n, &sp, 1, -1, &r[1]);
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        cached[s] = r[1].cached_tokens;
        n_out[s] = r[1].n[0];
        memcpy(out[s], r[1].ids[0], sizeof(int32_t) * (size_t)n_out[s]);
        T_EQ(cached[s], (n - 1) / 16 * 16);
        engine_stats_get(st.eng, &es);
        T_EQ(es.kv_blocks_used, 0);
        free(r);
        engine_close(&st);
    }
    T_EQ(cached[1], cached[0]);
    T_EQ(n_out[1], n_out[0]);
    T_MEMEQ(out[1], out[0], sizeof(int32_t) * (size_t)n_out[0]);
    free(R);
}

/* A prompt whose last token alone is left after a prefix-cache hit forks its choices from
 * that token's row: it must not draft first (the choices would fork later, from choice 0's
 * output). Each choice as without speculation. */
TEST(spec_forking_choices_after_prefix_hit)
{
    int32_t p[33];
    p[0] = 1;
    for (int i = 1; i < 33; i++)
        p[i] = 3 + (i % 4) * 50;
    rec *r = calloc(4, sizeof *r);
    for (int s = 0; s < 2; s++) {
        engine_stack st;
        open_engine(&st,
                    &(eng_opts){.path = t_shared("models/stories260K.gguf"), .spec = specs[s]});
        engine_sampling sp = greedy(20);
        sp.ignore_eos = true;
        submit(st.eng, p, 33, &sp, 1, 0, &r[2 * s]);
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        sp.temperature = 1.f;
        sp.seed = 3;
        submit(st.eng, p, 33, &sp, 3, 0, &r[2 * s + 1]);
        T_ASSERT(engine_wait_idle(st.eng, 60000));
        T_EQ(r[2 * s + 1].cached_tokens, 32);
        engine_stats es;
        engine_stats_get(st.eng, &es);
        T_EQ(es.kv_blocks_used, 0);
        engine_close(&st);
    }
    T_ASSERT(r[3].drafted > 0);
    expect_same(&r[0], &r[2], 1);
    expect_same(&r[1], &r[3], 3);
    free(r);
}

/* ---- the distribution at a drafted position ----
 * Requests sampled with top_k = 3 (a vocabulary of three) at temperature 4 (which flattens the
 * top 3 so that each is drawn often), over thousands of seeds. At a position where a draft was
 * verified, the tokens drawn, grouped by the tokens drawn before them, must follow the target's
 * own top-3 distribution there at that temperature (from the raw log probabilities of a
 * one-token request for that context): whatever the draft, the token is the target's. A draft
 * kept when it should not be, or a rejected one replaced by a draw from p instead of
 * (p - q)+ normalised, moves probability to the draft token. */

#define CHI_V   3   /* top_k */
#define CHI_T   4.0 /* temperature */
#define CHI_G   9   /* contexts (groups) at one position, at most */
#define CHI_MIN 60  /* runs a group needs to be counted */

/* The chi-square quantile for df degrees of freedom at the upper tail z standard deviations
 * out (Wilson-Hilferty). */
static double chi2_quantile(int df, double z)
{
    double h = 2.0 / (9.0 * df);
    double c = 1.0 - h + z * sqrt(h);
    return df * c * c * c;
}

/* The tokens drawn at one position, grouped by the len tokens drawn before it. */
typedef struct chi_tally {
    int len, n;
    int32_t key[CHI_G][2];
    int total[CHI_G], kept[CHI_G]; /* runs; of them, runs that kept the draft here */
    int32_t draft[CHI_G];          /* a draft kept in the group (-1: none) */
    int count[CHI_G][512];         /* by token id (stories260K's vocabulary) */
} chi_tally;

static void tally(chi_tally *c, const int32_t *key, int32_t t, bool kept)
{
    int g = 0;
    while (g < c->n && memcmp(c->key[g], key, sizeof(int32_t) * (size_t)c->len))
        g++;
    T_ASSERT(g < CHI_G);
    if (g == c->n) {
        memcpy(c->key[c->n++], key, sizeof(int32_t) * (size_t)c->len);
        c->draft[g] = -1;
    }
    T_ASSERT(t >= 0 && t < 512);
    c->total[g]++;
    c->count[g][t]++;
    if (kept) c->kept[g]++, c->draft[g] = t;
}

/* The target's top 3 after ctx (n tokens, n < 32) in top_tok and their probabilities at CHI_T in
 * pr, from the top list of a one-token request with logprobs (not drafted). */
static void target_top(engine *e, const int32_t *ctx, int n, int32_t *top_tok, double *pr)
{
    rec *r = calloc(1, sizeof *r);
    engine_sampling sp = greedy(1);
    sp.logprobs = CHI_V;
    submit(e, ctx, n, &sp, 1, -1, r);
    T_ASSERT(engine_wait_idle(e, 60000));
    /* the top list is in the event log: token(4) text_len(8) text logprob(4) n_top(4) */
    size_t off = sizeof(int32_t), tl;
    memcpy(&tl, r->log[0] + off, sizeof tl);
    off += sizeof tl + tl + sizeof(float);
    int n_top;
    memcpy(&n_top, r->log[0] + off, sizeof n_top);
    T_EQ(n_top, CHI_V);
    engine_logprob top[CHI_V];
    memcpy(top, r->log[0] + off + sizeof n_top, sizeof top);
    free(r);
    double z = 0;
    for (int j = 0; j < CHI_V; j++)
        z += exp((double)top[j].logprob / CHI_T);
    for (int j = 0; j < CHI_V; j++) {
        top_tok[j] = top[j].token;
        pr[j] = exp((double)top[j].logprob / CHI_T) / z;
    }
}

typedef struct chi_result {
    double stat, crit; /* the statistic; its critical value at an upper tail of 1e-4 */
    int df, runs;      /* degrees of freedom; the runs in the counted groups */
    int off_top;       /* groups whose kept draft is not the target's most likely token */
} chi_result;

/* c's groups of CHI_MIN runs or more against the target's distribution after the prompt (p, np
 * tokens) and the group's key; every token drawn must be in the target's top 3. Prints each
 * group and the result, named what. */
static chi_result chi_square(engine *e, const int32_t *p, int np, const chi_tally *c,
                             const char *what)
{
    chi_result res = {0};
    for (int g = 0; g < c->n; g++) {
        if (c->total[g] < CHI_MIN) continue;
        int32_t ctx[32], top_tok[CHI_V];
        double pr[CHI_V], ex[CHI_V];
        T_ASSERT(np + c->len <= 32);
        memcpy(ctx, p, sizeof(int32_t) * (size_t)np);
        memcpy(ctx + np, c->key[g], sizeof(int32_t) * (size_t)c->len);
        target_top(e, ctx, np + c->len, top_tok, pr);
        int in_top = 0, rank = -1;
        for (int j = 0; j < CHI_V; j++) {
            int n = c->count[g][top_tok[j]];
            in_top += n;
            ex[j] = pr[j] * c->total[g];
            res.stat += (n - ex[j]) * (n - ex[j]) / (ex[j] > 1e-9 ? ex[j] : 1e-9);
            if (top_tok[j] == c->draft[g]) rank = j + 1;
        }
        T_EQ(in_top, c->total[g]); /* a token outside the top 3: not the target's distribution */
        res.df += CHI_V - 1;
        res.runs += c->total[g];
        res.off_top += rank > 1;
        printf("# %s after %d", what, c->key[g][0]);
        if (c->len > 1) printf(" %d", c->key[g][1]);
        printf(": %d runs, counts %d %d %d, expected %.1f %.1f %.1f; %d kept the draft, its rank "
               "in the target's top 3: %d\n",
               c->total[g], c->count[g][top_tok[0]], c->count[g][top_tok[1]],
               c->count[g][top_tok[2]], ex[0], ex[1], ex[2], c->kept[g], rank);
    }
    T_ASSERT(res.df >= 2);
    res.crit = chi2_quantile(res.df, 3.72); /* upper tail 1e-4 */
    printf("# %s: chi-square %.2f on %d df (critical %.2f), %d runs\n", what, res.stat, res.df,
           res.crit, res.runs);
    return res;
}

/* Opens stories260K with spec (and draft) for the runs; the prompt text into p (24 tokens at
 * most). Returns its length. */
static int chi_engine(engine_stack *st, const char *spec, const char *draft, const char *text,
                      int32_t *p)
{
    open_engine(st, &(eng_opts){.path = t_shared("models/stories260K.gguf"),
                                .spec = spec,
                                .draft = draft,
                                .kv_bytes = 8u << 20,
                                .max_seqs = 16,
                                .max_batch = 512});
    int np = (int)tok_encode(st->tok, text, strlen(text), TOK_ADD_BOS, p, 24);
    T_ASSERT(np > 4);
    return np;
}

/* n runs of the prompt, seeds 77.., max tokens each, into r. */
static void chi_runs(engine *e, const int32_t *p, int np, int n, int max, rec *r)
{
    engine_sampling sp;
    engine_sampling_defaults(&sp);
    sp.temperature = (float)CHI_T;
    sp.top_k = CHI_V;
    sp.max_tokens = max;
    sp.ignore_eos = true;
    for (int k = 0; k < n; k++) {
        sp.seed = 77 + (uint64_t)k;
        submit(e, p, np, &sp, 1, 0, &r[k]);
        if (k % 64 == 63) T_ASSERT(engine_wait_idle(e, 60000));
    }
    T_ASSERT(engine_wait_idle(e, 60000));
    for (int k = 0; k < n; k++)
        T_EQ(r[k].n[0], max);
}

/* n-gram drafts (q a point mass), 3 tokens a request: the second token is where the first draft
 * is verified, when the first token continued the prompt's cycle. Both accepted and rejected
 * drafts occur. */
TEST(spec_sampled_distribution_chi_square)
{
    enum { N = 2400 };
    engine_stack st;
    int32_t p[24];
    int np = chi_engine(&st, specs[1], NULL, "Lily and Tom, Lily and Tom, Lily and", p);
    rec *r = calloc(N, sizeof *r);
    chi_runs(st.eng, p, np, N, 3, r);
    chi_tally *c = calloc(1, sizeof *c);
    c->len = 1;
    int drafted = 0, accepted = 0;
    for (int k = 0; k < N; k++) {
        if (!r[k].drafted) continue; /* no draft at the second token: not the case studied */
        drafted++, accepted += r[k].accepted > 0;
        tally(c, r[k].ids[0], r[k].ids[0][1], r[k].accepted > 0);
    }
    printf("# %d of %d runs drafted at the second token, %d kept the draft\n", drafted, N,
           accepted);
    T_ASSERT(drafted > N / 4);
    T_ASSERT(accepted > 0 && accepted < drafted);
    chi_result x = chi_square(st.eng, p, np, c, "n-gram, second token");
    T_ASSERT(x.stat < x.crit);
    free(c);
    free(r);
    engine_close(&st);
}

/* A copy of stories260K whose output head has noise added (each weight plus a uniform draw in
 * [-a, a] times the head's RMS): the same vocabulary, another distribution. Returns its path. */
static const char *perturbed_draft(double a)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/spec_draft_perturbed.gguf", t_tmpdir());
    kl_err err;
    gguf_file *f;
    T_EQ(gguf_open(&f, t_shared("models/stories260K.gguf"), &err), 0);
    gguf_writer *w;
    T_EQ(gguf_writer_open(&w, path, &err), 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(f, i));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    gguf_writer_begin_data(w);
    kl_rng rng;
    kl_rng_seed(&rng, 17);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (strcmp(t->name, "output.weight")) {
            gguf_writer_write(w, t->data, t->nbytes);
            continue;
        }
        T_EQ(t->type, KL_F32);
        size_t n = t->nbytes / sizeof(float);
        float *x = malloc(t->nbytes);
        T_ASSERT(x);
        memcpy(x, t->data, t->nbytes);
        double ss = 0;
        for (size_t j = 0; j < n; j++)
            ss += (double)x[j] * (double)x[j];
        double amp = a * sqrt(ss / (double)n);
        for (size_t j = 0; j < n; j++)
            x[j] += (float)(amp * (2 * kl_rng_unit(&rng) - 1));
        gguf_writer_write(w, x, t->nbytes);
        free(x);
    }
    T_EQ(gguf_writer_finish(w, &err), 0);
    gguf_close(f);
    return path;
}

/* Drafts of a model (spec: k=2, fixed; draft: the draft model, or NULL), 4 tokens a request.
 * The step after the first token verifies 2 drafts: the second token is the first drafted
 * position, and, when its draft was kept, the third is the second (the request then drafts no
 * more: 2 drafted); when it was rejected, a later step drafts 1 more (3 drafted). Both
 * positions against the target's distribution, conditioned on the tokens before them; each
 * with drafts both kept and rejected, and some not the target's most likely token. */
static void model_drafts_chi_square(const char *spec, const char *draft, const char *what)
{
    enum { N = 1600 };
    engine_stack st;
    int32_t p[24];
    int np = chi_engine(&st, spec, draft, "Tom and his mom went to the", p);
    rec *r = calloc(N, sizeof *r);
    chi_runs(st.eng, p, np, N, 4, r);
    chi_tally *c = calloc(2, sizeof *c); /* the first and second drafted positions */
    c[0].len = 1, c[1].len = 2;
    int kept[2] = {0}, rejected[2] = {0};
    for (int k = 0; k < N; k++) {
        T_ASSERT(r[k].drafted == 2 || r[k].drafted == 3);
        bool first = r[k].drafted == 2, second = first && r[k].accepted == 2;
        tally(&c[0], r[k].ids[0], r[k].ids[0][1], first);
        kept[0] += first, rejected[0] += !first;
        if (!first) continue;
        tally(&c[1], r[k].ids[0], r[k].ids[0][2], second);
        kept[1] += second, rejected[1] += !second;
    }
    char name[2][96];
    for (int i = 0; i < 2; i++) {
        snprintf(name[i], sizeof name[i], "%s, %s drafted position", what, i ? "second" : "first");
        printf("# %s: %d drafts kept, %d rejected\n", name[i], kept[i], rejected[i]);
    }
    int off_top = 0;
    for (int i = 0; i < 2; i++) {
        chi_result x = chi_square(st.eng, p, np, &c[i], name[i]);
        T_ASSERT(x.stat < x.crit);
        off_top += x.off_top;
    }
    for (int i = 0; i < 2; i++)
        T_ASSERT(kept[i] >= CHI_MIN && rejected[i] >= CHI_MIN);
    T_ASSERT(off_top > 0); /* the draft is not the target: it keeps less likely tokens too */
    free(c);
    free(r);
    engine_close(&st);
}

TEST(spec_draft_model_sampled_chi_square)
{
    model_drafts_chi_square("draft:k=2,fixed", perturbed_draft(1.5), "draft model");
}

TEST(spec_layerskip_sampled_chi_square)
{
    model_drafts_chi_square("layerskip:k=2,layers=4,fixed", NULL, "layer skip");
}
