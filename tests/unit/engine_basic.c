/* The engine on the real stories260K model: reference greedy generations through the
 * scheduler, batch invariance (alone vs among 15 others, with prefix-cache hits, after
 * preemption), prefix-cache accounting, n > 1, stop strings, aborts, a random stress
 * run after which every request has finished and every block is back, and constrained
 * decoding (grammars) in a mixed batch. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/engine.h"
#include "engine/open.h"
#include "grammar/grammar.h"
#include "t_grammar.h"
#include "t.h"
#include "tok/tok.h"

#define MAXTOK 400

typedef struct result {
    int32_t ids[8][MAXTOK];
    float lp[8][MAXTOK]; /* logprob of each token (when asked) */
    int n[8];
    char text[8][4096];
    size_t text_len[8];
    engine_finish finish[8];
    int last_events, prompt_tokens, completion_tokens, cached_tokens;
    double queued_s; /* from the first event that has it (0 before: calloc) */
    double t_last;   /* kl_now_s() at the last event */
} result;

typedef struct fixture {
    engine_stack st;
    tok *tk;
    engine *e;
} fixture;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ctx, const engine_event *ev)
{
    result *r = ctx;
    pthread_mutex_lock(&mu);
    int i = ev->index;
    if (ev->token >= 0 && r->n[i] < MAXTOK) {
        r->lp[i][r->n[i]] = ev->logprob;
        r->ids[i][r->n[i]++] = ev->token;
    }
    if (ev->text_len && r->text_len[i] + ev->text_len < sizeof r->text[i]) {
        memcpy(r->text[i] + r->text_len[i], ev->text, ev->text_len);
        r->text_len[i] += ev->text_len;
    }
    if (ev->finish != ENGINE_RUNNING) r->finish[i] = ev->finish;
    if (!r->queued_s && ev->queued_s >= 0) r->queued_s = ev->queued_s > 0 ? ev->queued_s : 1e-9;
    if (ev->last) {
        r->t_last = kl_now_s();
        r->last_events++;
        r->prompt_tokens = ev->prompt_tokens;
        r->completion_tokens = ev->completion_tokens;
        r->cached_tokens = ev->cached_tokens;
    }
    pthread_mutex_unlock(&mu);
}

static void fx_open(fixture *fx, size_t kv_bytes, int max_seqs, int max_batch, bool prefix)
{
    kl_err err;
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = t_shared("models/stories260K.gguf");
    c.model.max_ctx = 512;
    c.engine.n_threads = 2;
    c.engine.kv_mem_bytes = kv_bytes;
    c.engine.kv_dtype = KL_F32;
    c.engine.max_seqs = max_seqs;
    c.engine.max_batch_tokens = max_batch;
    c.engine.prefix_cache = prefix;
    T_EQ(engine_open(&fx->st, &c, &err), 0);
    fx->tk = fx->st.tok;
    fx->e = fx->st.eng;
}

static void fx_close(fixture *fx)
{
    engine_close(&fx->st);
}

/* Submits a request (grammar may be NULL) and fails the test if it is refused. */
static uint64_t submit_req(fixture *fx, const int32_t *p, int n, engine_sampling *sp, int nchoice,
                           int prio, gram *grammar, result *r)
{
    engine_request q = {.prompt = p,
                        .n_prompt = n,
                        .n = nchoice,
                        .sp = *sp,
                        .priority = prio,
                        .grammar = grammar,
                        .on_event = on_event,
                        .ctx = r};
    uint64_t id = 0;
    kl_err err;
    int src = engine_submit(fx->e, &q, &id, &err);
    if (src) fprintf(stderr, "submit: %s\n", err.msg);
    T_EQ(src, 0);
    return id;
}

static uint64_t submit(fixture *fx, const int32_t *p, int n, engine_sampling *sp, int nchoice,
                       int prio, result *r)
{
    return submit_req(fx, p, n, sp, nchoice, prio, NULL, r);
}

static engine_sampling greedy(int max)
{
    engine_sampling sp;
    engine_sampling_defaults(&sp);
    sp.temperature = 0;
    sp.max_tokens = max;
    return sp;
}

