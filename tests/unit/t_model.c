/* Batches for model_forward in tests (tests/t_model.h). */
#include "t_model.h"

#include "t.h"

model_batch *t_batch_seq(t_batch *tb, const model_seq *sq, const int32_t *tok, int n, int32_t pos0)
{
    T_ASSERT(n >= 1 && n <= T_BATCH_MAX);
    for (int i = 0; i < n; i++)
        tb->pos[i] = pos0 + i, tb->seq[i] = 0, tb->want[i] = true;
    tb->b = (model_batch){.n = n,
                          .token = tok,
                          .pos = tb->pos,
                          .seq = tb->seq,
                          .want_logits = tb->want,
                          .n_seqs = 1,
                          .seqs = sq};
    return &tb->b;
}
