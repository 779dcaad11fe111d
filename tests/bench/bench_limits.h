/* tests/bench/bench_limits.h: the machine's limits measured in the benchmark's own run. */
#ifndef KILN_TESTS_BENCH_LIMITS_H
#define KILN_TESTS_BENCH_LIMITS_H
#include "base/workers.h"

typedef struct bench_limits {
    double read_gbs;    /* memory read bandwidth, GB/s */
    double fp32_gflops; /* FP32 multiply-add peak, GFLOP/s (2 per fma) */
    double bf16_gflops; /* BF16 dot peak (vdpbf16ps), GFLOP/s; 0 without AVX512_BF16 */
    double int8_gops;   /* INT8 dot peak, GOP/s (2 per multiply-add) */
} bench_limits;

/* The read bandwidth with w's workers, each reading its slice of 512 MiB (best of 5). */
double bench_read_gbs(kl_workers *w);
/* All three with w's workers; a peak is 0 on a CPU without AVX2 and FMA. */
bench_limits bench_limits_measure(kl_workers *w);
#endif