TEST(engine_reference_greedy)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, true);
    FILE *fp = fopen(t_shared("reference/stories260K.jsonl"), "r");
    char line[1 << 16];
    while (fgets(line, sizeof line, fp)) {
        json_t *ref = json_loads(line, 0, NULL);
        json_t *pid = json_object_get(ref, "prompt_ids"), *g = json_object_get(ref, "greedy_ids");
        int32_t p[64];
        int n = (int)json_array_size(pid);
        for (int i = 0; i < n; i++)
            p[i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
        result *r = calloc(1, sizeof *r);
        engine_sampling sp = greedy(100);
        submit(&fx, p, n, &sp, 1, 0, r);
        T_ASSERT(engine_wait_idle(fx.e, 60000));
        T_EQ(r->last_events, 1);
        T_EQ(r->n[0], (int)json_array_size(g));
        for (int i = 0; i < r->n[0]; i++)
            T_EQ(r->ids[0][i], json_integer_value(json_array_get(g, (size_t)i)));
        const char *want = json_string_value(json_object_get(ref, "greedy_text"));
        /* the reference text includes the EOS-free continuation; ours holds nothing back at the end
         */
        T_EQ((int64_t)r->text_len[0], (int64_t)strlen(want));
        T_MEMEQ(r->text[0], want, strlen(want));
        free(r);
        json_decref(ref);
    }
    fclose(fp);
    fx_close(&fx);
}

/* 16 requests of different lengths and sampling parameters. */
static void mixed_request(int k, int32_t *p, int *n, engine_sampling *sp)
{
    *n = 3 + (k * 37) % 60;
    p[0] = 1;
    for (int i = 1; i < *n; i++)
        p[i] = 3 + (k * 131 + i * 17) % 500;
    if (k % 4 == 0) { /* shared prefix for prefix-cache hits */
        for (int i = 1; i < 40 && i < *n; i++)
            p[i] = 300 + i;
    }
    engine_sampling_defaults(sp);
    sp->temperature = k % 3 == 0 ? 0.f : 0.7f + 0.05f * (float)k;
    sp->top_k = k % 5 == 0 ? 0 : 20 + k;
    sp->top_p = k % 2 ? 0.9f : 1.f;
    sp->seed = 1000 + (uint64_t)k;
    sp->max_tokens = 20 + (k * 7) % 50;
    sp->ignore_eos = true;
    sp->repetition_penalty = k % 6 == 1 ? 1.1f : 1.f;
}

static void run_mixed(size_t kv_bytes, int max_seqs, bool together, result *res, engine_stats *st)
{
    fixture fx;
    fx_open(&fx, kv_bytes, max_seqs, 48, true);
    for (int k = 0; k < 16; k++) {
        int32_t p[64];
        int n;
        engine_sampling sp;
        mixed_request(k, p, &n, &sp);
        submit(&fx, p, n, &sp, 1, k % 3, &res[k]);
        if (!together) T_ASSERT(engine_wait_idle(fx.e, 60000));
    }
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    engine_stats_get(fx.e, st);
    fx_close(&fx);
}

TEST(engine_batch_invariance_and_preemption)
{
    result *alone = calloc(16, sizeof *alone), *together = calloc(16, sizeof *together);
    result *tight = calloc(16, sizeof *tight);
    engine_stats s1, s2, s3;
    run_mixed(4u << 20, 16, false, alone, &s1);
    run_mixed(4u << 20, 16, true, together, &s2);
    /* a cache of a few blocks forces preemption and recomputation */
    run_mixed(40 * 16 * 2 * 5 * 32 * 4, 16, true, tight, &s3);
    T_ASSERT(s3.preemptions > 0);
    T_ASSERT(s2.prefix_hits > 0);
    for (int k = 0; k < 16; k++) {
        T_EQ(alone[k].last_events, 1);
        T_EQ(together[k].n[0], alone[k].n[0]);
        T_EQ(tight[k].n[0], alone[k].n[0]);
        T_MEMEQ(together[k].ids[0], alone[k].ids[0], sizeof(int32_t) * (size_t)alone[k].n[0]);
        T_MEMEQ(tight[k].ids[0], alone[k].ids[0], sizeof(int32_t) * (size_t)alone[k].n[0]);
    }
    T_EQ(s2.kv_blocks_used, 0);
    T_EQ(s3.kv_blocks_used, 0);
    free(alone), free(together), free(tight);
}

