/* engine/spec_ngram.c: the n-gram (prompt lookup) draft source: a sequence that repeats what it
 * has seen (a quoted or edited document, code, a loop) is continued the way it went before.
 * No model, no state: one backward scan over the sequence's tokens per proposal. */
#include "engine/internal.h"

int spec_ngram_lookup(const int32_t *t, int n, int n_min, int n_max, int k, int32_t *out)
{
    if (n < 2 || k < 1 || n_min < 1) return 0;
    int best_len = 0, best_at = -1;
    for (int i = n - 2; i >= 0 && best_len < n_max; i--) {
        if (t[i] != t[n - 1]) continue;
        int len = 1;
        while (len < n_max && i - len >= 0 && t[i - len] == t[n - 1 - len])
            len++;
        if (len > best_len) best_len = len, best_at = i;
    }
    if (best_len < n_min) return 0;
    int period = n - 1 - best_at; /* tokens from the match's end to ours */
    for (int j = 0; j < k; j++)
        out[j] = t[best_at + 1 + j % period];
    return k;
}

int spec_ngram_propose(engine *e, int nc)
{
    spec_state *x = &e->spec;
    int kept = 0;
    for (int i = 0; i < nc; i++) {
        eng_seq *s = x->cand[i];
        int m = spec_ngram_lookup(s->tokens, s->n_tokens, x->cfg.ngram_min, x->cfg.ngram_max,
                                  x->avail[i], s->tokens + s->n_tokens);
        if (!m) continue;
        x->cand[kept] = s;
        x->avail[kept++] = m;
    }
    return kept;
}
