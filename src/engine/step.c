/* engine/step.c: runs one planned step: gathers the scheduled tokens into one flat batch,
 * runs the forward pass, then for every sequence whose last token was computed samples the
 * next one, turns it into text (UTF-8 complete, stop strings held back) and emits the event.
 * Also finishes sequences (emitting their last event) and forks the n > 1 choices of a
 * request once its prompt is computed, sharing the prompt's blocks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "engine/internal.h"

#define TEXT_MAX 512 /* bytes of one token's piece we handle (+ an incomplete character) */
_Static_assert(TEXT_MAX >= STOP_MAX_LEN, "flush buffers hold a stop prefix");

static void free_request(engine *e, eng_req *rq)
{
    for (int i = 0; i < rq->n_forked; i++)
        seq_free(e, rq->seqs[i]);
    free(rq->seqs);
    free(rq->prompt);
    free(rq->bias_ids);
    free(rq->bias);
    free(rq->stop_buf);
    gram_unref(rq->r.grammar);
    free(rq);
}

/* Emits s's event for token (or -1) with text; on a finish, releases s and, when it was the
 * request's last live choice, marks the event last with the usage and frees the request. */
static void emit(engine *e, eng_seq *s, int32_t token, const char *text, size_t len, float lp,
                 const engine_logprob *top, int n_top, engine_finish fin)
{
    eng_req *rq = s->req;
    engine_event ev = {.id = rq->id,
                       .index = s->index,
                       .token = token,
                       .text = text ? text : "",
                       .text_len = len,
                       .logprob = lp,
                       .n_top = n_top,
                       .top = top,
                       .finish = fin,
                       .error = fin == ENGINE_FINISH_ERROR ? s->error : NULL,
                       .queued_s = rq->queued_s};
    bool done_req = false;
    if (fin != ENGINE_RUNNING) {
        s->finish = fin;
        s->state = SEQ_DONE;
        sched_remove(e, s);
        seq_release_blocks(e, s);
        rq->n_live--;
        /* choices are forked before choice 0 samples, so n_live reaches 0 only at the end;
         * choices never forked (the prompt never finished) end with the request */
        done_req = rq->n_live == 0;
        if (done_req && rq->n_forked < rq->r.n) {
            /* not-forked choices: report them finished too, without tokens */
            for (int i = rq->n_forked; i < rq->r.n; i++) {
                engine_event f = {.id = rq->id,
                                  .index = i,
                                  .token = -1,
                                  .text = "",
                                  .finish = fin,
                                  .error = ev.error,
                                  .queued_s = rq->queued_s};
                rq->r.on_event(rq->r.ctx, &f);
            }
        }
    }
    if (done_req) {
        ev.last = true;
        if (rq->r.embed && fin == ENGINE_FINISH_STOP) {
            ev.embedding = s->embd;
            ev.n_embedding = model_hparams_of(e->m)->dim;
        }
        ev.prompt_tokens = rq->r.n_prompt;
        ev.cached_tokens = rq->cached_tokens;
        for (int i = 0; i < rq->n_forked; i++) {
            ev.completion_tokens += rq->seqs[i]->n_generated;
            ev.spec_draft_tokens += rq->seqs[i]->spec.drafted;
            ev.spec_accepted_tokens += rq->seqs[i]->spec.accepted;
        }
    }
    rq->r.on_event(rq->r.ctx, &ev);
    if (done_req) free_request(e, rq);
}

void step_finish(engine *e, eng_seq *s, engine_finish f)
{
    char buf[TEXT_MAX];
    size_t n = 0;
    if (f != ENGINE_FINISH_ABORT && f != ENGINE_FINISH_ERROR) {
        n = stop_flush(&s->stop, buf, sizeof buf);
        if (s->n_utf8 && n + (size_t)s->n_utf8 <= sizeof buf) {
            memcpy(buf + n, s->utf8, (size_t)s->n_utf8);
            n += (size_t)s->n_utf8;
        }
    }
    s->n_utf8 = 0;
    emit(e, s, -1, buf, n, 0.f, NULL, 0, f);
}

