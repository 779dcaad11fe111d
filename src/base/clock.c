#include "base/clock.h"

#include <time.h>

int64_t kl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double kl_now_s(void)
{
    return (double)kl_now_ns() * 1e-9;
}
