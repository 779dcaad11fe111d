/* engine/stop.c: stop-string matcher over streamed text (see stop.h).
 *
 * The bytes not yet emitted ("pending") are always a suffix of the stream: at the end of
 * a feed they are exactly the last max_k(state[k]) bytes (the longest suffix that is a
 * prefix of some stop string), kept in held[]. During a feed the pending region is
 * held[0..n_held) followed by the text consumed so far. */
#include "engine/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "kiln: stop matcher: %s\n", what);
    abort();
}

int stop_init(stop_matcher *m, const char *const *stops, int n, kl_err *err)
{
    memset(m->len, 0, sizeof m->len);
    memset(m->state, 0, sizeof m->state);
    m->n = 0;
    m->n_held = 0;
    m->matched = false;
    m->which = -1;
    if (n < 0 || n > ENGINE_MAX_STOP)
        return kl_errf(err, KL_EINVAL, "%d stop strings: at most %d are allowed", n,
                       ENGINE_MAX_STOP);
    if (n > 0 && !stops) return kl_errf(err, KL_EINVAL, "stop strings missing");
    for (int k = 0; k < n; k++) {
        size_t len = stops[k] ? strlen(stops[k]) : 0;
        if (len == 0) return kl_errf(err, KL_EINVAL, "stop string %d is empty", k);
        if (len > STOP_MAX_LEN)
            return kl_errf(err, KL_EINVAL, "stop string %d is %zu bytes long (at most %d)", k, len,
                           STOP_MAX_LEN);
    }
    for (int k = 0; k < n; k++) {
        size_t len = strlen(stops[k]);
        memcpy(m->str[k], stops[k], len);
        m->len[k] = (uint16_t)len;
        /* fail[i]: length of the longest proper prefix of str[0..i] that is also its suffix */
        const char *p = m->str[k];
        uint16_t *f = m->fail[k];
        f[0] = 0;
        size_t j = 0;
        for (size_t i = 1; i < len; i++) {
            while (j > 0 && p[i] != p[j])
                j = f[j - 1];
            if (p[i] == p[j]) j++;
            f[i] = (uint16_t)j;
        }
    }
    m->n = n;
    return 0;
}

/* Copies count bytes from the start of the pending region (held, then text) to dst. */
static void copy_pending(const stop_matcher *m, const char *text, size_t count, char *dst)
{
    size_t from_held = count < m->n_held ? count : m->n_held;
    memcpy(dst, m->held, from_held);
    if (count > from_held) memcpy(dst + from_held, text, count - from_held);
}

size_t stop_feed(stop_matcher *m, const char *text, size_t len, char *emit, size_t cap,
                 bool *matched)
{
    if (matched) *matched = m->matched;
    if (m->matched || len == 0) return 0;
    if (cap < m->n_held + len) die("emit buffer smaller than STOP_EMIT_CAP(len)");

    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = t[i];
        int best = -1;
        for (int k = 0; k < m->n; k++) {
            const unsigned char *p = (const unsigned char *)m->str[k];
            size_t st = m->state[k];
            while (st > 0 && p[st] != c)
                st = m->fail[k][st - 1];
            if (p[st] == c) st++;
            m->state[k] = (uint16_t)st;
            if (st == m->len[k] && (best < 0 || m->len[k] > m->len[best])) best = k;
        }
        if (best >= 0) {
            size_t pending = m->n_held + i + 1;
            size_t out = pending - m->len[best];
            copy_pending(m, text, out, emit);
            m->matched = true;
            m->which = best;
            m->n_held = 0;
            if (matched) *matched = true;
            return out;
        }
    }

    size_t hold = 0;
    for (int k = 0; k < m->n; k++)
        if (m->state[k] > hold) hold = m->state[k];
    size_t pending = m->n_held + len;
    size_t out = pending - hold; /* hold <= pending: every matched byte is pending */
    copy_pending(m, text, out, emit);
    /* new held = the last hold bytes of the pending region */
    char tmp[STOP_MAX_LEN];
    size_t from_text = hold < len ? hold : len;
    size_t from_held = hold - from_text;
    memcpy(tmp, m->held + m->n_held - from_held, from_held);
    memcpy(tmp + from_held, text + len - from_text, from_text);
    memcpy(m->held, tmp, hold);
    m->n_held = hold;
    return out;
}

size_t stop_flush(stop_matcher *m, char *emit, size_t cap)
{
    size_t out = 0;
    if (!m->matched) {
        if (cap < m->n_held) die("emit buffer smaller than STOP_MAX_LEN");
        memcpy(emit, m->held, m->n_held);
        out = m->n_held;
    }
    m->n_held = 0;
    memset(m->state, 0, sizeof m->state);
    return out;
}
