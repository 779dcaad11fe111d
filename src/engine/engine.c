/* engine/engine.c: the engine's API and its thread. Other threads only touch the inbox, the
 * abort list and the stats snapshot, under mu; everything else belongs to the engine thread,
 * which loops: take new requests and aborts, plan and run one step, publish stats. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "engine/internal.h"
#include "model/lora.h"

void engine_config_defaults(engine_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->n_threads = n > 0 ? (int)n : 1;
    cfg->block_tokens = 16;
    cfg->kv_dtype = KL_F16;
    cfg->max_seqs = 64;
    cfg->max_batch_tokens = 512;
    cfg->max_queue = 1024;
    cfg->prefix_cache = true;
}

void engine_sampling_defaults(engine_sampling *sp)
{
    static _Atomic uint64_t counter;
    memset(sp, 0, sizeof *sp);
    sp->temperature = 1.f;
    sp->top_p = 1.f;
    sp->repetition_penalty = 1.f;
    sp->max_tokens = 16;
    sp->logprobs = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* an unseeded request still gets its own generator: time and a counter */
    sp->seed = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ ++counter;
}

/* Bytes of MemAvailable, or 0 if unknown. */
static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

static void *engine_main(void *arg);

int engine_n_ctx(const engine *e)
{
    return e->n_ctx;
}

/* The speculation setting with zero fields given their defaults. */
static engine_spec spec_defaults(const engine_spec *in, const model_hparams *hp)
{
    engine_spec sp = *in;
    if (!sp.k) sp.k = 8;
    if (!sp.ngram_max) sp.ngram_max = 4;
    if (!sp.ngram_min) sp.ngram_min = sp.ngram_max < 2 ? sp.ngram_max : 2;
    if (!sp.skip_layers) sp.skip_layers = (hp->n_layers + 1) / 2;
    return sp;
}

