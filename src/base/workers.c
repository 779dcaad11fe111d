/* base/workers.c: the compute pool. run() publishes (fn, ctx) under a new generation
 * number; workers spin on the generation for a short while (a forward pass calls run() many
 * times per layer, microseconds apart), then sleep on a futex. The caller is worker 0 and
 * spins until every other worker has bumped `done`. */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#include "base/workers.h"

#define SPIN_ITERS 4000 /* ~100-200 us of pause spinning before a worker sleeps */

typedef struct worker {
    struct kl_workers *pool;
    int ith;
    pthread_t thread;
} worker;

struct kl_workers {
    int n;
    kl_work_fn fn;
    void *ctx;
    _Atomic uint32_t gen; /* futex word: bumped once per run() and at shutdown */
    _Atomic int done;     /* workers finished with the current generation */
    _Atomic int sleepers; /* workers blocked in futex_wait */
    _Atomic bool stop;
    _Atomic uint64_t busy_ns; /* time inside fn, all workers */
    worker *w;                /* (n - 1) */
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

/* fn on one worker, its time added to the pool's busy time (two vDSO clock reads: ~40 ns
 * against the microseconds a run takes). */
static void run_timed(kl_workers *p, kl_work_fn fn, void *ctx, int ith, int nth)
{
    uint64_t t0 = (uint64_t)kl_now_ns();
    fn(ctx, ith, nth);
    atomic_fetch_add_explicit(&p->busy_ns, (uint64_t)kl_now_ns() - t0, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    kl_workers *p = me->pool;
    uint32_t seen = 0; /* gen at creation: a run() may come before this thread starts */
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        run_timed(p, p->fn, p->ctx, me->ith, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

kl_workers *kl_workers_create(int n)
{
    if (n < 1) n = 1;
    kl_workers *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    p->w = calloc((size_t)n, sizeof *p->w);
    if (!p->w) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        p->w[i].pool = p;
        p->w[i].ith = i;
        if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i])) {
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void kl_workers_destroy(kl_workers *p)
{
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers check */
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->w[i].thread, NULL);
    free(p->w);
    free(p);
}

int kl_workers_count(const kl_workers *p)
{
    return p ? p->n : 1;
}

uint64_t kl_workers_busy_ns(const kl_workers *p)
{
    return p ? atomic_load_explicit(&((kl_workers *)p)->busy_ns, memory_order_relaxed) : 0;
}

void kl_workers_run(kl_workers *p, kl_work_fn fn, void *ctx)
{
    if (!p) {
        fn(ctx, 0, 1);
        return;
    }
    if (p->n == 1) {
        run_timed(p, fn, ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers check */
    if (atomic_load(&p->sleepers)) futex_wake_all(&p->gen);
    run_timed(p, fn, ctx, 0, p->n);
    /* a worker that lost its core (more threads than cores) needs ours: yield now and then */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1;)
        if (++spins % 256 == 0)
            sched_yield();
        else
            cpu_relax();
}
