/* The compute pool: every worker runs each job exactly once, with (ith, nth) covering
 * 0..n-1, across many back-to-back runs and after sleeping; what workers write with plain
 * stores is visible to the caller when run() returns (checked by TSan under BUILD=tsan). */
#include <stdatomic.h>
#include <time.h>

#include "base/workers.h"
#include "t.h"

typedef struct job {
    _Atomic int hits[8];
    _Atomic int64_t sum;
    int nth_seen[8]; /* plain writes, one slot per worker: run() must publish them */
    int64_t part[8];
} job;

static void work(void *ctx, int ith, int nth)
{
    job *j = ctx;
    atomic_fetch_add(&j->hits[ith], 1);
    j->nth_seen[ith] = nth;
    int64_t s = 0;
    for (int i = ith * 1000 / nth; i < (ith + 1) * 1000 / nth; i++)
        s += i;
    j->part[ith] = s;
    atomic_fetch_add(&j->sum, s);
}

TEST(workers_every_worker_once_per_run)
{
    for (int n = 1; n <= 4; n++) {
        kl_workers *w = kl_workers_create(n);
        T_ASSERT(w);
        T_EQ(kl_workers_count(w), n);
        for (int r = 0; r < 2000; r++) {
            job j = {0};
            kl_workers_run(w, work, &j);
            T_EQ(j.sum, 499500);
            int64_t parts = 0;
            for (int i = 0; i < n; i++) {
                T_EQ(j.hits[i], 1);
                T_EQ(j.nth_seen[i], n);
                parts += j.part[i];
            }
            T_EQ(parts, 499500);
            if (r == 1000) { /* let the workers fall asleep on the futex */
                struct timespec ts = {0, 50000000};
                nanosleep(&ts, NULL);
            }
        }
        kl_workers_destroy(w);
    }
}

TEST(workers_null_pool_runs_inline)
{
    job j = {0};
    kl_workers_run(NULL, work, &j);
    T_EQ(j.hits[0], 1);
    T_EQ(j.nth_seen[0], 1);
    T_EQ(j.sum, 499500);
    T_EQ(kl_workers_count(NULL), 1);
}

static void spin_5ms(void *ctx, int ith, int nth)
{
    (void)ctx, (void)ith, (void)nth;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 5000000L);
}

/* Busy time sums every worker's time inside fn: 3 workers x 4 runs x 5 ms >= 60 ms. */
TEST(workers_busy_time)
{
    kl_workers *w = kl_workers_create(3);
    T_ASSERT(w);
    T_EQ(kl_workers_busy_ns(w), 0);
    for (int i = 0; i < 4; i++)
        kl_workers_run(w, spin_5ms, NULL);
    uint64_t busy = kl_workers_busy_ns(w);
    T_ASSERT(busy >= 60000000u);
    T_ASSERT(busy < 60000000u * 20); /* bounded: not counting the wait between runs */
    kl_workers_destroy(w);
    T_EQ(kl_workers_busy_ns(NULL), 0);
}