TEST(engine_prefix_cache_saves_work)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, true);
    int32_t p[200];
    p[0] = 1;
    for (int i = 1; i < 200; i++)
        p[i] = 3 + (i * 7) % 500;
    result *r = calloc(4, sizeof *r);
    engine_sampling sp = greedy(5);
    for (int k = 0; k < 4; k++) {
        p[199] = 10 + k;
        submit(&fx, p, 200, &sp, 1, 0, &r[k]);
        T_ASSERT(engine_wait_idle(fx.e, 60000));
    }
    engine_stats st;
    engine_stats_get(fx.e, &st);
    T_EQ((int64_t)st.prefix_queries, 800);
    T_EQ((int64_t)st.prefix_hits, 3 * 192); /* 12 full blocks of 16 for each later request */
    T_EQ(r[3].cached_tokens, 192);
    T_ASSERT(st.computed_tokens < 800);
    free(r);
    fx_close(&fx);
}

/* Queue time (vllm:request_queue_time_seconds) runs from submit until a step first schedules the
 * request: with one running sequence at a time, the second request waits for the first to end. */
TEST(engine_queue_time_until_first_scheduled)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 1, 64, false);
    int32_t p[8] = {1, 30, 40, 50, 60, 70, 80, 90};
    result *r = calloc(2, sizeof *r);
    engine_sampling sp = greedy(60);
    sp.ignore_eos = true;
    submit(&fx, p, 8, &sp, 1, 0, &r[0]);
    submit(&fx, p, 8, &sp, 1, 0, &r[1]);
    double t_submitted = kl_now_s(); /* after the engine stamped the second request */
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    T_ASSERT(r[0].queued_s > 0 && r[1].queued_s > 0);
    T_ASSERT(r[1].queued_s > r[0].queued_s);
    /* scheduled no earlier than the first request's last event */
    T_ASSERT(t_submitted + r[1].queued_s >= r[0].t_last);
    free(r);
    fx_close(&fx);
}

TEST(engine_n_choices_share_prompt)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, true);
    int32_t p[40];
    p[0] = 1;
    for (int i = 1; i < 40; i++)
        p[i] = 3 + i * 11 % 400;
    result *r = calloc(1, sizeof *r);
    engine_sampling sp;
    engine_sampling_defaults(&sp);
    sp.max_tokens = 30;
    sp.ignore_eos = true;
    sp.seed = 7;
    submit(&fx, p, 40, &sp, 4, 0, r);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    T_EQ(r->last_events, 1);
    T_EQ(r->completion_tokens, 120);
    for (int i = 0; i < 4; i++)
        T_EQ(r->n[i], 30);
    T_ASSERT(memcmp(r->ids[0], r->ids[1], sizeof(int32_t) * 30) != 0);
    engine_stats st;
    engine_stats_get(fx.e, &st);
    T_EQ(st.kv_blocks_used, 0);
    T_ASSERT(st.computed_tokens < 40 * 2 + 120); /* the prompt was computed once */
    free(r);
    fx_close(&fx);
}

TEST(engine_stop_string_not_emitted)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, true);
    int32_t p[8];
    int n = (int)tok_encode(fx.tk, "Once upon a time", 16, TOK_ADD_BOS, p, 8);
    result *r = calloc(2, sizeof *r);
    engine_sampling sp = greedy(100);
    submit(&fx, p, n, &sp, 1, 0, &r[0]);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    /* stop at the first "Lily" of the reference continuation ", there was a little girl named
     * Lily." */
    sp.stop[0] = "Lily";
    sp.n_stop = 1;
    submit(&fx, p, n, &sp, 1, 0, &r[1]);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    T_EQ(r[1].finish[0], ENGINE_FINISH_STOP);
    const char *at = strstr(r[0].text[0], "Lily");
    T_ASSERT(at);
    T_EQ((int64_t)r[1].text_len[0], (int64_t)(at - r[0].text[0]));
    T_MEMEQ(r[1].text[0], r[0].text[0], r[1].text_len[0]);
    free(r);
    fx_close(&fx);
}

TEST(engine_abort_and_stress)
{
    fixture fx;
    fx_open(&fx, 64 * 16 * 2 * 5 * 32 * 4, 6, 32, true);
    result *r = calloc(40, sizeof *r);
    uint64_t ids[40];
    uint64_t x = 12345;
    for (int k = 0; k < 40; k++) {
        int32_t p[100];
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int n = 2 + (int)((x >> 33) % 90);
        p[0] = 1;
        for (int i = 1; i < n; i++)
            p[i] = 3 + (int)((x >> (i % 40)) % 500);
        engine_sampling sp;
        engine_sampling_defaults(&sp);
        sp.max_tokens = 1 + (int)((x >> 40) % 60);
        sp.seed = x;
        ids[k] = submit(&fx, p, n, &sp, 1 + (int)((x >> 20) % 3), (int)((x >> 50) % 3), &r[k]);
        if (k % 3 == 0) engine_abort(fx.e, ids[k / 2]);
    }
    T_ASSERT(engine_wait_idle(fx.e, 100000));
    for (int k = 0; k < 40; k++)
        T_EQ(r[k].last_events, 1);
    engine_stats st;
    engine_stats_get(fx.e, &st);
    T_EQ(st.kv_blocks_used, 0);
    T_EQ(st.running, 0);
    T_EQ(st.waiting, 0);
    free(r);
    fx_close(&fx);
}

