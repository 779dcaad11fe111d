/* Embedding requests through the engine on the real stories260K model: the pooled vector
 * against one computed straight from the forward pass (mean, cls, last), through chunked
 * prefill, identical bits alone and among generating requests, and a prefix-cache hit for last
 * pooling giving the same vector. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/open.h"
#include "t.h"
#include "t_model.h"

#define DIM_MAX 512

typedef struct got {
    float v[DIM_MAX];
    int n;
    engine_finish finish;
    bool done;
    int tokens;
} got;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ctx, const engine_event *ev)
{
    got *g = ctx;
    pthread_mutex_lock(&mu);
    if (ev->token >= 0) g->tokens++;
    if (ev->last) {
        g->finish = ev->finish;
        g->n = ev->n_embedding;
        if (ev->embedding) memcpy(g->v, ev->embedding, sizeof(float) * (size_t)ev->n_embedding);
        g->done = true;
    }
    pthread_mutex_unlock(&mu);
}

static void open_engine(engine_stack *st, int pooling, int max_batch, bool prefix)
{
    kl_err err;
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = t_shared("models/stories260K.gguf");
    c.model.max_ctx = 256;
    c.engine.n_threads = 2;
    c.engine.kv_mem_bytes = 4u << 20;
    c.engine.kv_dtype = KL_F32;
    c.engine.max_batch_tokens = max_batch;
    c.engine.prefix_cache = prefix;
    c.engine.pooling = pooling;
    T_EQ(engine_open(st, &c, &err), 0);
}

static void submit(engine *e, const int32_t *p, int n, bool embed, got *g)
{
    engine_request q = {
        .prompt = p, .n_prompt = n, .n = 1, .embed = embed, .on_event = on_event, .ctx = g};
    engine_sampling_defaults(&q.sp);
    q.sp.temperature = 0;
    q.sp.max_tokens = 20;
    uint64_t id;
    kl_err err;
    T_EQ(engine_submit(e, &q, &id, &err), 0);
}

static void wait_done(engine *e)
{
    T_ASSERT(engine_wait_idle(e, 30000));
}

/* The embedding straight from the forward pass: every token's final-normed row, pooled,
 * in double, unit length. */
static void reference(model *m, const int32_t *p, int n, int pooling, double *out)
{
    const model_hparams *hp = model_hparams_of(m);
    kv_store *kv;
    kl_err err;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F32, 2u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int nb = kv_store_n_blocks(kv);
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        blocks[i] = i;
    bool all[T_BATCH_MAX];
    for (int i = 0; i < T_BATCH_MAX; i++)
        all[i] = true;
    float *rows = malloc(sizeof(float) * (size_t)n * (size_t)hp->dim);
    model_seq sq = {blocks, nb};
    int chunk = model_opts_of(m)->max_batch_tokens;
    t_batch tb;
    for (int at = 0; at < n; at += chunk) {
        int k = n - at < chunk ? n - at : chunk;
        model_batch *b = t_batch_seq(&tb, &sq, p + at, k, at);
        memset(tb.want, 0, sizeof tb.want); /* no logits: the embeddings */
        b->want_embd = all;
        b->embd = rows + (size_t)at * hp->dim;
        T_EQ(model_forward(m, NULL, kv, b, NULL, &err), 0);
    }
    double ss = 0;
    for (int d = 0; d < hp->dim; d++) {
        double x = 0;
        if (pooling == ENGINE_POOL_MEAN) {
            for (int i = 0; i < n; i++)
                x += (double)rows[(size_t)i * hp->dim + d];
            x /= n;
        } else {
            x = rows[(size_t)(pooling == ENGINE_POOL_CLS ? 0 : n - 1) * hp->dim + d];
        }
        out[d] = x, ss += x * x;
    }
    for (int d = 0; d < hp->dim; d++)
        out[d] /= sqrt(ss);
    free(rows), free(blocks);
    kv_store_destroy(kv);
}

