/* base/clock.h: monotonic time. */
#ifndef KILN_BASE_CLOCK_H
#define KILN_BASE_CLOCK_H
#include <stdint.h>

/* Nanoseconds on the monotonic clock. */
int64_t kl_now_ns(void);
/* Seconds on the monotonic clock, as a double. */
double kl_now_s(void);
#endif
