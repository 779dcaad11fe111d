/* engine/spec.c: speculative decoding inside the step (see spec.h): which decoders draft,
 * their proposals and blocks, and the verification of their drafts against the target's logits. How
 * many drafts each gets is spec_policy.c's; a sequence's rate is the moving average of its drafts'
 * outcomes, and one whose rate fell too low (it stopped drafting) starts again from RATE_START
 * after a pause that doubles each time it stops. */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define RATE_GAIN  0.2f /* weight of one draft token's outcome in a sequence's rate */
#define RATE_START 0.5f /* a sequence's rate before its first draft, and after a pause */
#define PAUSE0     16   /* tokens a sequence that stopped drafting waits before a retry */
#define PAUSE_MAX  4096

void spec_observe(engine *e, int n, double secs)
{
    if (e->spec.observe) spec_cost_observe(&e->spec.cost, n, secs);
}

/* ---- who drafts, how much ---- */

/* Draft tokens s may take this step: its request's limit, its tokens left before max_tokens
 * (the step yields drafts + 1) and its room in the context. */
static int seq_cap(const engine *e, const eng_seq *s)
{
    const engine_request *r = &s->req->r;
    if (r->spec_k < 0) return 0;
    int k = r->spec_k > 0 && r->spec_k < e->spec.cfg.k ? r->spec_k : e->spec.cfg.k;
    int left = r->sp.max_tokens - s->n_generated - 1, room = e->n_ctx - s->n_tokens;
    if (k > left) k = left;
    return k < room ? k : room;
}

/* A sequence's first step as a candidate sets it up; then, after `pause` tokens without
 * drafting, it gets a fresh start. */
static void seq_refresh(eng_seq *s)
{
    spec_seq *q = &s->spec;
    if (!q->pause) {
        q->rate = RATE_START;
        q->pause = PAUSE0;
    } else if (++q->idle >= q->pause) {
        if (q->rate < RATE_START) q->rate = RATE_START;
        q->pause = q->pause < PAUSE_MAX ? 2 * q->pause : PAUSE_MAX;
        q->idle = 0;
    }
}

/* Collects the decoders that may draft into cand[] with their limits in avail[]. */
static int candidates(engine *e)
{
    spec_state *x = &e->spec;
    int nc = 0;
    for (int i = 0; i < e->n_running; i++) {
        eng_seq *s = e->running[i];
        if (s->chunk != 1 || s->n_tokens - s->n_computed != 1) continue; /* decoders only */
        if (s->req->r.embed) continue; /* a one-token prompt to embed looks like a decoder */
        if (s->index == 0 && s->req->n_forked < s->req->r.n) continue; /* forks its choices */
        int cap = seq_cap(e, s);
        if (cap <= 0) continue;
        seq_refresh(s);
        x->cand[nc] = s;
        x->avail[nc++] = cap;
    }
    return nc;
}

/* Grants drafts (into each candidate's spec.n_draft) while they pay for themselves, n tokens
 * already in the step, spare more at most (spec_policy.c). */
static void share(engine *e, int nc, int n, int spare)
{
    spec_state *x = &e->spec;
    for (int i = 0; i < nc; i++)
        x->rates[i] = x->cand[i]->spec.rate;
    spec_grant_in in = {&x->cost,     x->cfg.kind == ENGINE_SPEC_NGRAM ? 0 : x->draft_pass_s,
                        x->cfg.fixed, n,
                        spare,        nc,
                        x->rates,     x->avail};
    spec_grant(&in, x->grant);
    for (int i = 0; i < nc; i++)
        x->cand[i]->spec.n_draft = x->grant[i];
}

/* Whether the best candidate's first draft would pay for itself: when not (a full batch), the
 * step skips the proposals altogether. */
static bool worth_one(engine *e, int nc, int n)
{
    spec_state *x = &e->spec;
    if (x->cfg.fixed) return true;
    float best = 0;
    for (int i = 0; i < nc; i++)
        if (x->cand[i]->spec.rate > best) best = x->cand[i]->spec.rate;
    spec_grant_in in = {&x->cost, 0, false, n, 1, 1, &best, (int[]){1}};
    int one;
    return spec_grant(&in, &one) > 0;
}

/* Blocks for s's last token and nd drafts, taking free blocks only (drafts never evict
 * cached prefixes). Returns the drafts covered. */
static int reserve(engine *e, eng_seq *s, int nd)
{
    const kv_blocks *kb = e->blocks;
    int free_blocks = kv_blocks_total(kb) - kv_blocks_used(kb) - kv_blocks_cached(kb);
    int need = (s->n_tokens + nd + e->bs - 1) / e->bs - s->n_blocks;
    if (need > free_blocks) need = free_blocks;
    if (need > 0) seq_reserve(e, s, (s->n_blocks + need) * e->bs);
    int room = s->n_blocks * e->bs - s->n_tokens;
    return nd < room ? nd : room;
}