/* The step histograms: one observation per step that ran the model, batch sizes summing to
 * the tokens computed (a 200-token prompt in 64-token chunks, then one token a step), and
 * the workers' time inside kernels. */
TEST(engine_step_histograms)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, false);
    int32_t p[200];
    p[0] = 1;
    for (int i = 1; i < 200; i++)
        p[i] = 3 + (i * 7) % 500;
    result *r = calloc(1, sizeof *r);
    engine_sampling sp = greedy(10);
    double t0 = kl_now_s();
    submit(&fx, p, 200, &sp, 1, 0, r);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    double wall = kl_now_s() - t0;
    engine_stats st;
    engine_stats_get(fx.e, &st);
    uint64_t n_s = 0, n_tok = 0;
    for (int i = 0; i < ENGINE_STEP_S_BUCKETS; i++)
        n_s += st.step_s_count[i];
    for (int i = 0; i < ENGINE_STEP_TOK_BUCKETS; i++)
        n_tok += st.step_tok_count[i];
    T_EQ(n_s, st.steps);
    T_EQ(n_tok, st.steps);
    T_EQ(st.steps, 4 + 9); /* 64 + 64 + 64 + 8 prompt tokens, then 9 single-token steps */
    T_EQ(st.step_tok_sum, st.computed_tokens);
    T_EQ(st.step_tok_sum, 200 + 9);
    T_EQ(st.step_tok_count[0], 9); /* le 1: the decode steps */
    T_EQ(st.step_tok_count[6], 3); /* le 64: three full chunks, the last 8 tokens */
    T_EQ(st.step_tok_count[3], 1); /* le 8 */
    T_ASSERT(st.step_s_sum > 0 && st.step_s_sum <= wall);
    T_EQ(st.n_workers, 2);
    T_ASSERT(st.worker_busy_ns > 0);
    T_ASSERT((double)st.worker_busy_ns * 1e-9 <= 2 * wall);
    free(r);
    fx_close(&fx);
}

/* A request the engine refuses names the parameter at fault in kl_err.param (the server
 * reports it as OpenAI's `param`; it used to cut the message at its first ':'). */
TEST(engine_refusal_names_its_param)
{
    fixture fx;
    fx_open(&fx, 8u << 20, 8, 256, true);
    int32_t p[3] = {1, 2, 3};
    result r = {0};
    uint64_t id;
    kl_err err;
    engine_sampling sp = greedy(4);
    sp.top_p = 2;
    engine_request q = {
        .prompt = p, .n_prompt = 3, .n = 1, .sp = sp, .on_event = on_event, .ctx = &r};
    T_EQ(engine_submit(fx.e, &q, &id, &err), KL_EINVAL);
    T_STREQ(err.param, "top_p");
    q.sp = greedy(0);
    T_EQ(engine_submit(fx.e, &q, &id, &err), KL_EINVAL);
    T_STREQ(err.param, "max_tokens");
    q.sp = greedy(4);
    q.n_prompt = 0;
    T_EQ(engine_submit(fx.e, &q, &id, &err), KL_EINVAL);
    T_STREQ(err.param, "prompt");
    fx_close(&fx);
}

/* ---- constrained decoding ---- */

/* Constrained requests (a schema, n = 3, greedy and sampled, logprobs) batched with
 * unconstrained ones: every choice that ends by an end token is a sentence of its language,
 * ends only by one (ignore_eos set), and the unconstrained requests give exactly what they
 * give alone. */