int engine_create(engine **out, const engine_config *cfg_in, kl_err *err)
{
    *out = NULL;
    engine_config cfg = *cfg_in;
    if (!cfg.model) return kl_errf(err, KL_EINVAL, "engine: no model");
    const model_hparams *hp = model_hparams_of(cfg.model);
    const model_opts *mo = model_opts_of(cfg.model);
    if (cfg.n_threads < 1) cfg.n_threads = 1;
    if (cfg.block_tokens < 1 || cfg.block_tokens > 1024)
        return kl_errf(err, KL_EINVAL, "engine: block size must be 1..1024");
    if (cfg.max_seqs < 1) cfg.max_seqs = 1;
    if (cfg.max_seqs > mo->max_logits) cfg.max_seqs = mo->max_logits;
    if (cfg.max_batch_tokens < 1 || cfg.max_batch_tokens > mo->max_batch_tokens)
        cfg.max_batch_tokens = mo->max_batch_tokens;
    if (cfg.max_batch_tokens < cfg.max_seqs) cfg.max_seqs = cfg.max_batch_tokens;
    if (cfg.n_ctx < 1 || cfg.n_ctx > mo->max_ctx) cfg.n_ctx = mo->max_ctx;
    if (cfg.max_queue < 1) cfg.max_queue = 1;
    if (cfg.pooling < ENGINE_POOL_MODEL || cfg.pooling > ENGINE_POOL_LAST)
        return kl_errf(err, KL_EINVAL, "engine: pooling must be mean, cls or last");
    engine *e = calloc(1, sizeof *e);
    if (!e) return kl_errf(err, KL_ENOMEM, "out of memory");
    e->cfg = cfg;
    e->m = cfg.model;
    e->tk = cfg.tok;
    e->n_ctx = cfg.n_ctx;
    e->max_batch = cfg.max_batch_tokens;
    e->max_seqs = cfg.max_seqs;
    e->bs = cfg.block_tokens;
    e->spec.cfg = spec_defaults(&cfg.spec, hp);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->idle_cv, NULL);
    e->idle = true;
    int kv_dim = hp->n_kv_heads * hp->head_dim;
    size_t per_token = 2 * (size_t)hp->n_layers * kl_dtype_row_bytes(cfg.kv_dtype, kv_dim);
    size_t budget = cfg.kv_mem_bytes, avail = mem_available();
    if (!budget) { /* every sequence at full context, within 1 GiB and a quarter of free RAM */
        budget = per_token * (size_t)cfg.n_ctx * (size_t)cfg.max_seqs;
        if (avail && budget > avail / 4) budget = avail / 4;
        if (budget > ((size_t)1 << 30)) budget = (size_t)1 << 30;
    }
    int rc;
    kv_store_config kc = {hp->n_layers, kv_dim, cfg.block_tokens, cfg.kv_dtype, budget};
    if ((rc = kv_store_create(&e->store, &kc, err))) goto fail;
    if ((rc = kv_blocks_create(&e->blocks, kv_store_n_blocks(e->store), cfg.block_tokens, err)))
        goto fail;
    e->workers = kl_workers_create(cfg.n_threads);
    e->sampler = sample_scratch_create(hp->n_vocab);
    e->max_rows = mo->max_logits; /* >= max_seqs: the rows past them carry drafts */
    size_t nv = (size_t)hp->n_vocab, mb = (size_t)e->max_batch, ms = (size_t)e->max_seqs;
    e->logits = malloc(sizeof(float) * nv * (size_t)e->max_rows);
    e->fork_row = malloc(sizeof(float) * nv);
    e->b_token = malloc(sizeof(int32_t) * mb);
    e->b_pos = malloc(sizeof(int32_t) * mb);
    e->b_seq = malloc(sizeof(int32_t) * mb);
    e->b_want = malloc(sizeof(bool) * mb);
    e->b_want_embd = malloc(sizeof(bool) * mb);
    e->b_embd = malloc(sizeof(float) * mb * (size_t)hp->dim); /* touched only by embeddings */
    e->pooling = cfg.pooling ? cfg.pooling : hp->pooling ? hp->pooling : ENGINE_POOL_MEAN;
    e->b_seqs = malloc(sizeof(model_seq) * ms);
    e->b_owner = malloc(sizeof(eng_seq *) * ms);
    e->b_lora = malloc(sizeof(*e->b_lora) * ms);
    e->running = malloc(sizeof(eng_seq *) * ms);
    if (!e->workers || !e->sampler || !e->logits || !e->fork_row || !e->b_token || !e->b_pos ||
        !e->b_seq || !e->b_want || !e->b_want_embd || !e->b_embd || !e->b_seqs || !e->b_owner ||
        !e->b_lora || !e->running) {
        rc = kl_errf(err, KL_ENOMEM, "engine: out of memory");
        goto fail;
    }
    /* a sequence longer than the whole pool could never finish: the context is what fits */
    int64_t kv_tokens = (int64_t)kv_store_n_blocks(e->store) * e->bs;
    if (kv_tokens < e->n_ctx) e->n_ctx = (int)kv_tokens;
    if ((rc = spec_create(e, err))) goto fail;
    e->live.kv_blocks_total = e->stats.kv_blocks_total = kv_store_n_blocks(e->store);
    e->live.block_tokens = e->stats.block_tokens = cfg.block_tokens;
    e->live.kv_pool_bytes = e->stats.kv_pool_bytes =
        (uint64_t)kv_store_n_blocks(e->store) * kv_store_block_bytes(e->store);
    e->live.kv_mem_avail = e->stats.kv_mem_avail = avail;
    e->live.kv_pool_default = e->stats.kv_pool_default = !cfg.kv_mem_bytes;
    e->live.n_workers = e->stats.n_workers = kl_workers_count(e->workers);
    int ne; /* a Mixture of Experts: its experts' series exist before the first step */
    model_expert_load(e->m, &ne);
    e->live.n_expert = e->stats.n_expert = ne < ENGINE_MAX_EXPERTS ? ne : ENGINE_MAX_EXPERTS;
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        rc = kl_errf(err, KL_ENOMEM, "engine: cannot start its thread");
        goto fail;
    }
    *out = e;
    return 0;
fail:
    e->thread = 0;
    e->stopping = true;
    engine_destroy(e);
    return rc;
}

/* Finishes every sequence of the requests whose ids were aborted. */
static void apply_aborts(engine *e, const uint64_t *ids, int n)
{
    for (int k = 0; k < n; k++) {
        for (;;) {
            eng_seq *hit = NULL;
            for (int i = 0; i < e->n_running && !hit; i++)
                if (e->running[i]->req->id == ids[k]) hit = e->running[i];
            for (eng_seq *s = e->waiting; s && !hit; s = s->next_wait)
                if (s->req->id == ids[k]) hit = s;
            if (!hit) break;
            hit->req->aborted = true;
            step_finish(e, hit, ENGINE_FINISH_ABORT);
        }
    }
}