static bool is_stop_id(const engine_sampling *sp, int32_t t)
{
    for (int i = 0; i < sp->n_stop_ids; i++)
        if (sp->stop_ids[i] == t) return true;
    return false;
}

bool step_accept(engine *e, eng_seq *s, int32_t t, float lp, const engine_logprob *top, int n_top)
{
    const engine_sampling *sp = &s->req->r.sp;
    seq_push_token(s, t);
    s->n_generated++;
    e->live.generation_tokens++;
    engine_finish fin = ENGINE_RUNNING;
    char out[2 * TEXT_MAX]; /* feed: piece + held-back stop prefix; then a flush */
    size_t n_out = 0;
    /* a grammar allows an end token only when its output is complete: it always ends */
    bool eog = ((!sp->ignore_eos || s->req->r.grammar) && e->tk && tok_is_eog(e->tk, t)) ||
               is_stop_id(sp, t);
    if (eog) {
        fin = ENGINE_FINISH_STOP;
    } else if (e->tk) {
        char piece[TEXT_MAX];
        memcpy(piece, s->utf8, (size_t)s->n_utf8);
        size_t n = (size_t)s->n_utf8;
        n += tok_piece(e->tk, t, 0, piece + n, sizeof piece - n);
        if (n > sizeof piece) n = sizeof piece;
        size_t ok = tok_utf8_complete(piece, n);
        s->n_utf8 = (int)(n - ok);
        if (s->n_utf8 > (int)sizeof s->utf8) s->n_utf8 = 0; /* cannot happen: UTF-8 is <= 4 */
        memcpy(s->utf8, piece + ok, (size_t)s->n_utf8);
        bool matched = false;
        n_out = stop_feed(&s->stop, piece, ok, out, sizeof out, &matched);
        if (matched) fin = ENGINE_FINISH_STOP;
    }
    if (fin == ENGINE_RUNNING && (s->n_generated >= sp->max_tokens || s->n_tokens >= e->n_ctx))
        fin = ENGINE_FINISH_LENGTH;
    if (fin == ENGINE_FINISH_LENGTH || (fin == ENGINE_FINISH_STOP && eog)) {
        n_out += stop_flush(&s->stop, out + n_out, sizeof out - n_out);
        if (s->n_utf8 && n_out + (size_t)s->n_utf8 <= sizeof out) {
            memcpy(out + n_out, s->utf8, (size_t)s->n_utf8);
            n_out += (size_t)s->n_utf8;
        }
        s->n_utf8 = 0;
    }
    emit(e, s, t, out, n_out, lp, top, n_top, fin);
    return fin == ENGINE_RUNNING;
}

/* Whether every logit is a number: a NaN would sample garbage (or nothing), an Inf the same
 * token for ever. An exponent of all ones is NaN or Inf; the integer OR vectorizes, so a row
 * of 128k logits costs microseconds next to the forward pass. */
static bool all_finite(const float *row, int n)
{
    uint32_t bad = 0;
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &row[i], sizeof b);
        bad |= (uint32_t)((b & 0x7F800000u) == 0x7F800000u);
    }
    return !bad;
}

