/* model/pack.c: the weights repacked at load for the CPU's fastest matmul (kl_pack: panels of
 * 16 rows, see kernels/x86/avx512_packed.c). One anonymous mapping holds every packed matrix,
 * on 2 MiB pages where the kernel gives them: decoding streams all of it once per token, so
 * TLB misses and 4 KiB prefetch boundaries would cost bandwidth. The GGUF mapping stays for
 * what is read by row (the token embedding). Costs a second copy of the matmul weights. */
#include <sys/mman.h>

#include "model/internal.h"

/* Calls fn on every matmul weight of m. */
static void each_weight(model *m, void (*fn)(model_w *w, void *ctx), void *ctx)
{
    for (int l = 0; l < m->hp.n_layers; l++) {
        model_layer *ly = &m->layers[l];
        model_w *ws[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            fn(ws[i], ctx);
    }
    fn(&m->output, ctx);
}

static void add_size(model_w *w, void *ctx)
{
    *(size_t *)ctx += (kl_pack_bytes(w->type, w->rows, w->cols) + 63) & ~(size_t)63;
}

typedef struct {
    kl_workers *wk;
    uint8_t *at;
} pack_ctx;

static void pack_one(model_w *w, void *ctx)
{
    pack_ctx *c = ctx;
    size_t n = kl_pack_bytes(w->type, w->rows, w->cols);
    if (!n) return;
    kl_pack(c->wk, w->type, w->data, w->rows, w->cols, c->at);
    w->packed = c->at;
    c->at += (n + 63) & ~(size_t)63;
}

int model_pack(model *m, kl_err *err)
{
    size_t total = 0;
    each_weight(m, add_size, &total);
    if (!total) return 0;
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return kl_errf(err, KL_ENOMEM,
                       "model: cannot allocate %zu MiB for the packed weights "
                       "(KILN_NO_REPACK=1 runs on the file's own layout)",
                       total >> 20);
    madvise(p, total, MADV_HUGEPAGE);
    kl_workers *wk = kl_workers_create(m->opts.n_workers);
    pack_ctx c = {wk, p};
    each_weight(m, pack_one, &c);
    kl_workers_destroy(wk);
    mprotect(p, total, PROT_READ);
    m->packed = p;
    m->packed_bytes = total;
    return 0;
}

void model_unpack(model *m)
{
    if (m->packed) munmap(m->packed, m->packed_bytes);
    m->packed = NULL;
}