static void publish_stats(engine *e)
{
    int waiting = 0;
    for (eng_seq *s = e->waiting; s; s = s->next_wait)
        waiting++;
    engine_stats st = e->live;
    st.running = e->n_running;
    st.kv_blocks_used = kv_blocks_used(e->blocks);
    pthread_mutex_lock(&e->mu);
    st.waiting = waiting + e->n_inbox; /* inbox: submitted since the step began */
    st.model_failed = e->failed != NULL;
    e->stats = st;
    pthread_mutex_unlock(&e->mu);
}

static void *engine_main(void *arg)
{
    engine *e = arg;
    eng_req **inbox = NULL;
    uint64_t *aborts = NULL;
    int cap_in = 0, cap_ab = 0;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && !e->n_inbox && !e->n_aborts && !e->n_running && !e->waiting) {
            e->idle = true;
            pthread_cond_broadcast(&e->idle_cv);
            pthread_cond_wait(&e->cv, &e->mu);
        }
        if (e->stopping) break;
        e->idle = false;
        /* take the inbox and aborts (swap buffers so submitters never wait on a step) */
        eng_req **in = e->inbox;
        int n_in = e->n_inbox, ci = e->cap_inbox;
        e->inbox = inbox, e->cap_inbox = cap_in, e->n_inbox = 0;
        inbox = in, cap_in = ci;
        uint64_t *ab = e->aborts;
        int n_ab = e->n_aborts, ca = e->cap_aborts;
        e->aborts = aborts, e->cap_aborts = cap_ab, e->n_aborts = 0;
        aborts = ab, cap_ab = ca;
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < n_in; i++) {
            eng_req *rq = inbox[i];
            e->live.prompt_tokens += (uint64_t)rq->r.n_prompt;
            sched_enqueue_waiting(e, rq->seqs[0]);
        }
        apply_aborts(e, aborts, n_ab);
        step_run(e);
        publish_stats(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    free(inbox);
    free(aborts);
    return NULL;
}

static int copy_request(eng_req *rq, const engine_request *r, kl_err *err)
{
    rq->r = *r;
    gram_ref(rq->r.grammar);
    rq->prompt = malloc(sizeof(int32_t) * (size_t)r->n_prompt);
    rq->seqs = calloc((size_t)r->n, sizeof(eng_seq *));
    if (!rq->prompt || !rq->seqs) return kl_errf(err, KL_ENOMEM, "out of memory");
    memcpy(rq->prompt, r->prompt, sizeof(int32_t) * (size_t)r->n_prompt);
    rq->r.prompt = rq->prompt;
    engine_sampling *sp = &rq->r.sp;
    if (sp->n_logit_bias) {
        rq->bias_ids = malloc(sizeof(int32_t) * (size_t)sp->n_logit_bias);
        rq->bias = malloc(sizeof(float) * (size_t)sp->n_logit_bias);
        if (!rq->bias_ids || !rq->bias) return kl_errf(err, KL_ENOMEM, "out of memory");
        memcpy(rq->bias_ids, sp->logit_bias_ids, sizeof(int32_t) * (size_t)sp->n_logit_bias);
        memcpy(rq->bias, sp->logit_bias, sizeof(float) * (size_t)sp->n_logit_bias);
        sp->logit_bias_ids = rq->bias_ids;
        sp->logit_bias = rq->bias;
    }
    /* stop strings and stop ids share one buffer */
    size_t bytes = sizeof(int32_t) * (size_t)sp->n_stop_ids;
    for (int i = 0; i < sp->n_stop; i++)
        bytes += strlen(sp->stop[i]) + 1;
    rq->stop_buf = malloc(bytes + 1);
    if (!rq->stop_buf) return kl_errf(err, KL_ENOMEM, "out of memory");
    char *p = rq->stop_buf;
    if (sp->n_stop_ids) {
        memcpy(p, sp->stop_ids, sizeof(int32_t) * (size_t)sp->n_stop_ids);
        sp->stop_ids = (const int32_t *)(void *)p;
        p += sizeof(int32_t) * (size_t)sp->n_stop_ids;
    }
    for (int i = 0; i < sp->n_stop; i++) {
        size_t l = strlen(sp->stop[i]) + 1;
        memcpy(p, sp->stop[i], l);
        sp->stop[i] = p;
        p += l;
    }
    return 0;
}