TEST(engine_grammar_outputs_stay_in_language)
{
    fixture fx;
    fx_open(&fx, 8u << 20, 16, 128, true);
    gram *g = t_schema(
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
        "\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"yy\"]},\"maxItems\":3},"
        "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"n\",\"ok\"],"
        "\"additionalProperties\":false}");
    int32_t p[8];
    int np = (int)tok_encode(fx.tk, "Once upon a time", 16, TOK_ADD_BOS, p, 8);
    result *alone = calloc(1, sizeof *alone), *rs = calloc(6, sizeof *rs);
    engine_sampling plain = greedy(40);
    plain.ignore_eos = true;
    submit(&fx, p, np, &plain, 1, 0, alone);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    for (int k = 0; k < 6; k++) {
        engine_sampling sp = greedy(300);
        sp.ignore_eos = true;
        sp.logprobs = 2;
        if (k & 1) sp.temperature = 1.f, sp.seed = 100 + (uint64_t)k;
        if (k == 4)
            submit(&fx, p, np, &plain, 1, 0, &rs[k]);
        else
            submit_req(&fx, p, np, &sp, 3, 0, g, &rs[k]);
    }
    T_ASSERT(engine_wait_idle(fx.e, 120000));
    int ended = 0, constrained = 0;
    for (int k = 0; k < 6; k++) {
        T_EQ(rs[k].last_events, 1);
        if (k == 4) {
            T_EQ(rs[k].n[0], alone->n[0]);
            T_MEMEQ(rs[k].ids[0], alone->ids[0], sizeof(int32_t) * (size_t)alone->n[0]);
            continue;
        }
        for (int i = 0; i < 3; i++) {
            constrained += rs[k].n[i];
            T_ASSERT(rs[k].finish[i] == ENGINE_FINISH_STOP ||
                     rs[k].finish[i] == ENGINE_FINISH_LENGTH);
            for (int t = 0; t < rs[k].n[i]; t++)
                T_ASSERT(isfinite(rs[k].lp[i][t]) && rs[k].lp[i][t] <= 0.f);
            if (rs[k].finish[i] != ENGINE_FINISH_STOP) continue;
            ended++;
            rs[k].text[i][rs[k].text_len[i]] = 0;
            if (!gram_matches(g, rs[k].text[i], rs[k].text_len[i]))
                t_fail(__FILE__, __LINE__, "request %d choice %d: %s", k, i, rs[k].text[i]);
            T_ASSERT(tok_is_eog(fx.tk, rs[k].ids[i][rs[k].n[i] - 1]));
        }
        if (!(k & 1)) /* greedy: the choices agree */
            T_MEMEQ(rs[k].text[0], rs[k].text[1], rs[k].text_len[0]);
    }
    printf("# %d of 15 constrained choices ended by EOS\n", ended);
    T_ASSERT(ended >= 6);
    engine_stats st;
    engine_stats_get(fx.e, &st);
    T_EQ(st.kv_blocks_used, 0);
    T_EQ(st.grammar_tokens, constrained); /* each sampled under its grammar, timed */
    T_ASSERT(st.grammar_ns > 0);
    free(alone);
    free(rs);
    gram_unref(g);
    fx_close(&fx);
}

/* Once the output is complete and nothing may follow, the end token is forced: its
 * probability in the masked distribution is 1. */
TEST(engine_grammar_end_forces_eos)
{
    fixture fx;
    fx_open(&fx, 4u << 20, 8, 64, true);
    const char *c[] = {"Lily was happy.", "Tom ran."};
    size_t l[] = {15, 8};
    gram *g = NULL;
    kl_err err = {0};
    T_EQ(gram_compile_choice(&g, c, l, 2, NULL, &err), 0);
    int32_t p[8];
    int np = (int)tok_encode(fx.tk, "Once upon a time", 16, TOK_ADD_BOS, p, 8);
    result *r = calloc(1, sizeof *r);
    engine_sampling sp = greedy(100);
    sp.logprobs = 0;
    sp.ignore_eos = true;
    submit_req(&fx, p, np, &sp, 1, 0, g, r);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    T_EQ(r->finish[0], ENGINE_FINISH_STOP);
    r->text[0][r->text_len[0]] = 0;
    T_ASSERT(!strcmp(r->text[0], c[0]) || !strcmp(r->text[0], c[1]));
    int last = r->n[0] - 1;
    T_ASSERT(tok_is_eog(fx.tk, r->ids[0][last]));
    T_NEAR(r->lp[0][last], 0.f, 1e-6);
    /* max_tokens still cuts a constrained output */
    memset(r, 0, sizeof *r);
    sp.max_tokens = 2;
    submit_req(&fx, p, np, &sp, 1, 0, g, r);
    T_ASSERT(engine_wait_idle(fx.e, 60000));
    T_EQ(r->finish[0], ENGINE_FINISH_LENGTH);
    T_EQ(r->n[0], 2);
    free(r);
    gram_unref(g);
    fx_close(&fx);
}
