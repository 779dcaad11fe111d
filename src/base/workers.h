/* base/workers.h: the compute thread pool. workers_run() hands every worker (ith, nth) and
 * returns when all have finished: kernels split rows [ith*n/nth, (ith+1)*n/nth). The calling
 * thread is worker 0, so a pool of 1 runs inline with no thread. */
#ifndef KILN_BASE_WORKERS_H
#define KILN_BASE_WORKERS_H
#include <stdint.h>

typedef struct kl_workers kl_workers; /* opaque */
typedef void (*kl_work_fn)(void *ctx, int ith, int nth);

/* Starts n-1 threads (n >= 1). Returns NULL on failure. */
kl_workers *kl_workers_create(int n);
void kl_workers_destroy(kl_workers *w); /* NULL is fine */
int kl_workers_count(const kl_workers *w);
/* Runs fn(ctx, ith, nth) on every worker and waits. NULL w runs fn(ctx, 0, 1). */
void kl_workers_run(kl_workers *w, kl_work_fn fn, void *ctx);
/* Nanoseconds the workers have spent inside fn, summed over workers since creation (any
 * thread may read it): divided by wall time x count, the pool's busy fraction. 0 for NULL. */
uint64_t kl_workers_busy_ns(const kl_workers *w);
#endif