static int validate(const engine *e, const engine_request *r, kl_err *err)
{
    const engine_sampling *sp = &r->sp;
    int nv = model_hparams_of(e->m)->n_vocab;
    if (!r->on_event) return kl_errf(err, KL_EINVAL, "no event callback");
    if (r->n_prompt < 1) return kl_errp(err, KL_EINVAL, "prompt", "prompt: empty");
    if (!r->embed && !engine_generates(e))
        return kl_errp(err, KL_EINVAL, "model",
                       "model: this is an embedding model (%s): it cannot generate text; ask "
                       "/v1/embeddings for its vectors",
                       model_hparams_of(e->m)->arch);
    if (r->embed && r->n_prompt > engine_embed_max_tokens(e))
        return kl_errp(err, KL_EINVAL, "prompt",
                       "prompt: %d tokens; this model embeds at most %d tokens at once",
                       r->n_prompt, engine_embed_max_tokens(e));
    if (!r->embed && r->n_prompt >= e->n_ctx)
        return kl_errp(err, KL_EINVAL, "prompt",
                       "prompt: %d tokens do not fit the context of %d tokens (with room for one "
                       "generated token)",
                       r->n_prompt, e->n_ctx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= nv)
            return kl_errp(err, KL_EINVAL, "prompt", "prompt: token id %d out of range",
                           r->prompt[i]);
    if (r->lora && model_lora_model(r->lora) != e->m)
        return kl_errp(err, KL_EINVAL, "lora", "lora: the adapter was loaded for another model");
    if (r->n < 1 || r->n > e->max_seqs)
        return kl_errp(err, KL_EINVAL, "n", "n: must be 1..%d", e->max_seqs);
    if (r->embed && r->n != 1)
        return kl_errp(err, KL_EINVAL, "n", "n: an embedding has one choice");
    if (!isfinite(sp->temperature) || sp->temperature < 0)
        return kl_errp(err, KL_EINVAL, "temperature", "temperature: must be >= 0");
    if (!(sp->top_p > 0 && sp->top_p <= 1))
        return kl_errp(err, KL_EINVAL, "top_p", "top_p: must be in (0, 1]");
    if (!(sp->min_p >= 0 && sp->min_p <= 1))
        return kl_errp(err, KL_EINVAL, "min_p", "min_p: must be in [0, 1]");
    if (sp->top_k < 0) return kl_errp(err, KL_EINVAL, "top_k", "top_k: must be >= 0");
    if (!(sp->repetition_penalty > 0) || !isfinite(sp->repetition_penalty))
        return kl_errp(err, KL_EINVAL, "repetition_penalty", "repetition_penalty: must be > 0");
    if (!isfinite(sp->presence_penalty) || !isfinite(sp->frequency_penalty))
        return kl_errf(err, KL_EINVAL, "penalties must be finite");
    if (sp->max_tokens < 1)
        return kl_errp(err, KL_EINVAL, "max_tokens", "max_tokens: must be >= 1");
    if (sp->logprobs > ENGINE_MAX_LOGPROBS)
        return kl_errp(err, KL_EINVAL, "logprobs", "logprobs: at most %d", ENGINE_MAX_LOGPROBS);
    if (sp->n_stop < 0 || sp->n_stop > ENGINE_MAX_STOP)
        return kl_errp(err, KL_EINVAL, "stop", "stop: at most %d strings", ENGINE_MAX_STOP);
    for (int i = 0; i < sp->n_stop; i++)
        if (!sp->stop[i] || !sp->stop[i][0] || strlen(sp->stop[i]) > 128)
            return kl_errp(err, KL_EINVAL, "stop", "stop: strings must be 1..128 bytes");
    for (int i = 0; i < sp->n_logit_bias; i++)
        if (sp->logit_bias_ids[i] < 0 || sp->logit_bias_ids[i] >= nv ||
            !isfinite(sp->logit_bias[i]))
            return kl_errp(err, KL_EINVAL, "logit_bias", "logit_bias: token id %d out of range",
                           sp->logit_bias_ids[i]);
    if (r->spec_k < -1 || r->spec_k > ENGINE_SPEC_MAX_K)
        return kl_errf(err, KL_EINVAL, "speculation: at most %d draft tokens", ENGINE_SPEC_MAX_K);
    if (sp->n_stop_ids < 0 || sp->n_stop_ids > 1024)
        return kl_errp(err, KL_EINVAL, "stop_token_ids", "stop_token_ids: too many");
    return 0;
}

