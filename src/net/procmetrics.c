/* net/procmetrics.c: process_* metrics from /proc (Linux), as the Prometheus client
 * libraries compute them: CPU = (utime + stime) / CLK_TCK, start = boot time (btime of
 * /proc/stat) + starttime / CLK_TCK, resident = rss pages x page size. */
#include "net/procmetrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct proc_stat {
    unsigned long long utime, stime, starttime, vsize; /* ticks, ticks, ticks, bytes */
    long long rss;                                     /* pages */
} proc_stat;

/* Fields 14, 15, 22, 23, 24 of /proc/self/stat, counted after the ")" that ends the command
 * name (which may hold spaces and parentheses). */
static int read_stat(proc_stat *ps)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ") ": field 3 (state) onwards */
    int got = sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu %llu %lld",
                     &ps->utime, &ps->stime, &ps->starttime, &ps->vsize, &ps->rss);
    return got == 5 ? 0 : -1;
}

static long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    long long bt = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return bt;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void emit(out *o, const char *name, const char *type, const char *help, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void emit(out *o, const char *name, const char *type, const char *help, const char *fmt, ...)
{
    char val[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    int n = snprintf(o->buf + o->len, o->cap - o->len, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name,
                     help, name, type, name, val);
    if (n > 0 && (size_t)n < o->cap - o->len) o->len += (size_t)n;
    o->buf[o->len] = 0;
}

size_t kl_proc_metrics(char *buf, size_t cap)
{
    if (!cap) return 0;
    out o = {buf, cap, 0};
    buf[0] = 0;
    double tck = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    proc_stat ps;
    if (tck > 0 && !read_stat(&ps)) {
        emit(&o, "process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.", "%.2f",
             (double)(ps.utime + ps.stime) / tck);
        emit(&o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "%llu",
             ps.vsize);
        emit(&o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "%lld",
             ps.rss * (long long)page);
        long long bt = boot_time();
        if (bt >= 0)
            emit(&o, "process_start_time_seconds", "gauge",
                 "Start time of the process since unix epoch in seconds.", "%.2f",
                 (double)bt + (double)ps.starttime / tck);
    }
    long fds = open_fds();
    if (fds >= 0)
        emit(&o, "process_open_fds", "gauge", "Number of open file descriptors.", "%ld", fds);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl))
        emit(&o, "process_max_fds", "gauge", "Maximum number of open file descriptors.", "%llu",
             (unsigned long long)rl.rlim_cur);
    return o.len;
}