/* Blocks for every candidate's granted drafts (cutting the grant to what they cover). */
static void reserve_all(engine *e, int nc)
{
    for (int i = 0; i < nc; i++) {
        eng_seq *s = e->spec.cand[i];
        s->spec.n_draft = reserve(e, s, s->spec.n_draft);
    }
}

/* The drafts go into the step: the batch chunk, the counters. */
static void commit(engine *e, int nc)
{
    for (int i = 0; i < nc; i++) {
        eng_seq *s = e->spec.cand[i];
        int nd = s->spec.n_draft;
        if (!nd) {
            seq_trim_blocks(e, s); /* blocks a model drafter could not fill */
            continue;
        }
        s->chunk += nd;
        s->spec.drafted += nd;
        s->spec.idle = 0;
        e->live.spec_drafts++;
        e->live.spec_draft_tokens += (uint64_t)nd;
    }
}

/* Logits rows the step needs before drafts: one per sequence whose chunk ends its tokens.
 * *decode_only: every sequence in the step decodes one token (no prefill chunk). */
static int rows_planned(const engine *e, bool *decode_only)
{
    int rows = 0;
    *decode_only = true;
    for (int i = 0; i < e->n_running; i++) {
        const eng_seq *s = e->running[i];
        if (!s->chunk) continue;
        rows += s->n_computed + s->chunk == s->n_tokens;
        if (s->chunk != 1) *decode_only = false;
    }
    return rows;
}

void spec_plan(engine *e, int n_sched)
{
    spec_state *x = &e->spec;
    x->observe = false;
    if (x->cfg.kind == ENGINE_SPEC_OFF) return;
    int spare = SPEC_MAX_DRAFTS, rows = rows_planned(e, &x->observe);
    if (spare > e->max_batch - n_sched) spare = e->max_batch - n_sched;
    if (spare > e->max_rows - rows) spare = e->max_rows - rows;
    int nc = spare > 0 ? candidates(e) : 0;
    if (!nc) return;
    if (!worth_one(e, nc, n_sched)) return;
    if (x->cfg.kind == ENGINE_SPEC_NGRAM) { /* the lookup says how many it has */
        nc = spec_ngram_propose(e, nc);
        share(e, nc, n_sched, spare);
        reserve_all(e, nc);
    } else { /* a model drafts what was granted, into the blocks reserved for it */
        share(e, nc, n_sched, spare);
        reserve_all(e, nc);
        spec_model_propose(e, nc);
    }
    commit(e, nc);
}

/* ---- verification ---- */

/* One draft token's outcome: the sequence's rate, the counters. */
static void outcome(engine *e, eng_seq *s, int pos, bool kept)
{
    float o = kept ? 1.f : 0.f;
    s->spec.rate += RATE_GAIN * (o - s->spec.rate);
    if (!kept) return;
    s->spec.accepted++;
    s->spec.pause = PAUSE0;
    e->live.spec_accepted_tokens++;
    e->live.spec_accepted_per_pos[pos]++;
}

int spec_verify(engine *e, eng_seq *s, float *rows)
{
    int nd = s->spec.n_draft, base = s->n_tokens;
    size_t nv = (size_t)model_hparams_of(e->m)->n_vocab;
    s->spec.n_draft = 0;
    for (int j = 0;; j++) {
        int32_t d = j < nd ? s->tokens[base + j] : -1; /* read before t takes its place */
        engine_logprob top[ENGINE_MAX_LOGPROBS];
        int n_top = 0;
        float lp = 0.f;
        /* a draft proposed with certainty (n-gram): the target samples as it would without
         * speculation and keeps the draft when it drew the same token. That is rejection
         * sampling with q a point mass: accepted with probability p(d) = min(1, p(d)/q(d)),
         * and when not, the token drawn is distributed as p without d, renormalised, which is
         * (p - q)+ normalised. Same draws, same tokens as without speculation.
         * A grammar-constrained sequence needs no rollback: step_sample masks each row with
         * its matcher as advanced by the tokens kept so far, and advances it by the target's
         * token only, never by a draft. */
        int32_t t = step_sample(e, s, rows + (size_t)j * nv, &lp, top, &n_top);
        if (t < 0) return nd + 1; /* non-finite logits or the grammar ended it: s is gone */
        bool kept = d >= 0 && t == d;
        if (kept) s->n_computed++; /* its K/V were computed from this very token */
        if (d >= 0) outcome(e, s, j, kept);
        if (!step_accept(e, s, t, lp, top, n_top)) return nd + 1; /* finished: s is gone */
        if (!kept) break;
    }
    spec_model_verified(s);
    seq_publish(e, s);
    seq_trim_blocks(e, s);
    return nd + 1;
}

/* ---- state ---- */