int32_t step_sample(engine *e, eng_seq *s, float *row, float *lp, engine_logprob *top, int *n_top)
{
    const engine_request *r = &s->req->r;
    int n_vocab = model_hparams_of(e->m)->n_vocab;
    if (!all_finite(row, n_vocab)) { /* NaN/Inf weights, or an overflow: this request fails */
        s->error = "the model produced non-finite logits (NaN or Inf)";
        step_finish(e, s, ENGINE_FINISH_ERROR);
        return -1;
    }
    int64_t t0 = r->grammar ? kl_now_ns() : 0;
    if (r->grammar) {
        int c = constrain_mask(e, s, row, n_vocab);
        e->live.grammar_ns += (uint64_t)(kl_now_ns() - t0);
        if (c != CONSTRAIN_OK) {
            if (c == CONSTRAIN_FAIL)
                kl_warn("engine: request %llu: the grammar allows no token",
                        (unsigned long long)s->req->id);
            step_finish(e, s, c == CONSTRAIN_END ? ENGINE_FINISH_STOP : ENGINE_FINISH_ERROR);
            return -1;
        }
    }
    int32_t t =
        sample_token(e->sampler, row, n_vocab, &r->sp, r->prompt, r->n_prompt,
                     s->tokens + r->n_prompt, s->n_tokens - r->n_prompt, &s->rng, lp, top, n_top);
    if (r->grammar) {
        t0 = kl_now_ns();
        bool ok = constrain_accept(e, s, t);
        e->live.grammar_ns += (uint64_t)(kl_now_ns() - t0);
        e->live.grammar_tokens++;
        if (!ok) { /* only non-finite logits get here */
            kl_warn("engine: request %llu: sampled token %d outside the grammar",
                    (unsigned long long)s->req->id, (int)t);
            step_finish(e, s, ENGINE_FINISH_ERROR);
            return -1;
        }
    }
    return t;
}

/* Samples s's next token from row (checked, masked by the request's grammar) and accepts it.
 * row is modified. */
static void sample_and_accept(engine *e, eng_seq *s, float *row)
{
    engine_logprob top[ENGINE_MAX_LOGPROBS];
    int n_top = 0;
    float lp = 0.f;
    int32_t t = step_sample(e, s, row, &lp, top, &n_top);
    if (t >= 0) step_accept(e, s, t, lp, top, n_top);
}

/* The prompt of s (choice 0) is computed and row holds its logits: create the other choices,
 * sharing its blocks (the partial last one copied), each sampling its first token from a copy
 * of the same row; then choice 0 samples. Choices that do not fit wait and recompute. */
static void fork_and_sample(engine *e, eng_seq *s, float *row)
{
    eng_req *rq = s->req;
    size_t nv = (size_t)model_hparams_of(e->m)->n_vocab;
    int first = rq->n_forked;
    while (rq->n_forked < rq->r.n) {
        int i = rq->n_forked;
        kl_err err;
        eng_seq *f = e->n_running < e->max_seqs ? seq_fork(e, s, i, &err) : NULL;
        bool running = f != NULL;
        if (!f) f = seq_new(rq, i, rq->prompt, rq->r.n_prompt, &err);
        if (!f) break; /* out of memory: those choices are reported finished at the end */
        rq->seqs[i] = f;
        rq->n_forked++;
        rq->n_live++;
        if (running)
            sched_running_add(e, f);
        else
            sched_enqueue_waiting(e, f);
    }
    for (int i = first; i < rq->n_forked; i++) {
        eng_seq *f = rq->seqs[i];
        if (f->state != SEQ_RUNNING) continue;
        memcpy(e->fork_row, row, sizeof(float) * nv);
        sample_and_accept(e, f, e->fork_row);
    }
    sample_and_accept(e, s, row);
}

/* Whether the hidden row of s's token at position p is pooled into its embedding. */
static bool pooled(const engine *e, const eng_seq *s, int p)
{
    if (!s->req->r.embed) return false;
    return e->pooling == ENGINE_POOL_MEAN || (e->pooling == ENGINE_POOL_CLS && p == 0) ||
           (e->pooling == ENGINE_POOL_LAST && p == s->n_tokens - 1);
}

/* An embedding request's prompt is computed: its pooled rows' mean (or the one row), scaled to
 * unit length as OpenAI's embeddings are; then its one last event. */
