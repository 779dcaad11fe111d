/* engine/stop.h: stop strings on streamed text. The detokenized output is fed piece by
 * piece; the matcher says how many bytes are safe to emit now and whether a stop string
 * has matched. A stop string may span any number of pieces and is never emitted.
 *
 *   emit now  = everything that can no longer be part of a stop string;
 *   held back = the longest suffix of the text that is a proper prefix of some stop
 *               string (at most STOP_MAX_LEN - 1 bytes), emitted later or by stop_flush;
 *   on a match, the text before the stop string is emitted, the stop string and anything
 *   after it are dropped, and the matcher stays matched.
 *
 * The match is the one that completes first in the byte stream; if several complete at
 * the same byte, the longest (earliest starting) wins. So the result depends only on the
 * concatenated text, never on how it was split into pieces. Bytes are compared exactly
 * (UTF-8 needs nothing special: a valid stop string starts on a character boundary, so
 * the held-back suffix and the cut before a match do too).
 *
 * Matching is KMP per stop string: O(1) amortized per byte per stop, whatever the text
 * (no quadratic blow-up on hostile text such as "aaaa..." against "aaa...ab"). */
#ifndef KILN_ENGINE_STOP_H
#define KILN_ENGINE_STOP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "engine/engine.h"

#define STOP_MAX_LEN 256 /* bytes in one stop string at most */
/* Bytes stop_feed may write for an input of len bytes: size emit at least this. */
#define STOP_EMIT_CAP(len) ((size_t)(len) + STOP_MAX_LEN)

typedef struct stop_matcher {
    int n;                                        /* stop strings */
    uint16_t len[ENGINE_MAX_STOP];                /* their lengths */
    uint16_t state[ENGINE_MAX_STOP];              /* bytes of each matched at the stream's end */
    uint16_t fail[ENGINE_MAX_STOP][STOP_MAX_LEN]; /* KMP failure function of each */
    char str[ENGINE_MAX_STOP][STOP_MAX_LEN];      /* copies (not NUL-terminated) */
    char held[STOP_MAX_LEN];                      /* (n_held) not yet emitted */
    size_t n_held;
    bool matched;
    int which; /* index of the stop string that matched, or -1 */
} stop_matcher;

/* Sets up m for stops (n of them, 0..ENGINE_MAX_STOP, each 1..STOP_MAX_LEN bytes; copied,
 * so they need not outlive m). Returns 0, or KL_EINVAL with err saying which string is
 * bad (m is then a matcher with no stop strings: it passes text through). */
int stop_init(stop_matcher *m, const char *const *stops, int n, kl_err *err);

/* Feeds len bytes of text. Writes the bytes safe to emit now to emit (cap bytes, which
 * must be at least STOP_EMIT_CAP(len): a smaller buffer is a bug and aborts) and returns
 * their count. Sets *matched (may be NULL) when a stop string has matched, in this call or
 * before: then the returned bytes are all the text before it and later calls return 0. */
size_t stop_feed(stop_matcher *m, const char *text, size_t len, char *emit, size_t cap,
                 bool *matched);

/* The end of the sequence (EOS, length, stop token): writes the held-back text to emit
 * (cap >= STOP_MAX_LEN) and returns its length; 0 after a match. The matcher is then
 * empty and stays usable. */
size_t stop_flush(stop_matcher *m, char *emit, size_t cap);
#endif
