/* LoRA adapters through the engine on the real stories260K model: a request gives the same
 * tokens alone, batched with 15 requests on 7 other adapters and the base, and through
 * preemption; the adapter changes what it generates; prefix-cache blocks are shared within an
 * adapter and never across adapters or with the base. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/open.h"
#include "model/lora.h"
#include "model/make.h"
#include "t.h"

#define MAXTOK 128
#define N_LORA 8

typedef struct result {
    int32_t ids[MAXTOK];
    int n, last, cached;
} result;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ctx, const engine_event *ev)
{
    result *r = ctx;
    pthread_mutex_lock(&mu);
    if (ev->token >= 0 && r->n < MAXTOK) r->ids[r->n++] = ev->token;
    if (ev->last) r->last++, r->cached = ev->cached_tokens;
    pthread_mutex_unlock(&mu);
}

typedef struct fixture {
    engine_stack st;
    model_lora *lora[N_LORA];
} fixture;

static void fx_open(fixture *fx, size_t kv_bytes)
{
    kl_err err = {0};
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = t_shared("models/stories260K.gguf");
    c.model.max_ctx = 512;
    c.engine.n_threads = 2;
    c.engine.kv_mem_bytes = kv_bytes;
    c.engine.kv_dtype = KL_F32;
    c.engine.max_seqs = 16;
    c.engine.max_batch_tokens = 48;
    T_EQ(engine_open(&fx->st, &c, &err), 0);
    for (int a = 0; a < N_LORA; a++) {
        char path[512];
        snprintf(path, sizeof path, "%s/lora%d.gguf", t_tmpdir(), a);
        model_make_lora_opts o;
        model_make_lora_defaults(&o);
        o.base_path = c.model_path;
        o.rank = 4 + 4 * (a % 3);
        o.alpha = 2.f * (float)o.rank;
        o.targets = a % 2 ? "q,k,v,o,gate,up,down" : "v,o,down,output";
        o.type = a % 4 == 3 ? KL_F16 : KL_F32;
        o.seed = 100 + (uint64_t)a;
        o.std = 0.1f;
        T_EQ(model_make_lora(&o, path, &err), 0);
        gguf_file *f;
        T_EQ(gguf_open(&f, path, &err), 0);
        T_EQ(model_lora_load(&fx->lora[a], fx->st.model, f, 1.f, &err), 0);
        gguf_close(f);
    }
}

static void fx_close(fixture *fx)
{
    engine_close(&fx->st);
    for (int a = 0; a < N_LORA; a++)
        model_lora_free(fx->lora[a]);
}

static void submit(fixture *fx, const int32_t *p, int n, const engine_sampling *sp,
                   const model_lora *lora, result *r)
{
    engine_request q = {.prompt = p,
                        .n_prompt = n,
                        .n = 1,
                        .sp = *sp,
                        .lora = lora,
                        .on_event = on_event,
                        .ctx = r};
    uint64_t id;
    kl_err err = {0};
    T_EQ(engine_submit(fx->st.eng, &q, &id, &err), 0);
}

/* Request k: its own prompt (some share a prefix) and sampling, on adapter k % 8 (or the base
 * when base is set). */
static void request(int k, int32_t *p, int *n, engine_sampling *sp)
{
    *n = 5 + (k * 29) % 50;
    p[0] = 1;
    for (int i = 1; i < *n; i++)
        p[i] = 3 + (k * 131 + i * 17) % 500;
    if (k % 4 == 0)
        for (int i = 1; i < 33 && i < *n; i++)
            p[i] = 300 + i;
    engine_sampling_defaults(sp);
    sp->temperature = k % 3 == 0 ? 0.f : 0.8f;
    sp->seed = 77 + (uint64_t)k;
    sp->max_tokens = 24 + (k * 5) % 30;
    sp->ignore_eos = true;
}

