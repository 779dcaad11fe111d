/* tests/runner.c: runs every registered test in its own process with a timeout (so one crash
 * or hang fails one test), prints TAP, and ends with "N passed, N failed, N skipped".
 * Usage: kiln-tests [substring-filter ...]; T_TIMEOUT=seconds (default 120). */
#include "t.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MAX       4096
#define T_SKIP_EXIT 77

static struct {
    const char *name, *file;
    t_fn fn;
} tests[T_MAX];
static int n_tests;
static char tmpdir[1024];

void t_register(const char *name, t_fn fn, const char *file)
{
    if (n_tests == T_MAX) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    tests[n_tests].name = name;
    tests[n_tests].file = file;
    tests[n_tests].fn = fn;
    n_tests++;
}

void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "# %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
    abort();
}

void t_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "# skip: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
    _exit(T_SKIP_EXIT);
}

/* A test's prerequisite is missing: a skip, or with CI set (.ci/run) a failure, so a CI run
 * that could not test something does not pass. */
static void missing(const char *what)
{
    const char *ci = getenv("CI");
    if (ci && *ci) t_fail(__FILE__, __LINE__, "%s (CI is set: a failure, not a skip)", what);
    t_skip("%s", what);
}

const char *t_shared(const char *rel)
{
    static char path[PATH_MAX];
    const char *root = getenv("KILN_SHARED");
    snprintf(path, sizeof path, "%s/%s", root ? root : "../shared", rel);
    if (access(path, R_OK) != 0) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "%s not present", path);
        missing(what);
    }
    return path;
}

const char *t_tmpdir(void)
{
    return tmpdir;
}

const char *t_path(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 4096, "%s/%s", tmpdir, name);
    return b;
}

const char *t_kiln(void)
{
    const char *b = getenv("KILN_BIN");
    if (!b || access(b, X_OK) != 0) missing("KILN_BIN not set or not executable");
    return b;
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

int t_run(const char *cmd, char **out, char **err)
{
    char outp[PATH_MAX], errp[PATH_MAX], full[16384];
    snprintf(outp, sizeof outp, "%s/.out", tmpdir);
    snprintf(errp, sizeof errp, "%s/.err", tmpdir);
    snprintf(full, sizeof full, "(%s) >'%s' 2>'%s'", cmd, outp, errp);
    int st = system(full);
    FILE *f;
    if (out) {
        f = fopen(outp, "r");
        *out = f ? slurp_fd(fileno(f)) : strdup("");
        if (f) fclose(f);
    }
    if (err) {
        f = fopen(errp, "r");
        *err = f ? slurp_fd(fileno(f)) : strdup("");
        if (f) fclose(f);
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int matches(const char *name, int argc, char **argv)
{
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *to = getenv("T_TIMEOUT");
    int timeout = to ? atoi(to) : 120;
    int passed = 0, failed = 0, skipped = 0, n = 0;
    for (int i = 0; i < n_tests; i++)
        n += matches(tests[i].name, argc, argv);
    printf("TAP version 13\n1..%d\n", n);
    fflush(stdout);
    int idx = 0;
    for (int i = 0; i < n_tests; i++) {
        if (!matches(tests[i].name, argc, argv)) continue;
        idx++;
        snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-test-%d-%s", (int)getpid(), tests[i].name);
        mkdir(tmpdir, 0700);
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0); /* so a timeout kills the test's own children too */
            alarm((unsigned)timeout);
            tests[i].fn();
            fflush(stdout);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        kill(-pid, SIGKILL); /* reap servers a test left behind */
        char rm[PATH_MAX + 16];
        snprintf(rm, sizeof rm, "rm -rf '%s'", tmpdir);
        if (system(rm) != 0) fprintf(stderr, "# could not remove %s\n", tmpdir);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok %d - %s\n", idx, tests[i].name);
            passed++;
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP_EXIT) {
            printf("ok %d - %s # SKIP\n", idx, tests[i].name);
            skipped++;
        } else {
            if (WIFSIGNALED(st))
                printf("# %s: killed by signal %d%s\n", tests[i].name, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
            else
                printf("# %s: exit status %d\n", tests[i].name, WEXITSTATUS(st));
            printf("not ok %d - %s (%s)\n", idx, tests[i].name, tests[i].file);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
