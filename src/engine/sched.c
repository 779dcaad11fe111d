/* engine/sched.c: plans one step. Running sequences are kept sorted by (priority desc,
 * arrival asc, choice): decodes first, in that order, each needing one token and at most one
 * new block; when the pool is out, the last sequence in that order (lowest priority, latest
 * arrival) is preempted: its blocks go back and it waits to be recomputed. Then partially
 * prefilled sequences continue, then waiting ones are admitted, all under the token budget
 * (chunked prefill: a long prompt takes what is left of the budget each step). */
#include "engine/internal.h"

/* True when a goes before b. */
static bool before(const eng_seq *a, const eng_seq *b)
{
    if (a->req->r.priority != b->req->r.priority) return a->req->r.priority > b->req->r.priority;
    if (a->req->arrival != b->req->arrival) return a->req->arrival < b->req->arrival;
    return a->index < b->index;
}

void sched_enqueue_waiting(engine *e, eng_seq *s)
{
    s->state = SEQ_WAITING;
    s->chunk = 0;
    eng_seq **p = &e->waiting;
    while (*p && !before(s, *p))
        p = &(*p)->next_wait;
    s->next_wait = *p;
    *p = s;
}

void sched_running_add(engine *e, eng_seq *s)
{
    int i = e->n_running;
    while (i > 0 && before(s, e->running[i - 1])) {
        e->running[i] = e->running[i - 1];
        i--;
    }
    e->running[i] = s;
    e->n_running++;
    s->state = SEQ_RUNNING;
}

static void running_remove_at(engine *e, int i)
{
    for (; i + 1 < e->n_running; i++)
        e->running[i] = e->running[i + 1];
    e->n_running--;
}

static void preempt_last(engine *e)
{
    eng_seq *v = e->running[e->n_running - 1];
    running_remove_at(e, e->n_running - 1);
    seq_release_blocks(e, v);
    sched_enqueue_waiting(e, v);
    e->live.preemptions++;
}

/* Reserves blocks for s to compute up to `upto` tokens, or as many as the pool allows.
 * Returns the tokens s can compute this step (0 when not even one). */
static int reserve_upto(engine *e, eng_seq *s, int upto)
{
    if (seq_reserve(e, s, upto)) return upto - s->n_computed;
    int cap = s->n_blocks * e->bs - s->n_computed;
    return cap > 0 ? cap : 0;
}

void sched_remove(engine *e, eng_seq *s)
{
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == s) {
            running_remove_at(e, i);
            return;
        }
    for (eng_seq **p = &e->waiting; *p; p = &(*p)->next_wait)
        if (*p == s) {
            *p = s->next_wait;
            s->next_wait = NULL;
            return;
        }
}

/* Gives running[i] blocks for up to want more tokens, preempting from the back while the
 * pool is out. Returns the tokens it can compute (0 when it was preempted itself). */
static int reserve_or_preempt(engine *e, int i, int want)
{
    eng_seq *s = e->running[i];
    int c;
    while ((c = reserve_upto(e, s, s->n_computed + want)) == 0) {
        if (e->running[e->n_running - 1] == s) {
            if (e->n_running > 1 || e->waiting) preempt_last(e);
            return 0;
        }
        preempt_last(e);
    }
    return c;
}

int sched_plan(engine *e)
{
    int budget = e->max_batch;
    for (int i = 0; i < e->n_running; i++)
        e->running[i]->chunk = 0;
    /* 1. decodes */
    for (int i = 0; i < e->n_running && budget > 0; i++) {
        eng_seq *s = e->running[i];
        if (s->n_tokens - s->n_computed != 1) continue;
        s->chunk = reserve_or_preempt(e, i, 1);
        budget -= s->chunk;
    }
    /* 2. prefills already under way */
    for (int i = 0; i < e->n_running && budget > 0; i++) {
        eng_seq *s = e->running[i];
        if (s->chunk) continue;
        int left = s->n_tokens - s->n_computed;
        s->chunk = reserve_or_preempt(e, i, left < budget ? left : budget);
        budget -= s->chunk;
    }
    /* 3. admissions */
    while (e->waiting && e->n_running < e->max_seqs && budget > 0) {
        eng_seq *s = e->waiting;
        int hit = seq_prefix_lookup(e, s);
        int left = s->n_tokens - s->n_computed;
        /* a model that attends both ways computes a sequence in one step, or waits */
        bool whole = model_hparams_of(e->m)->non_causal;
        if (whole && left > budget) break;
        int c = reserve_upto(e, s, s->n_computed + (left < budget ? left : budget));
        if (c == 0 || (whole && c < left)) {
            seq_release_blocks(e, s);
            break;
        }
        if (s->index == 0 && s->req->n_forked <= 1 && s->n_generated == 0) {
            e->live.prefix_queries += (uint64_t)s->n_tokens;
            e->live.prefix_hits += (uint64_t)hit;
            s->req->cached_tokens = hit;
        }
        e->waiting = s->next_wait;
        s->next_wait = NULL;
        if (s->req->queued_s < 0) s->req->queued_s = kl_now_s() - s->req->t_submit;
        sched_running_add(e, s);
        s->chunk = c;
        budget -= c;
    }
    /* Nothing fits although the pool is all ours: the first sequence can never run. */
    if (budget == e->max_batch && (e->n_running || e->waiting)) {
        eng_seq *s = e->n_running ? e->running[0] : e->waiting;
        if (kv_blocks_used(e->blocks) <= s->n_blocks) step_finish(e, s, ENGINE_FINISH_LENGTH);
    }
    return e->max_batch - budget;
}