static void run(size_t kv_bytes, bool together, bool base, result *res, engine_stats *st)
{
    fixture fx;
    fx_open(&fx, kv_bytes);
    for (int k = 0; k < 16; k++) {
        int32_t p[64];
        int n;
        engine_sampling sp;
        request(k, p, &n, &sp);
        submit(&fx, p, n, &sp, base ? NULL : fx.lora[k % N_LORA], &res[k]);
        if (!together) T_ASSERT(engine_wait_idle(fx.st.eng, 60000));
    }
    T_ASSERT(engine_wait_idle(fx.st.eng, 60000));
    engine_stats_get(fx.st.eng, st);
    fx_close(&fx);
}

TEST(engine_lora_batch_invariance_across_adapters)
{
    result *alone = calloc(16, sizeof *alone), *together = calloc(16, sizeof *together),
           *tight = calloc(16, sizeof *tight), *base = calloc(16, sizeof *base);
    engine_stats s1, s2, s3, s4;
    run(4u << 20, false, false, alone, &s1);
    run(4u << 20, true, false, together, &s2);
    run(30 * 16 * 2 * 5 * 32 * 4, true, false, tight, &s3); /* a few blocks: preemption */
    run(4u << 20, false, true, base, &s4);
    T_ASSERT(s3.preemptions > 0);
    int differ = 0;
    for (int k = 0; k < 16; k++) {
        T_EQ(alone[k].last, 1);
        T_EQ(together[k].n, alone[k].n);
        T_EQ(tight[k].n, alone[k].n);
        T_MEMEQ(together[k].ids, alone[k].ids, sizeof(int32_t) * (size_t)alone[k].n);
        T_MEMEQ(tight[k].ids, alone[k].ids, sizeof(int32_t) * (size_t)alone[k].n);
        differ += memcmp(base[k].ids, alone[k].ids, sizeof(int32_t) * (size_t)alone[k].n) != 0;
    }
    T_ASSERT(differ >= 12); /* the adapters do change what is generated */
    T_EQ(s2.kv_blocks_used, 0);
    T_EQ(s3.kv_blocks_used, 0);
    free(alone), free(together), free(tight), free(base);
}

TEST(engine_lora_prefix_cache_per_adapter)
{
    fixture fx;
    fx_open(&fx, 4u << 20);
    int32_t p[200];
    p[0] = 1;
    for (int i = 1; i < 200; i++)
        p[i] = 3 + (i * 7) % 500;
    engine_sampling sp;
    engine_sampling_defaults(&sp);
    sp.temperature = 0;
    sp.max_tokens = 4;
    /* A, B, A again, the base, the base again: 12 full blocks are shared only within one */
    const model_lora *order[5] = {fx.lora[0], fx.lora[1], fx.lora[0], NULL, NULL};
    const int want[5] = {0, 0, 192, 0, 192};
    result r[5];
    memset(r, 0, sizeof r);
    for (int k = 0; k < 5; k++) {
        submit(&fx, p, 200, &sp, order[k], &r[k]);
        T_ASSERT(engine_wait_idle(fx.st.eng, 60000));
        T_EQ(r[k].cached, want[k]);
    }
    T_MEMEQ(r[2].ids, r[0].ids, sizeof r[0].ids); /* cached blocks give the same tokens */
    /* an adapter loaded for another model (the same file opened twice) is refused at submit */
    engine_stack other;
    kl_err err = {0};
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = t_shared("models/stories260K.gguf");
    c.with_engine = false;
    T_EQ(engine_open(&other, &c, &err), 0);
    result extra = {0};
    engine_request q = {
        .prompt = p, .n_prompt = 10, .n = 1, .sp = sp, .on_event = on_event, .ctx = &extra};
    uint64_t id;
    gguf_file *f;
    char path[512];
    snprintf(path, sizeof path, "%s/lora0.gguf", t_tmpdir());
    T_EQ(gguf_open(&f, path, &err), 0);
    model_lora *foreign;
    T_EQ(model_lora_load(&foreign, other.model, f, 1.f, &err), 0);
    gguf_close(f);
    q.lora = foreign;
    T_EQ(engine_submit(fx.st.eng, &q, &id, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "lora: the adapter was loaded for another model");
    model_lora_free(foreign);
    engine_close(&other);
    fx_close(&fx);
}
