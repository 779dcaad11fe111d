/* engine/stop: stop strings across piece boundaries, overlapping prefixes, several stops,
 * UTF-8, flush, bad stop lists, hostile text, and a randomized comparison with a brute
 * force reference over every way of splitting the text. */
#include <time.h>

#include "engine/stop.h"
#include "t.h"

typedef struct run {
    char out[1 << 18];
    size_t n;
    bool matched;
} run;

static stop_matcher *mk(const char *const *stops, int n)
{
    static stop_matcher m;
    kl_err err = {0};
    T_EQ(stop_init(&m, stops, n, &err), 0);
    return &m;
}

/* Feeds one piece, appends what is emitted, returns the count emitted. */
static size_t feed(stop_matcher *m, run *r, const char *piece)
{
    char emit[STOP_EMIT_CAP(64)];
    size_t len = strlen(piece);
    T_ASSERT(len <= 64);
    bool matched = false;
    size_t k = stop_feed(m, piece, len, emit, sizeof emit, &matched);
    T_ASSERT(k <= len + STOP_MAX_LEN);
    memcpy(r->out + r->n, emit, k);
    r->n += k;
    r->out[r->n] = 0;
    r->matched = matched;
    return k;
}

static void flush(stop_matcher *m, run *r)
{
    char emit[STOP_MAX_LEN];
    size_t k = stop_flush(m, emit, sizeof emit);
    memcpy(r->out + r->n, emit, k);
    r->n += k;
    r->out[r->n] = 0;
}

TEST(engine_stop_no_stops_passes_through)
{
    stop_matcher *m = mk(NULL, 0);
    static run r;
    T_EQ(feed(m, &r, "hello "), 6);
    T_EQ(feed(m, &r, "world"), 5);
    flush(m, &r);
    T_STREQ(r.out, "hello world");
    T_ASSERT(!r.matched);
}

TEST(engine_stop_whole_and_split)
{
    const char *stops[] = {"STOP"};
    stop_matcher *m = mk(stops, 1);
    static run r;
    T_EQ(feed(m, &r, "Hello STOP world"), 6);
    T_ASSERT(r.matched);
    T_STREQ(r.out, "Hello ");
    T_EQ(m->which, 0);
    T_EQ(feed(m, &r, "more"), 0); /* sticky */
    T_ASSERT(r.matched);
    flush(m, &r);
    T_STREQ(r.out, "Hello ");

    m = mk(stops, 1);
    memset(&r, 0, sizeof r);
    T_EQ(feed(m, &r, "Hel"), 3);
    T_EQ(feed(m, &r, "lo S"), 3); /* "S" held back */
    T_STREQ(r.out, "Hello ");
    T_EQ(feed(m, &r, "TO"), 0);
    T_ASSERT(!r.matched);
    T_EQ(feed(m, &r, "P!"), 0);
    T_ASSERT(r.matched);
    T_STREQ(r.out, "Hello ");
}

TEST(engine_stop_false_start_is_released)
{
    const char *stops[] = {"abc"};
    stop_matcher *m = mk(stops, 1);
    static run r;
    T_EQ(feed(m, &r, "xab"), 1);
    T_EQ(feed(m, &r, "x"), 3);
    T_STREQ(r.out, "xabx");
    T_EQ(feed(m, &r, "a"), 0);
    T_EQ(feed(m, &r, "ab"), 1); /* "aab": the first a can go, "ab" may still be "abc" */
    T_STREQ(r.out, "xabxa");
    flush(m, &r); /* end of sequence: the held "ab" is text after all */
    T_STREQ(r.out, "xabxaab");
    T_ASSERT(!r.matched);
}

