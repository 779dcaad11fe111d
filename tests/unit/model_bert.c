/* The encoders (bert, nomic-bert): `model make --arch` files embedded through the engine
 * match an independent numpy forward (tools/ref_forward.py: float64, written from the
 * published descriptions) with the pooling the file names (bert CLS, nomic-bert mean); the
 * first token sees the last (attention both ways); an input is computed in one step, so
 * inputs up to the step's budget give the same bits alone and batched, and longer ones are
 * refused; generation (engine, kiln run) and logits are refused. Against llama.cpp's
 * llama-embedding on the same files: figures in the commit and the README. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/open.h"
#include "model/make.h"
#include "t.h"
#include "t_model.h"

#define DIM 64

typedef struct got {
    float v[DIM];
    int n;
    engine_finish finish;
    bool done;
} got;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ctx, const engine_event *ev)
{
    got *g = ctx;
    pthread_mutex_lock(&mu);
    if (ev->last) {
        g->finish = ev->finish;
        g->n = ev->n_embedding;
        if (ev->embedding) memcpy(g->v, ev->embedding, sizeof(float) * (size_t)ev->n_embedding);
        g->done = true;
    }
    pthread_mutex_unlock(&mu);
}

/* A 2-layer random encoder of width 64 (4 heads), 128 positions, synthetic 512-token vocab. */
static const char *make(const char *arch, kl_dtype type)
{
    const char *path = t_path("enc.gguf");
    model_make_opts o;
    model_make_defaults(&o);
    o.arch = arch, o.dim = DIM, o.heads = 4, o.kv_heads = 4, o.ffn = 128, o.ctx = 128;
    o.std = 0.15f, o.type = type;
    kl_err err = {0};
    if (model_make(&o, path, &err)) t_fail(__FILE__, __LINE__, "%s: %s", arch, err.msg);
    return path;
}