/* The draft model's paged KV cache: as many blocks as the target's pool (a sequence the
 * target can hold, the draft can), of the draft's shape. */
static int draft_cache(engine *e, kl_err *err)
{
    spec_state *x = &e->spec;
    const model *dm = x->cfg.draft;
    if (!dm)
        return kl_errf(err, KL_EINVAL, "speculation: draft needs a draft model (--draft-model)");
    const model_hparams *th = model_hparams_of(e->m), *dh = model_hparams_of(dm);
    if (dh->n_vocab != th->n_vocab)
        return kl_errf(err, KL_EINVAL,
                       "speculation: the draft model has %d tokens, the target %d: the "
                       "vocabularies must be the same",
                       dh->n_vocab, th->n_vocab);
    const model_opts *mo = model_opts_of(dm);
    if (mo->max_batch_tokens < e->max_batch || mo->max_logits < e->max_seqs ||
        mo->max_ctx < e->n_ctx)
        return kl_errf(err, KL_EINVAL,
                       "speculation: the draft model was loaded for smaller batches or a "
                       "shorter context than the engine's");
    int kv_dim = dh->n_kv_heads * dh->head_dim;
    size_t block =
        (size_t)e->bs * 2 * (size_t)dh->n_layers * kl_dtype_row_bytes(e->cfg.kv_dtype, kv_dim);
    kv_store_config kc = {dh->n_layers, kv_dim, e->bs, e->cfg.kv_dtype,
                          block * (size_t)kv_store_n_blocks(e->store)};
    int rc = kv_store_create(&x->store, &kc, err);
    if (!rc) rc = kv_blocks_create(&x->blocks, kv_store_n_blocks(x->store), e->bs, err);
    return rc;
}

int spec_create(engine *e, kl_err *err)
{
    spec_state *x = &e->spec;
    if (x->cfg.kind == ENGINE_SPEC_OFF) return 0;
    if (x->cfg.k < 1 || x->cfg.k > ENGINE_SPEC_MAX_K)
        return kl_errf(err, KL_EINVAL, "speculation: k must be 1..%d", ENGINE_SPEC_MAX_K);
    x->cand = malloc(sizeof *x->cand * (size_t)e->max_seqs);
    x->avail = malloc(sizeof *x->avail * (size_t)e->max_seqs);
    x->rates = malloc(sizeof *x->rates * (size_t)e->max_seqs);
    x->grant = malloc(sizeof *x->grant * (size_t)e->max_seqs);
    if (!x->cand || !x->avail || !x->rates || !x->grant)
        return kl_errf(err, KL_ENOMEM, "speculation: out of memory");
    if (x->cfg.kind == ENGINE_SPEC_NGRAM) return 0;
    const model_hparams *hp = model_hparams_of(e->m);
    if (x->cfg.kind == ENGINE_SPEC_SKIP && x->cfg.skip_layers >= hp->n_layers)
        return kl_errf(err, KL_EINVAL,
                       "speculation: layers=%d: the draft must skip some of the model's %d layers",
                       x->cfg.skip_layers, hp->n_layers);
    if (x->cfg.kind == ENGINE_SPEC_DRAFT) {
        int rc = draft_cache(e, err);
        if (rc) return rc;
    }
    size_t mb = (size_t)e->max_batch, ms = (size_t)e->max_seqs;
    x->logits = malloc(sizeof(float) * ms * (size_t)hp->n_vocab);
    x->b_token = malloc(sizeof(int32_t) * mb);
    x->b_pos = malloc(sizeof(int32_t) * mb);
    x->b_seq = malloc(sizeof(int32_t) * mb);
    x->b_want = malloc(sizeof(bool) * mb);
    x->b_seqs = malloc(sizeof *x->b_seqs * ms);
    x->b_lora = malloc(sizeof *x->b_lora * ms);
    x->fed = malloc(sizeof *x->fed * ms);
    if (!x->logits || !x->b_token || !x->b_pos || !x->b_seq || !x->b_want || !x->b_seqs ||
        !x->b_lora || !x->fed)
        return kl_errf(err, KL_ENOMEM, "speculation: out of memory");
    return 0;
}

void spec_destroy(engine *e)
{
    spec_state *x = &e->spec;
    free(x->cand);
    free(x->avail);
    free(x->rates);
    free(x->grant);
    free(x->logits);
    free(x->b_token), free(x->b_pos), free(x->b_seq), free(x->b_want);
    free(x->b_seqs), free(x->b_lora), free(x->fed);
    kv_blocks_destroy(x->blocks);
    kv_store_destroy(x->store);
}

void spec_seq_release(engine *e, eng_seq *s)
{
    spec_seq *q = &s->spec;
    for (int i = 0; i < q->n_blocks; i++)
        kv_blocks_unref(e->spec.blocks, q->blocks[i]);
    q->n_blocks = 0;
    q->n_computed = 0;
}