static void prompt(int32_t *p, int n, int seed)
{
    p[0] = 1; /* BOS */
    for (int i = 1; i < n; i++)
        p[i] = 2 + (seed * 131 + i * 37) % 500;
}

TEST(engine_embedding_matches_forward_pass_each_pooling)
{
    int pools[] = {ENGINE_POOL_MEAN, ENGINE_POOL_CLS, ENGINE_POOL_LAST};
    for (int k = 0; k < 3; k++) {
        engine_stack st;
        open_engine(&st, pools[k], 8, true); /* 8-token chunks: a 40-token prompt in 5 steps */
        int32_t p[40];
        prompt(p, 40, k);
        got g = {0};
        submit(st.eng, p, 40, true, &g);
        wait_done(st.eng);
        T_ASSERT(g.done);
        T_EQ(g.finish, ENGINE_FINISH_STOP);
        T_EQ(g.tokens, 0); /* nothing generated */
        int dim = model_hparams_of(st.model)->dim;
        T_EQ(g.n, dim);
        double ref[DIM_MAX], norm = 0;
        reference(st.model, p, 40, pools[k], ref);
        for (int d = 0; d < dim; d++) {
            T_NEAR((double)g.v[d], ref[d], 2e-5);
            norm += (double)g.v[d] * (double)g.v[d];
        }
        T_NEAR(norm, 1.0, 1e-5);
        engine_close(&st);
    }
}

TEST(engine_embedding_same_bits_alone_and_among_generations)
{
    engine_stack st;
    open_engine(&st, ENGINE_POOL_MEAN, 64, true);
    int32_t p[30], q[4][20];
    prompt(p, 30, 7);
    got alone = {0}, together = {0}, gen[4];
    memset(gen, 0, sizeof gen);
    submit(st.eng, p, 30, true, &alone);
    wait_done(st.eng);
    for (int i = 0; i < 4; i++) {
        prompt(q[i], 20, 11 + i);
        submit(st.eng, q[i], 20, false, &gen[i]);
    }
    submit(st.eng, p, 30, true, &together);
    wait_done(st.eng);
    T_ASSERT(alone.done && together.done);
    T_EQ(memcmp(alone.v, together.v, sizeof(float) * (size_t)alone.n), 0);
    for (int i = 0; i < 4; i++)
        T_ASSERT(gen[i].done && gen[i].tokens > 0 && gen[i].n == 0); /* no vector on completions */
    engine_close(&st);
}

TEST(engine_embedding_last_pooling_uses_prefix_cache)
{
    engine_stack st;
    open_engine(&st, ENGINE_POOL_LAST, 64, true);
    int32_t p[50];
    prompt(p, 50, 3);
    got a = {0}, b = {0};
    submit(st.eng, p, 50, true, &a);
    wait_done(st.eng);
    engine_stats s0, s1;
    engine_stats_get(st.eng, &s0);
    submit(st.eng, p, 50, true, &b);
    wait_done(st.eng);
    engine_stats_get(st.eng, &s1);
    T_ASSERT(s1.prefix_hits - s0.prefix_hits >= 48); /* 3 of the 4 blocks cached */
    T_EQ(memcmp(a.v, b.v, sizeof(float) * (size_t)a.n), 0);
    engine_close(&st);
}

TEST(engine_embedding_refuses_n_choices)
{
    engine_stack st;
    open_engine(&st, ENGINE_POOL_MEAN, 64, true);
    int32_t p[5] = {1, 2, 3, 4, 5};
    got g = {0};
    engine_request q = {
        .prompt = p, .n_prompt = 5, .n = 2, .embed = true, .on_event = on_event, .ctx = &g};
    engine_sampling_defaults(&q.sp);
    uint64_t id;
    kl_err err;
    T_EQ(engine_submit(st.eng, &q, &id, &err), KL_EINVAL);
    T_ASSERT(strstr(err.msg, "n:") != NULL);
    engine_close(&st);
}