static void open_engine(engine_stack *st, const char *path, int max_batch)
{
    kl_err err = {0};
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = path;
    c.engine.n_threads = 2;
    c.engine.kv_mem_bytes = 4u << 20;
    c.engine.kv_dtype = KL_F32;
    c.engine.max_batch_tokens = max_batch;
    if (engine_open(st, &c, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
}

static int submit(engine *e, const int32_t *p, int n, bool embed, got *g, kl_err *err)
{
    engine_request q = {
        .prompt = p, .n_prompt = n, .n = 1, .embed = embed, .on_event = on_event, .ctx = g};
    engine_sampling_defaults(&q.sp);
    uint64_t id;
    return engine_submit(e, &q, &id, err);
}

static void embed(engine *e, const int32_t *p, int n, got *g)
{
    kl_err err = {0};
    if (submit(e, p, n, true, g, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
}

static void prompt(int32_t *p, int n, int seed)
{
    for (int i = 0; i < n; i++)
        p[i] = 3 + (seed * 131 + i * 37) % 500;
}

/* The numpy reference's vector for p[0..n) of the file at path, into ref[DIM]. */
static void numpy_embedding(const char *path, const int32_t *p, int n, double *ref)
{
    char cmd[4096];
    int at = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/ref_forward.py %s", path);
    for (int i = 0; i < n; i++)
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " %d", p[i]);
    char *out = NULL, *err = NULL;
    if (t_run(cmd, &out, &err)) t_fail(__FILE__, __LINE__, "%s", err ? err : "ref_forward");
    const char *line = out;
    for (int d = 0; d < DIM; d++) {
        int idx;
        T_EQ(sscanf(line, "%d %lf", &idx, &ref[d]), 2);
        T_EQ(idx, d);
        line = strchr(line, '\n') + 1;
    }
    free(out), free(err);
}

TEST(model_bert_matches_numpy_reference)
{
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null")) t_skip("no numpy");
    const char *archs[] = {"bert", "nomic-bert"};
    for (int a = 0; a < 2; a++) {
        const char *path = make(archs[a], KL_F32);
        engine_stack st;
        open_engine(&st, path, 64);
        T_ASSERT(!engine_generates(st.eng));
        int32_t p[40];
        prompt(p, 40, a);
        got g = {0};
        embed(st.eng, p, 40, &g);
        T_ASSERT(engine_wait_idle(st.eng, 30000));
        T_EQ(g.finish, ENGINE_FINISH_STOP);
        T_EQ(g.n, DIM);
        double ref[DIM], dot = 0, nr = 0, ng = 0, worst = 0;
        numpy_embedding(path, p, 40, ref);
        for (int d = 0; d < DIM; d++) {
            double v = g.v[d];
            dot += ref[d] * v, nr += ref[d] * ref[d], ng += v * v;
            double diff = fabs(ref[d] - v);
            worst = diff > worst ? diff : worst;
        }
        double cosine = dot / sqrt(nr * ng);
        printf("# %s vs numpy: cosine %.12f, max |d| %.2e\n", archs[a], cosine, worst);
        T_ASSERT(cosine > 1 - 1e-7 && worst < 1e-4);
        engine_close(&st);
    }
}

/* CLS pooling (bert's file default) reads the first token's final state: it changes with the
 * last token only if attention runs both ways. */
TEST(model_bert_first_token_sees_the_last)
{
    const char *path = make("bert", KL_F32);
    engine_stack st;
    open_engine(&st, path, 64);
    int32_t p[12], q[12];
    prompt(p, 12, 5);
    memcpy(q, p, sizeof p);
    q[11] = 7;
    got a = {0}, b = {0}, c = {0};
    embed(st.eng, p, 12, &a);
    embed(st.eng, q, 12, &b);
    embed(st.eng, p, 11, &c); /* a prefix: different too */
    T_ASSERT(engine_wait_idle(st.eng, 30000));
    T_ASSERT(a.done && b.done && c.done);
    T_ASSERT(memcmp(a.v, b.v, sizeof a.v) != 0);
    T_ASSERT(memcmp(a.v, c.v, sizeof a.v) != 0);
    engine_close(&st);
}

/* A step of 16 tokens: inputs of 16 and of 10 come out the same bits alone and submitted
 * together (each computed whole in one step, never split across steps); 17 is refused. */
TEST(model_bert_inputs_computed_whole)
{
    const char *path = make("nomic-bert", KL_F32);
    engine_stack st;
    open_engine(&st, path, 16);
    T_EQ(engine_embed_max_tokens(st.eng), 16);
    int32_t p[4][17];
    int len[4] = {16, 10, 10, 16};
    got alone[4], together[4];
    memset(alone, 0, sizeof alone), memset(together, 0, sizeof together);
    for (int i = 0; i < 4; i++) {
        prompt(p[i], len[i], 20 + i);
        embed(st.eng, p[i], len[i], &alone[i]);
        T_ASSERT(engine_wait_idle(st.eng, 30000));
    }
    for (int i = 0; i < 4; i++)
        embed(st.eng, p[i], len[i], &together[i]);
    T_ASSERT(engine_wait_idle(st.eng, 30000));
    for (int i = 0; i < 4; i++) {
        T_EQ(together[i].finish, ENGINE_FINISH_STOP);
        T_MEMEQ(alone[i].v, together[i].v, sizeof(float) * DIM);
    }
    prompt(p[0], 17, 1);
    got g = {0};
    kl_err err = {0};
    T_EQ(submit(st.eng, p[0], 17, true, &g, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "at most 16 tokens");
    engine_close(&st);
}

/* An encoder has no output head: a completion is refused by the engine, logits by the
 * forward pass; a context longer than its position table is refused at load. */
TEST(model_bert_refuses_generation_and_long_context)
{
    const char *path = make("bert", KL_Q8_0);
    engine_stack st;
    open_engine(&st, path, 64);
    int32_t p[4] = {5, 6, 7, 8};
    got g = {0};
    kl_err err = {0};
    T_EQ(submit(st.eng, p, 4, false, &g, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "embedding model (bert)");
    T_STREQ(err.param, "model");
    model *m = st.model;
    const model_hparams *hp = model_hparams_of(m);
    T_ASSERT(hp->non_causal && hp->encoder_only);
    kv_store *kv;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F32, 1u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int32_t blocks[1] = {0};
    float logits[512];
    model_seq sq = {blocks, 1};
    t_batch tb;
    model_batch *b = t_batch_seq(&tb, &sq, p, 4, 0);
    tb.want[0] = tb.want[1] = tb.want[2] = false; /* the last row's logits only */
    T_EQ(model_forward(m, NULL, kv, b, logits, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "embeddings only");
    kv_store_destroy(kv);
    engine_close(&st);

    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = path;
    c.model.max_ctx = 256; /* the file has 128 positions */
    T_ASSERT(engine_open(&st, &c, &err) < 0);
    T_CONTAINS(err.msg, "128 positions");
}

/* `kiln run` on an encoder: a clear error and exit 1, nothing generated. */
TEST(model_bert_kiln_run_refuses)
{
    const char *path = make("nomic-bert", KL_F32);
    char cmd[2048], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hello -n 4", t_kiln(), path);
    T_EQ(t_run(cmd, &out, &err), 1);
    T_CONTAINS(err, "an embedding model (nomic-bert) cannot generate text");
    T_STREQ(out, "");
    free(out), free(err);
}
