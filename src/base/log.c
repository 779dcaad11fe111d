#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int threshold(void)
{
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("KILN_LOG");
        level = KL_LOG_INFO;
        if (e && !strcmp(e, "debug")) level = KL_LOG_DEBUG;
        if (e && !strcmp(e, "warn")) level = KL_LOG_WARN;
        if (e && !strcmp(e, "error")) level = KL_LOG_ERROR;
    }
    return level;
}

void kl_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < threshold()) return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one write per line, so concurrent lines do not interleave */
}
