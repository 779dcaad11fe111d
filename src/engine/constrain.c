/* engine/constrain.c: constrained decoding for a sequence whose request carries a grammar.
 *
 * Before sampling, the logits row is masked (-inf) to the tokens the grammar allows next
 * (grammar/grammar.h); the sampler then sees only those, so logprobs are of the masked
 * distribution, as vLLM computes them (it applies the grammar bitmask to the logits before
 * its sampler takes raw logprobs, logit_bias and penalties coming after). After sampling,
 * the sequence's matcher reads the token. When the output is complete the end tokens (and
 * the request's stop token ids) are allowed, and only they when nothing may follow.
 *
 * The vocabulary's bytes (tok_piece of every id, the end-of-generation ids) are gathered
 * once, the first time any request has a grammar. Matchers are made at a choice's first
 * sample, so n > 1 choices, forks and recomputed (preempted) sequences each own one; a
 * preempted sequence keeps its tokens and therefore its matcher. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "engine/internal.h"

/* Builds e->gvocab from the tokenizer. Returns false when there is none or out of memory. */
static bool ensure_vocab(engine *e)
{
    if (e->gvocab) return true;
    if (!e->tk) return false;
    int32_t nv = model_hparams_of(e->m)->n_vocab, nt = tok_n_vocab(e->tk);
    char **piece = calloc((size_t)nv, sizeof *piece);
    uint32_t *len = calloc((size_t)nv, sizeof *len);
    bool *end = calloc((size_t)nv, sizeof *end);
    bool ok = piece && len && end;
    for (int32_t i = 0; ok && i < nv && i < nt; i++) {
        char buf[1024];
        size_t n = tok_piece(e->tk, i, 0, buf, sizeof buf);
        end[i] = tok_is_eog(e->tk, i);
        if (n > sizeof buf || end[i]) continue; /* too long: never allowed; ends: no bytes */
        piece[i] = malloc(n + 1);
        if (!piece[i]) {
            ok = false;
            break;
        }
        memcpy(piece[i], buf, n);
        len[i] = (uint32_t)n;
    }
    kl_err err;
    if (ok && gram_vocab_create(&e->gvocab, nv, (const char *const *)piece, len, end, &err)) {
        kl_error("engine: grammar vocabulary: %s", err.msg);
        ok = false;
    }
    for (int32_t i = 0; piece && i < nv; i++)
        free(piece[i]);
    free(piece);
    free(len);
    free(end);
    if (ok) e->gmask = malloc(sizeof *e->gmask * (size_t)gram_mask_words(e->gvocab));
    if (!ok || !e->gmask) {
        gram_vocab_free(e->gvocab);
        e->gvocab = NULL;
        return false;
    }
    return true;
}

int constrain_mask(engine *e, eng_seq *s, float *row, int n_vocab)
{
    const engine_request *r = &s->req->r;
    if (!ensure_vocab(e)) return CONSTRAIN_FAIL;
    if (!s->gm) {
        kl_err err;
        if (gram_matcher_create(&s->gm, r->grammar, e->gvocab, &err)) return CONSTRAIN_FAIL;
    }
    int32_t n = gram_matcher_mask(s->gm, e->gmask);
    if (gram_matcher_can_end(s->gm))
        for (int i = 0; i < r->sp.n_stop_ids; i++) {
            int32_t t = r->sp.stop_ids[i];
            if (t >= 0 && t < n_vocab && !gram_mask_has(e->gmask, t)) {
                e->gmask[t >> 5] |= 1u << (t & 31);
                n++;
            }
        }
    if (!n) return gram_matcher_can_end(s->gm) ? CONSTRAIN_END : CONSTRAIN_FAIL;
    gram_mask_apply(e->gmask, row, n_vocab);
    return CONSTRAIN_OK;
}

bool constrain_accept(engine *e, eng_seq *s, int32_t t)
{
    (void)e;
    const engine_sampling *sp = &s->req->r.sp;
    for (int i = 0; i < sp->n_stop_ids; i++)
        if (sp->stop_ids[i] == t) return gram_matcher_can_end(s->gm);
    return gram_matcher_accept(s->gm, t);
}