TEST(engine_stop_overlapping_prefixes)
{
    const char *s1[] = {"aab"};
    stop_matcher *m = mk(s1, 1);
    static run r;
    const char *bytes[] = {"a", "a", "a", "b", "c"};
    for (int i = 0; i < 5; i++)
        feed(m, &r, bytes[i]);
    T_ASSERT(r.matched);
    T_STREQ(r.out, "a"); /* "aaab": the match is the last three */

    const char *s2[] = {"ab", "aab"}; /* both complete at the same byte: the longer wins */
    m = mk(s2, 2);
    memset(&r, 0, sizeof r);
    feed(m, &r, "xa");
    feed(m, &r, "ab");
    T_ASSERT(r.matched);
    T_STREQ(r.out, "x");
    T_EQ(m->which, 1);

    const char *s3[] = {"bcd", "abcde"}; /* "bcd" completes first */
    m = mk(s3, 2);
    memset(&r, 0, sizeof r);
    feed(m, &r, "zabc");
    T_STREQ(r.out, "z");
    feed(m, &r, "de");
    T_ASSERT(r.matched);
    T_STREQ(r.out, "za");
    T_EQ(m->which, 0);

    const char *s4[] = {"abab"}; /* KMP fallback: "ababab" ... */
    m = mk(s4, 1);
    memset(&r, 0, sizeof r);
    feed(m, &r, "aba");
    feed(m, &r, "cabab");
    T_ASSERT(r.matched);
    T_STREQ(r.out, "abac");
}

TEST(engine_stop_utf8_split_mid_character)
{
    const char *stops[] = {"\xe3\x80\x82", "\xf0\x9f\x98\x80!"}; /* "。" and "😀!" */
    stop_matcher *m = mk(stops, 2);
    static run r;
    const char *text = "h\xc3\xa9llo \xf0\x9f\x98\x80 w\xc3\xb6rld\xe3\x80\x82tail";
    char one[2] = {0};
    for (size_t i = 0; text[i] && !r.matched; i++) {
        one[0] = text[i];
        feed(m, &r, one);
    }
    T_ASSERT(r.matched);
    T_STREQ(r.out, "h\xc3\xa9llo \xf0\x9f\x98\x80 w\xc3\xb6rld");
    T_EQ(m->which, 0);

    /* the emoji without "!" is not a stop: it is released whole, never half */
    m = mk(stops, 2);
    memset(&r, 0, sizeof r);
    feed(m, &r, "a\xf0\x9f");
    T_STREQ(r.out, "a");
    feed(m, &r, "\x98\x80");
    T_STREQ(r.out, "a");
    feed(m, &r, "?");
    T_STREQ(r.out, "a\xf0\x9f\x98\x80?");
    T_ASSERT(!r.matched);
}

TEST(engine_stop_flush_and_reuse)
{
    const char *stops[] = {"</s>"};
    stop_matcher *m = mk(stops, 1);
    static run r;
    T_EQ(feed(m, &r, "abc</"), 3);
    flush(m, &r);
    T_STREQ(r.out, "abc</");
    flush(m, &r); /* twice is harmless */
    T_STREQ(r.out, "abc</");
    /* after a flush the stream starts afresh: "s>" alone is not a match */
    T_EQ(feed(m, &r, "s>"), 2);
    T_ASSERT(!r.matched);
}

