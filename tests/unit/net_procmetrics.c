#include "t.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "net/procmetrics.h"

static double value(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    if (!p) t_fail(__FILE__, __LINE__, "%s missing in:\n%s", name, text);
    return strtod(p + strlen(key), NULL);
}

TEST(proc_metrics_read_this_process)
{
    char buf[4096];
    T_ASSERT(kl_proc_metrics(buf, sizeof buf) > 0);
    T_CONTAINS(buf, "# TYPE process_cpu_seconds_total counter\n");
    T_CONTAINS(buf, "# TYPE process_resident_memory_bytes gauge\n");
    T_CONTAINS(buf, "# HELP process_open_fds ");
    double fds = value(buf, "process_open_fds");
    int fd = open("/dev/null", O_RDONLY);
    T_ASSERT(fd >= 0);
    kl_proc_metrics(buf, sizeof buf);
    T_EQ(value(buf, "process_open_fds"), fds + 1);
    close(fd);
    T_ASSERT(value(buf, "process_max_fds") >= fds + 1);
    T_ASSERT(value(buf, "process_resident_memory_bytes") > 1e5);
    T_ASSERT(value(buf, "process_virtual_memory_bytes") >=
             value(buf, "process_resident_memory_bytes"));
    double start = value(buf, "process_start_time_seconds"), now = (double)time(NULL);
    T_ASSERT(start > now - 600 && start <= now + 1);
    /* CPU time grows with work done */
    double cpu0 = value(buf, "process_cpu_seconds_total");
    volatile double x = 0;
    for (clock_t c0 = clock(); clock() - c0 < CLOCKS_PER_SEC / 5;)
        x += 1;
    kl_proc_metrics(buf, sizeof buf);
    T_ASSERT(value(buf, "process_cpu_seconds_total") >= cpu0 + 0.1);
}

TEST(proc_metrics_small_buffer)
{
    char buf[40];
    size_t n = kl_proc_metrics(buf, sizeof buf);
    T_ASSERT(n < sizeof buf);
    T_EQ(strlen(buf), n);
}
