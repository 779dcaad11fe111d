/* tests/t_model.h: batches for model_forward in tests: the tokens of one sequence at
 * consecutive positions, the shape most model tests run. */
#ifndef KILN_TESTS_T_MODEL_H
#define KILN_TESTS_T_MODEL_H
#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

#define T_BATCH_MAX 64 /* tokens */

typedef struct t_batch {
    model_batch b; /* points into this struct: fill it in place, never copy it */
    int32_t pos[T_BATCH_MAX], seq[T_BATCH_MAX];
    bool want[T_BATCH_MAX];
} t_batch;

/* &tb->b: the n tokens tok[0..n) of the one sequence *sq at positions pos0, pos0 + 1, ...,
 * every row's logits wanted (clear tb->want[i] for fewer; set tb->b's other fields after).
 * tok and sq are borrowed. Fails the test when n is not in [1, T_BATCH_MAX]. */
model_batch *t_batch_seq(t_batch *tb, const model_seq *sq, const int32_t *tok, int n, int32_t pos0);
#endif