int engine_submit(engine *e, const engine_request *req, uint64_t *id, kl_err *err)
{
    engine_request r = *req;
    if (r.n == 0) r.n = 1;
    int rc = validate(e, &r, err);
    if (rc) return rc;
    /* generation never runs past the context */
    if (r.sp.max_tokens > e->n_ctx - r.n_prompt) r.sp.max_tokens = e->n_ctx - r.n_prompt;
    eng_req *rq = calloc(1, sizeof *rq);
    if (!rq) return kl_errf(err, KL_ENOMEM, "out of memory");
    if ((rc = copy_request(rq, &r, err))) goto fail;
    rq->seqs[0] = seq_new(rq, 0, rq->prompt, r.n_prompt, err);
    if (!rq->seqs[0]) {
        rc = KL_ENOMEM;
        goto fail;
    }
    rq->n_forked = 1;
    rq->n_live = 1;
    rq->t_submit = kl_now_s();
    rq->queued_s = -1;
    pthread_mutex_lock(&e->mu);
    int waiting = e->stats.waiting + e->n_inbox;
    if (e->failed) {
        rc = kl_errf(err, KL_EIO, "the model can serve no more: %s", e->failed);
        pthread_mutex_unlock(&e->mu);
        goto fail;
    }
    if (e->stopping || waiting >= e->cfg.max_queue) {
        pthread_mutex_unlock(&e->mu);
        rc = kl_errf(err, KL_ENOSPC, "the waiting queue is full (%d requests)", waiting);
        goto fail;
    }
    if (e->n_inbox == e->cap_inbox) {
        int cap = e->cap_inbox ? e->cap_inbox * 2 : 16;
        eng_req **p = realloc(e->inbox, sizeof *p * (size_t)cap);
        if (!p) {
            pthread_mutex_unlock(&e->mu);
            rc = kl_errf(err, KL_ENOMEM, "out of memory");
            goto fail;
        }
        e->inbox = p, e->cap_inbox = cap;
    }
    rq->id = ++e->next_id;
    rq->arrival = ++e->next_arrival;
    *id = rq->id; /* now: once unlocked, the engine thread may finish and free rq at any time */
    e->inbox[e->n_inbox++] = rq;
    e->idle = false;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
fail:
    if (rq->seqs && rq->seqs[0]) {
        free(rq->seqs[0]->tokens);
        free(rq->seqs[0]);
    }
    free(rq->seqs), free(rq->prompt), free(rq->bias_ids), free(rq->bias), free(rq->stop_buf);
    gram_unref(rq->r.grammar);
    free(rq);
    return rc;
}

void engine_abort(engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    if (e->n_aborts == e->cap_aborts) {
        int cap = e->cap_aborts ? e->cap_aborts * 2 : 16;
        uint64_t *p = realloc(e->aborts, sizeof *p * (size_t)cap);
        if (!p) {
            pthread_mutex_unlock(&e->mu);
            return;
        }
        e->aborts = p, e->cap_aborts = cap;
    }
    e->aborts[e->n_aborts++] = id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_stats_get(engine *e, engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->mu);
}

bool engine_wait_idle(engine *e, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&e->mu);
    while (!e->idle || e->n_inbox || e->n_aborts)
        if (pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts)) break;
    bool idle = e->idle && !e->n_inbox && !e->n_aborts;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

void engine_destroy(engine *e)
{
    if (!e) return;
    if (e->thread) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    /* everything still queued or running ends with an abort event */
    for (int i = 0; i < e->n_inbox; i++)
        sched_enqueue_waiting(e, e->inbox[i]->seqs[0]);
    e->n_inbox = 0;
    while (e->n_running)
        step_finish(e, e->running[0], ENGINE_FINISH_ABORT);
    while (e->waiting)
        step_finish(e, e->waiting, ENGINE_FINISH_ABORT);
    spec_destroy(e);
    kl_workers_destroy(e->workers);
    sample_scratch_destroy(e->sampler);
    gram_vocab_free(e->gvocab);
    free(e->gmask);
    kv_blocks_destroy(e->blocks);
    kv_store_destroy(e->store);
    free(e->logits), free(e->fork_row);
    free(e->b_token), free(e->b_pos), free(e->b_seq), free(e->b_want), free(e->b_seqs);
    free(e->b_want_embd), free(e->b_embd);
    free(e->b_owner), free(e->b_lora), free(e->running), free(e->inbox), free(e->aborts);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle_cv);
    free(e);
}

int engine_embedding_dim(const engine *e)
{
    return model_hparams_of(e->m)->dim;
}

int engine_embed_max_tokens(const engine *e)
{
    bool whole = model_hparams_of(e->m)->non_causal;
    return whole && e->max_batch < e->n_ctx ? e->max_batch : e->n_ctx;
}

bool engine_generates(const engine *e)
{
    return !model_hparams_of(e->m)->encoder_only;
}