TEST(engine_stop_init_rejects_bad_lists)
{
    stop_matcher m;
    kl_err err = {0};
    const char *nine[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    T_EQ(stop_init(&m, nine, 9, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "at most");
    const char *empty[] = {"x", ""};
    T_EQ(stop_init(&m, empty, 2, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "stop string 1 is empty");
    static char longs[STOP_MAX_LEN + 2];
    memset(longs, 'q', STOP_MAX_LEN + 1);
    const char *lp[] = {longs};
    T_EQ(stop_init(&m, lp, 1, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "at most 256");
    /* after an error the matcher passes text through */
    char emit[STOP_EMIT_CAP(3)];
    bool matched = true;
    T_EQ(stop_feed(&m, "qqq", 3, emit, sizeof emit, &matched), 3);
    T_ASSERT(!matched);
    longs[STOP_MAX_LEN] = 0; /* exactly the limit is fine */
    T_EQ(stop_init(&m, lp, 1, &err), 0);
}

TEST(engine_stop_hostile_text_is_linear)
{
    static char stop[STOP_MAX_LEN + 1];
    memset(stop, 'a', STOP_MAX_LEN - 1);
    stop[STOP_MAX_LEN - 1] = 'b';
    const char *stops[8];
    for (int k = 0; k < 8; k++)
        stops[k] = stop;
    stop_matcher *m = mk(stops, 8);
    static run r;
    static char piece[8] = "aaaaaaa";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 30000; i++)
        feed(m, &r, piece); /* 210 KB of 'a' */
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("# 210 KB against 8 stops of 256 bytes: %.1f ms\n", ms);
    T_EQ(r.n, 30000 * 7 - (STOP_MAX_LEN - 1));
    T_EQ(m->n_held, STOP_MAX_LEN - 1);
    feed(m, &r, "b");
    T_ASSERT(r.matched);
    T_EQ(r.n, 30000 * 7 - (STOP_MAX_LEN - 1));
    T_ASSERT(ms < 2000.0);
}

/* ---- randomized against a brute-force reference ---- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* In text[0..n): the first end position at which some stop completes, longest on ties.
 * Returns the start of the match, or -1. */
static long ref_match(const char *text, size_t n, char stops[][8], int ns)
{
    for (size_t end = 1; end <= n; end++) {
        long best = -1;
        for (int k = 0; k < ns; k++) {
            size_t L = strlen(stops[k]);
            if (L <= end && !memcmp(text + end - L, stops[k], L)) {
                long st = (long)(end - L);
                if (best < 0 || st < best) best = st;
            }
        }
        if (best >= 0) return best;
    }
    return -1;
}

/* Longest suffix of text[0..n) that is a proper prefix of a stop. */
static size_t ref_hold(const char *text, size_t n, char stops[][8], int ns)
{
    size_t h = 0;
    for (int k = 0; k < ns; k++) {
        size_t L = strlen(stops[k]);
        for (size_t s = 1; s < L && s <= n; s++)
            if (!memcmp(text + n - s, stops[k], s) && s > h) h = s;
    }
    return h;
}

TEST(engine_stop_random_splits_match_reference)
{
    uint64_t seed = 2718;
    static run r;
    int matches = 0, holds = 0;
    for (int trial = 0; trial < 4000; trial++) {
        int ns = 1 + (int)(rnd(&seed) % 4);
        char stops[4][8];
        const char *sp[4];
        for (int k = 0; k < ns; k++) {
            int L = 1 + (int)(rnd(&seed) % 5);
            for (int i = 0; i < L; i++)
                stops[k][i] = (char)('a' + rnd(&seed) % 3);
            stops[k][L] = 0;
            sp[k] = stops[k];
        }
        char text[64];
        size_t n = 1 + rnd(&seed) % 40;
        for (size_t i = 0; i < n; i++)
            text[i] = (char)('a' + rnd(&seed) % 3);
        text[n] = 0;
        long want_start = ref_match(text, n, stops, ns);

        stop_matcher *m = mk(sp, ns);
        memset(&r, 0, sizeof r);
        size_t pos = 0;
        while (pos < n && !r.matched) {
            size_t k = 1 + rnd(&seed) % 6;
            if (k > n - pos) k = n - pos;
            char piece[8];
            memcpy(piece, text + pos, k);
            piece[k] = 0;
            feed(m, &r, piece);
            pos += k;
            if (!r.matched) { /* emitted so far = all but the minimal hold */
                size_t h = ref_hold(text, pos, stops, ns);
                T_EQ(r.n, pos - h);
                T_MEMEQ(r.out, text, r.n);
                holds += h > 0;
            }
        }
        flush(m, &r);
        if (want_start >= 0) {
            T_ASSERT(r.matched);
            T_EQ(r.n, want_start);
            matches++;
        } else {
            T_ASSERT(!r.matched);
            T_EQ(r.n, n);
        }
        T_MEMEQ(r.out, text, r.n);
    }
    T_ASSERT(matches > 500 && holds > 500); /* both paths were exercised */
}
