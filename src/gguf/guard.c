/* gguf/guard.c: a file truncated on disk while it is mapped makes every read of a page past
 * its new end raise SIGBUS, which would kill the process (a server, with every request in
 * it). Each open file mapping is registered here. The SIGBUS handler puts a page of zeros in
 * place of the faulting page of a registered mapping, so the read completes (with zeros), and
 * counts the fault against its file: whoever reads the weights sees the file changed
 * (gguf_faults) and fails what used them (the engine fails the step's requests and refuses
 * new ones). A SIGBUS anywhere else keeps its default action: the process dies as it would
 * have.
 *
 * The handler only reads the registry (atomics, no locks) and calls mmap, a system call:
 * safe in a signal handler. */
#include "gguf/internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 64 /* mappings guarded at once (a split model has one per shard) */

static struct {
    _Atomic(int) used;       /* claimed (before base is published) */
    _Atomic(uintptr_t) base; /* 0: nothing to guard */
    _Atomic(size_t) size;
    _Atomic(uint64_t) faults;
} slots[GUARD_SLOTS];

static uintptr_t page_size;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    (void)sig, (void)uctx;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t base = atomic_load_explicit(&slots[i].base, memory_order_acquire);
        if (!base || a < base || a - base >= atomic_load(&slots[i].size)) continue;
        void *page = (void *)(a & ~(page_size - 1));
        if (mmap(page, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
            MAP_FAILED)
            break;
        atomic_fetch_add(&slots[i].faults, 1);
        return; /* the read is retried and sees zeros */
    }
    signal(SIGBUS, SIG_DFL); /* not ours: the fault repeats and ends the process as before */
}

static void install(void)
{
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

int gguf_guard_add(const void *base, size_t size)
{
    pthread_once(&installed, install);
    for (int i = 0; i < GUARD_SLOTS; i++) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&slots[i].used, &expect, 1)) continue;
        atomic_store(&slots[i].size, size);
        atomic_store(&slots[i].faults, 0);
        atomic_store_explicit(&slots[i].base, (uintptr_t)base, memory_order_release);
        return i;
    }
    return -1; /* all taken: this mapping is not guarded (a fault ends the process) */
}

void gguf_guard_remove(int slot)
{
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    atomic_store(&slots[slot].base, 0);
    atomic_store(&slots[slot].used, 0);
}

uint64_t gguf_guard_faults(int slot)
{
    return slot >= 0 && slot < GUARD_SLOTS ? atomic_load(&slots[slot].faults) : 0;
}