static void embed_finish(engine *e, eng_seq *s)
{
    int dim = model_hparams_of(e->m)->dim;
    float k = e->pooling == ENGINE_POOL_MEAN ? 1.f / (float)s->n_tokens : 1.f;
    double ss = 0;
    for (int i = 0; i < dim; i++) {
        double x = (double)(s->embd[i] * k);
        ss += x * x;
    }
    if (!isfinite(ss)) { /* NaN/Inf weights: this request fails, as a generation would */
        s->error = "the model produced non-finite hidden states (NaN or Inf)";
        step_finish(e, s, ENGINE_FINISH_ERROR);
        return;
    }
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
    for (int i = 0; i < dim; i++)
        s->embd[i] *= k * inv;
    step_finish(e, s, ENGINE_FINISH_STOP);
}

/* Adds the rows of s this step pooled (rows from *at of e->b_embd) into its sum. Returns
 * false when its sum cannot be allocated. */
static bool embed_add(engine *e, eng_seq *s, int p0, int n, int *at)
{
    int dim = model_hparams_of(e->m)->dim;
    if (!s->embd && !(s->embd = calloc((size_t)dim, sizeof(float)))) return false;
    if (p0 == 0) memset(s->embd, 0, sizeof(float) * (size_t)dim); /* (re)computed from the start */
    for (int p = p0; p < p0 + n; p++) {
        if (!pooled(e, s, p)) continue;
        const float *row = e->b_embd + (size_t)(*at)++ * (size_t)dim;
        for (int i = 0; i < dim; i++)
            s->embd[i] += row[i];
    }
    return true;
}

const double engine_step_s_le[ENGINE_STEP_S_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25,   0.5,   1,    2.5};
const double engine_step_tok_le[ENGINE_STEP_TOK_BUCKETS - 1] = {1,   2,   4,   8,    16,   32,  64,
                                                                128, 256, 512, 1024, 2048, 4096};

static int bucket(const double *le, int n_le, double v)
{
    int i = 0;
    while (i < n_le && v > le[i])
        i++;
    return i;
}

/* Counts a step that ran n tokens through the model and took secs. */
static void step_observe(engine *e, int n, double secs)
{
    engine_stats *st = &e->live;
    st->step_s_count[bucket(engine_step_s_le, ENGINE_STEP_S_BUCKETS - 1, secs)]++;
    st->step_s_sum += secs;
    st->step_tok_count[bucket(engine_step_tok_le, ENGINE_STEP_TOK_BUCKETS - 1, n)]++;
    st->step_tok_sum += (uint64_t)n;
    st->worker_busy_ns = kl_workers_busy_ns(e->workers);
    int ne;
    const uint64_t *load = model_expert_load(e->m, &ne);
    st->n_expert = ne < ENGINE_MAX_EXPERTS ? ne : ENGINE_MAX_EXPERTS;
    if (load) memcpy(st->expert_tokens, load, sizeof(uint64_t) * (size_t)st->n_expert);
}

/* Fails every request, running or waiting: the model can serve no more. */
static void fail_all(engine *e, const char *why)
{
    while (e->n_running) {
        e->running[0]->error = why;
        step_finish(e, e->running[0], ENGINE_FINISH_ERROR);
    }
    while (e->waiting) {
        e->waiting->error = why;
        step_finish(e, e->waiting, ENGINE_FINISH_ERROR);
    }
}

/* The model's file lost pages since the last step (truncated on disk: they read as zeros):
 * this step's results are wrong, and every later one would be. */
static bool file_damaged(engine *e)
{
    uint64_t faults = model_file_faults(e->m);
    if (faults == e->file_faults) return false;
    e->file_faults = faults;
    kl_error("engine: the model file changed on disk while it was being served (%llu pages "
             "vanished): failing every request; restart with an intact file",
             (unsigned long long)faults);
    pthread_mutex_lock(&e->mu);
    e->failed = "the model file changed on disk while it was being served";
    pthread_mutex_unlock(&e->mu);
    return true;
}

