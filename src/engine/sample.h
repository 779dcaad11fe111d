/* engine/sample.h: per-sequence sampling over one row of logits, vLLM semantics.
 *
 * Order of operations in sample_token:
 *   1. log probabilities of the model's raw distribution (log_softmax of the unmodified
 *      logits): the chosen token's and the top sp->logprobs;
 *   2. logit_bias (ids outside the vocabulary are ignored);
 *   3. repetition_penalty over tokens of the prompt and the output (a positive logit is
 *      divided by it, a negative one multiplied);
 *   4. presence and frequency penalties over output tokens (OpenAI: logit -= count *
 *      frequency + (count > 0) * presence);
 *   5. temperature < 1e-5: greedy argmax (lowest id on ties), nothing else applies and the
 *      generator is not advanced; otherwise logits / temperature, then
 *   6. top_k, 7. top_p (nucleus over the top_k-renormalized distribution, keeps at least
 *      one), 8. min_p (keeps p >= min_p * p_max), then one draw from rng.
 *
 * Cost on a 128k vocabulary: no full comparison sort. Rows are exponentiated four at a
 * time (kl_exp_row, SSE2) and summed with eight partial sums. top_k selects with a
 * k-element heap. top_p without top_k computes the softmax sum once, then sorts (radix, on
 * the float bits) only the tokens whose probability is at least (1 - top_p) / (n_vocab - 1):
 * no token below that can be inside the nucleus (together they hold less than 1 - top_p),
 * so the nucleus is exact. min_p alone is a threshold on the logit. Measured here (one
 * core, 128256 tokens, LM-like logits): greedy ~50 us, T=1 ~300 us, top_p=0.9 ~400 us,
 * top_k=50 ~200 us per call.
 *
 * Non-finite logits: NaN counts as -inf and +inf as the largest float. If every logit is
 * -inf, token 0 is returned.
 *
 * Determinism: the result depends only on the arguments and rng's state (one draw per
 * non-greedy call), never on other sequences in the batch. */
#ifndef KILN_ENGINE_SAMPLE_H
#define KILN_ENGINE_SAMPLE_H
#include <stdint.h>
#include "base/rng.h"
#include "engine/engine.h"

/* Everything one sample_token call needs, preallocated for n_vocab (about 21 bytes per
 * token): no allocation per token. One per engine thread; not shared between threads. */
typedef struct sample_scratch sample_scratch;
/* Returns NULL if n_vocab < 1 or out of memory. */
sample_scratch *sample_scratch_create(int n_vocab);
void sample_scratch_destroy(sample_scratch *s); /* NULL is fine */

/* Samples the next token of one sequence. logits (n_vocab) may be modified (bias and
 * penalties are applied in place; temperature is not). n_vocab must not exceed the
 * scratch's. prompt (n_prompt) and out (n_out, the tokens generated so far) feed the
 * penalties; ids outside the vocabulary are ignored. When sp->logprobs >= 0,
 * *chosen_logprob gets the chosen token's raw log probability and top (sp->logprobs
 * entries, at most ENGINE_MAX_LOGPROBS) the raw top tokens, highest first (lowest id on
 * ties), with *n_top their count; otherwise *chosen_logprob = 0 and *n_top = 0.
 * chosen_logprob, top and n_top may be NULL. Returns the token id, in [0, n_vocab). */
int32_t sample_token(sample_scratch *s, float *logits, int n_vocab, const engine_sampling *sp,
                     const int32_t *prompt, int n_prompt, const int32_t *out, int n_out,
                     kl_rng *rng, float *chosen_logprob, engine_logprob *top, int *n_top);
#endif
