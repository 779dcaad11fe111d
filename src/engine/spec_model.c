/* engine/spec_model.c: the draft sources that are models (see spec.h): the target's own first
 * layers (ENGINE_SPEC_SKIP: no second file, the target's weights, its output norm and head,
 * its own KV cache) or a smaller model with the same vocabulary (ENGINE_SPEC_DRAFT: its own
 * paged KV cache, spec_state.store and .blocks, a block table per sequence).
 *
 * A candidate granted nd drafts gets them from nd passes, all the step's candidates batched
 * in each: the first pass feeds what the draft has not seen (SKIP: the last token, whose lower
 * layers' K/V it writes where the target will; DRAFT: every token past its cache's valid
 * positions, the whole prompt the first time), each later pass the previous draft. A draft is
 * the argmax of the draft's logits: verification samples the target's own token at every
 * position and keeps the draft when they agree, so whatever the drafts are, the output is the
 * target's (greedy and seeded outputs identical to no speculation).
 *
 * KV: SKIP writes layers < L' of the draft positions into the target's cache, in the blocks
 * reserved for the drafts; the verifying pass writes the same positions again, all layers, so a
 * kept position ends with the target's K/V and a rejected one is rolled back as for n-gram
 * drafts (past n_computed, blocks trimmed). DRAFT's cache stays valid up to the sequence's kept
 * tokens (spec_model_verified). */
#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "engine/internal.h"

static int32_t argmax(const float *row, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* The draft's block table of s covers positions < upto (DRAFT only). */
static bool draft_reserve(engine *e, eng_seq *s, int upto)
{
    spec_seq *q = &s->spec;
    int need = (upto + e->bs - 1) / e->bs;
    if (need > q->cap_blocks) {
        int cap = need * 2;
        int32_t *b = realloc(q->blocks, sizeof(int32_t) * (size_t)cap);
        if (!b) return false;
        q->blocks = b;
        q->cap_blocks = cap;
    }
    while (q->n_blocks < need) {
        int32_t b = kv_blocks_alloc(e->spec.blocks);
        if (b < 0) return false;
        q->blocks[q->n_blocks++] = b;
    }
    return true;
}

/* Adds candidate s's tokens for pass j to the pass's batch (n tokens, ns sequences so far).
 * Returns false when it does not fit (s then drafts no further this step). */
static bool feed(engine *e, eng_seq *s, int j, int *n, int *ns)
{
    spec_state *x = &e->spec;
    bool skip = x->cfg.kind == ENGINE_SPEC_SKIP;
    spec_seq *q = &s->spec;
    int to = s->n_tokens + j; /* feeds positions [from, to) */
    int from = j > 0 ? to - 1 : skip ? s->n_tokens - 1 : q->n_computed;
    if (from < 0 || to - from > e->max_batch - *n) return false;
    if (!skip && !draft_reserve(e, s, to)) return false;
    x->b_seqs[*ns] =
        skip ? (model_seq){s->blocks, s->n_blocks} : (model_seq){q->blocks, q->n_blocks};
    x->b_lora[*ns] = skip ? s->req->r.lora : NULL; /* the target's layers carry its adapter */
    for (int p = from; p < to; p++, (*n)++) {
        x->b_token[*n] = s->tokens[p];
        x->b_pos[*n] = p;
        x->b_seq[*n] = *ns;
        x->b_want[*n] = p == to - 1;
    }
    (*ns)++;
    return true;
}

void spec_model_propose(engine *e, int nc)
{
    spec_state *x = &e->spec;
    bool skip = x->cfg.kind == ENGINE_SPEC_SKIP;
    model *dm = skip ? e->m : x->cfg.draft;
    kv_store *kv = skip ? e->store : x->store;
    size_t nv = (size_t)model_hparams_of(e->m)->n_vocab;
    int most = 0;
    for (int i = 0; i < nc; i++)
        if (x->cand[i]->spec.n_draft > most) most = x->cand[i]->spec.n_draft;
    for (int j = 0; j < most; j++) {
        int n = 0, ns = 0, fed = 0;
        for (int i = 0; i < nc; i++) {
            eng_seq *s = x->cand[i];
            if (s->spec.n_draft <= j) continue;
            if (!feed(e, s, j, &n, &ns)) {
                s->spec.n_draft = j;
                continue;
            }
            x->fed[fed++] = s;
        }
        if (!fed) break;
        model_batch b = {.n = n,
                         .token = x->b_token,
                         .pos = x->b_pos,
                         .seq = x->b_seq,
                         .want_logits = x->b_want,
                         .n_seqs = ns,
                         .seqs = x->b_seqs,
                         .lora = x->b_lora,
                         .n_layers = skip ? x->cfg.skip_layers : 0};
        kl_err err;
        double t0 = kl_now_s();
        if (model_forward(dm, e->workers, kv, &b, x->logits, &err)) {
            kl_warn("engine: drafting pass failed: %s", err.msg);
            for (int i = 0; i < nc; i++)
                if (x->cand[i]->spec.n_draft > j) x->cand[i]->spec.n_draft = j;
            for (int k = 0; k < fed; k++)
                x->fed[k]->spec.n_computed = 0; /* its draft cache is in doubt: start again */
            break;
        }
        spec_pass_observe(&x->draft_pass_s, n, ns, kl_now_s() - t0);
        for (int k = 0; k < fed; k++) {
            eng_seq *s = x->fed[k];
            s->tokens[s->n_tokens + j] = argmax(x->logits + (size_t)k * nv, (int)nv);
            if (!skip) s->spec.n_computed = s->n_tokens + j;
        }
    }
}

void spec_model_verified(eng_seq *s)
{
    if (s->spec.n_computed > s->n_computed) s->spec.n_computed = s->n_computed;
}
