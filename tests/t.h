/* tests/t.h: Kiln's in-house test framework (STYLE.md 3.6). Tests register themselves:
 *
 *     TEST(gguf_rejects_v1) { ... T_EQ(rc, KL_EBADFILE); ... }
 *
 * tests/runner.c runs each in its own process with a timeout and prints TAP plus a closing
 * "N passed, N failed, N skipped" line. A failing assert prints both values and aborts. */
#ifndef KILN_TESTS_T_H
#define KILN_TESTS_T_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*t_fn)(void);
void t_register(const char *name, t_fn fn, const char *file);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void t_reg_##name(void)                                    \
    {                                                                                              \
        t_register(#name, test_##name, __FILE__);                                                  \
    }                                                                                              \
    static void test_##name(void)

void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((noreturn));
/* Ends the current test as skipped, with a reason. */
void t_skip(const char *fmt, ...) __attribute__((noreturn));

#define T_ASSERT(c)                                                                                \
    do {                                                                                           \
        if (!(c)) t_fail(__FILE__, __LINE__, "assertion failed: %s", #c);                          \
    } while (0)
#define T_EQ(a, b)                                                                                 \
    do {                                                                                           \
        int64_t t_a_ = (int64_t)(a), t_b_ = (int64_t)(b);                                          \
        if (t_a_ != t_b_)                                                                          \
            t_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, (long long)t_a_,         \
                   (long long)t_b_);                                                               \
    } while (0)
#define T_NEAR(a, b, tol)                                                                          \
    do {                                                                                           \
        double t_a_ = (double)(a), t_b_ = (double)(b);                                             \
        if (!(fabs(t_a_ - t_b_) <= (double)(tol)))                                                 \
            t_fail(__FILE__, __LINE__, "%s ~= %s (%.9g vs %.9g, tol %g)", #a, #b, t_a_, t_b_,      \
                   (double)(tol));                                                                 \
    } while (0)
#define T_STREQ(a, b)                                                                              \
    do {                                                                                           \
        const char *t_a_ = (a), *t_b_ = (b);                                                       \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_))                                                  \
            t_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b,                      \
                   t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)");                                \
    } while (0)
#define T_CONTAINS(hay, needle)                                                                    \
    do {                                                                                           \
        const char *t_h_ = (hay), *t_n_ = (needle);                                                \
        if (!t_h_ || !strstr(t_h_, t_n_))                                                          \
            t_fail(__FILE__, __LINE__, "\"%s\" contains \"%s\"", t_h_ ? t_h_ : "(null)", t_n_);    \
    } while (0)
#define T_MEMEQ(a, b, n)                                                                           \
    do {                                                                                           \
        if (memcmp((a), (b), (n))) t_fail(__FILE__, __LINE__, "memory differs: %s vs %s", #a, #b); \
    } while (0)

/* Path of a file under ../shared (or $KILN_SHARED), or skips the test when it is absent (with
 * CI set in the environment: fails it). */
const char *t_shared(const char *rel);
/* A fresh temporary directory for this test (removed by the runner afterwards). */
const char *t_tmpdir(void);
/* t_tmpdir()/name, in one of 4 rotating buffers (4 paths live at once). */
const char *t_path(const char *name);
/* Path of the kiln binary under test ($KILN_BIN, set by make); skips (CI: fails) without it. */
const char *t_kiln(void);
/* Runs a shell command; captures stdout and stderr (each NUL-terminated, caller frees).
 * Returns the exit status (0..255), or 128+signal. */
int t_run(const char *cmd, char **out, char **err);
#endif