/* Fills the batch buffers with every scheduled token: a chunk of each sequence from its first
 * uncomputed position (a speculating decoder's drafts follow its last token); logits for a
 * sequence's last token and its drafts, hidden rows for an embedding request's pooled tokens.
 * Returns the tokens, *ns the sequences. */
static int gather(engine *e, int *ns)
{
    int n = 0;
    *ns = 0;
    for (int i = 0; i < e->n_running; i++) {
        eng_seq *s = e->running[i];
        if (!s->chunk) continue;
        e->b_seqs[*ns] = (model_seq){s->blocks, s->n_blocks};
        e->b_owner[*ns] = s;
        e->b_lora[*ns] = s->req->r.lora; /* drafts are verified with the sequence's adapter */
        for (int k = 0; k < s->chunk; k++, n++) {
            int p = s->n_computed + k;
            e->b_token[n] = s->tokens[p];
            e->b_pos[n] = p;
            e->b_seq[n] = *ns;
            e->b_want[n] = p >= s->n_tokens - 1 && !s->req->r.embed;
            e->b_want_embd[n] = pooled(e, s, p);
        }
        (*ns)++;
    }
    return n;
}

/* After the forward pass, in batch order: every sequence whose last token was computed samples
 * (verifies its drafts, forks its other choices) or, an embedding request, pools; owners may
 * finish and leave running. */
static void sample_all(engine *e, int ns)
{
    float *lr = e->logits;
    size_t nv = (size_t)model_hparams_of(e->m)->n_vocab;
    int embd_row = 0;
    for (int k = 0; k < ns; k++) {
        eng_seq *s = e->b_owner[k];
        if (s->req->r.embed && !embed_add(e, s, s->n_computed, s->chunk, &embd_row)) {
            s->chunk = 0;
            step_finish(e, s, ENGINE_FINISH_ERROR);
            continue;
        }
        s->n_computed += s->chunk - s->spec.n_draft; /* drafts count once verified */
        s->chunk = 0;
        seq_publish(e, s);
        if (s->n_computed != s->n_tokens) continue;
        if (s->req->r.embed) {
            embed_finish(e, s);
            continue;
        }
        if (s->spec.n_draft) {
            lr += nv * (size_t)spec_verify(e, s, lr);
            continue;
        }
        if (s->index == 0 && s->req->n_forked < s->req->r.n)
            fork_and_sample(e, s, lr);
        else
            sample_and_accept(e, s, lr);
        lr += nv;
    }
}

void step_run(engine *e)
{
    if (e->failed) { /* written by this thread only: no lock to read it here */
        fail_all(e, e->failed);
        return;
    }
    double t0 = kl_now_s();
    int n_sched = sched_plan(e);
    if (!n_sched) return;
    spec_plan(e, n_sched);
    int ns, n = gather(e, &ns);
    model_batch b = {.n = n,
                     .token = e->b_token,
                     .pos = e->b_pos,
                     .seq = e->b_seq,
                     .want_logits = e->b_want,
                     .n_seqs = ns,
                     .seqs = e->b_seqs,
                     .lora = e->b_lora,
                     .want_embd = e->b_want_embd,
                     .embd = e->b_embd};
    kl_err err;
    double tf = kl_now_s();
    int rc = model_forward(e->m, e->workers, e->store, &b, e->logits, &err);
    e->live.steps++;
    e->live.computed_tokens += (uint64_t)n;
    if (file_damaged(e)) {
        fail_all(e, e->failed);
        return;
    }
    if (rc) {
        kl_error("engine: forward failed: %s", err.msg);
        for (int k = 0; k < ns; k++) {
            e->b_owner[k]->error = "the forward pass failed";
            step_finish(e, e->b_owner[k], ENGINE_FINISH_ERROR);
        }
        step_observe(e, n, kl_now_s() - t0);
        return;
    }
    spec_observe(e, n, kl_now_s() - tf);
    sample_all(e, ns);
    step_observe(e, n, kl_now_s() - t0);
}
