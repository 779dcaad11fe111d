/* model/pack.c: the weights repacked at load for the CPU's fastest matmul (kl_pack: panels of
 * 16 rows, see kernels/x86/avx512_packed.c). One mapping holds every packed matrix, on 2 MiB
 * pages where the kernel gives them: decoding streams all of it once per token, so TLB misses
 * and 4 KiB prefetch boundaries would cost bandwidth. The GGUF mapping stays for what is read
 * by row (the token embedding).
 *
 * The weights are held once: each matrix's file pages are given back as soon as it is packed
 * (in slices, so a large output matrix is not resident twice either). With a cache directory
 * the mapping is a file there (packcache.c): a restart maps it instead of packing, and
 * replicas on one host share one copy in the page cache. Without one (or when it cannot be
 * written), it is anonymous memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "base/log.h"
#include "model/internal.h"

#define PACK_SLICE ((size_t)32 << 20) /* source bytes packed before their pages are released */
#define CACHE_MIN  ((size_t)32 << 20) /* smaller models pack faster than a cache file is read */

/* Calls fn on every matmul weight of m. */
static void each_weight(model *m, void (*fn)(model_w *w, void *ctx), void *ctx)
{
    for (int l = 0; l < m->hp.n_layers; l++) {
        model_layer *ly = &m->layers[l];
        model_w *ws[] = {
            &ly->wq,      &ly->wk,     &ly->wv,     &ly->wo,      &ly->w_gate,
            &ly->w_up,    &ly->w_down, &ly->router, &ly->sh_gate, &ly->sh_up,
            &ly->sh_down, &ly->wq_a,   &ly->wq_b,   &ly->wkv_a}; /* wkv_b: model/mla.c reads it by
                                                                    views */
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->data) fn(ws[i], ctx); /* no gate without gated FFN, ... */
        for (int e = 0; ly->router.data && e < m->hp.n_expert; e++) {
            fn(&ly->exp_gate[e], ctx);
            fn(&ly->exp_up[e], ctx);
            fn(&ly->exp_down[e], ctx);
        }
    }
    if (m->output.data) fn(&m->output, ctx); /* an encoder has none */
}

static size_t packed_size(const model_w *w)
{
    return (kl_pack_bytes(w->type, w->rows, w->cols) + 63) & ~(size_t)63;
}

/* The layout: total bytes, and a hash of every packed weight's type, shape, size and place
 * in the file (what a cached payload must have been made from). */
typedef struct {
    size_t total;
    XXH3_state_t *h;
    const uint8_t *base; /* the lowest weight address, to hash offsets rather than addresses */
} layout;

static void lowest(model_w *w, void *ctx)
{
    layout *L = ctx;
    if (!L->base || (const uint8_t *)w->data < L->base) L->base = w->data;
}

static void add_size(model_w *w, void *ctx)
{
    layout *L = ctx;
    size_t n = packed_size(w);
    if (!n) return;
    int64_t rec[5] = {w->type, w->rows, w->cols, (int64_t)n,
                      (int64_t)((const uint8_t *)w->data - L->base)};
    XXH3_64bits_update(L->h, rec, sizeof rec);
    L->total += n;
}

typedef struct {
    kl_workers *wk;
    const gguf_file *f;
    uint8_t *at;
    bool fill; /* pack (else only point at the packed bytes already there) */
} pack_ctx;

/* Packs w in slices of whole panels, giving each slice's file pages back once packed. */
static void pack_one(model_w *w, void *ctx)
{
    pack_ctx *c = ctx;
    size_t n = packed_size(w);
    if (!n) return;
    w->packed = c->at;
    c->at += n;
    if (!c->fill) return;
    size_t row = kl_dtype_row_bytes(w->type, w->cols), panel = kl_pack_bytes(w->type, 16, w->cols);
    int64_t step = (int64_t)(PACK_SLICE / row) & ~(int64_t)15;
    if (step < 16) step = 16;
    for (int64_t r = 0; r < w->rows; r += step) {
        int64_t k = w->rows - r < step ? w->rows - r : step;
        const uint8_t *src = (const uint8_t *)w->data + (size_t)r * row;
        kl_pack(c->wk, w->type, src, k, w->cols, (uint8_t *)w->packed + (size_t)(r / 16) * panel);
        gguf_release(c->f, src, (size_t)k * row);
    }
}

int model_pack(model *m, const gguf_file *f, kl_err *err)
{
    layout L = {0, XXH3_createState(), NULL};
    if (!L.h) return kl_errf(err, KL_ENOMEM, "out of memory");
    XXH3_64bits_reset(L.h);
    each_weight(m, lowest, &L);
    each_weight(m, add_size, &L);
    uint64_t layout_hash = XXH3_64bits_digest(L.h);
    XXH3_freeState(L.h);
    if (!L.total) return 0;
    kl_workers *wk = kl_workers_create(m->opts.n_workers);
    pack_cache pc = {.fd = -1, .lock_fd = -1};
    void *p = NULL;
    bool cached = false, to_file = false;
    size_t min = m->opts.pack_cache_min ? m->opts.pack_cache_min : CACHE_MIN;
    if (m->opts.pack_cache_dir && L.total >= min) {
        cached = pack_cache_lookup(&pc, m->opts.pack_cache_dir, f, layout_hash, L.total, wk, &p);
        if (!cached) to_file = (p = pack_cache_create(&pc, L.total)) != NULL;
    }
    if (!p) {
        p = mmap(NULL, L.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            pack_cache_close(&pc);
            kl_workers_destroy(wk);
            return kl_errf(err, KL_ENOMEM,
                           "model: cannot allocate %zu MiB for the packed weights "
                           "(KILN_NO_REPACK=1 runs on the file's own layout)",
                           L.total >> 20);
        }
        madvise(p, L.total, MADV_HUGEPAGE);
    }
    pack_ctx c = {wk, f, p, !cached};
    each_weight(m, pack_one, &c);
    if (cached)
        kl_info("model: packed weights mapped from %s (%zu MiB)", pc.path, L.total >> 20);
    else if (to_file)
        pack_cache_commit(&pc, p, L.total, wk);
    else
        mprotect(p, L.total, PROT_READ);
    pack_cache_close(&pc);
    kl_workers_destroy(wk);
    m->packed = p;
    m->packed_bytes = L.total;
    m->packed_cached = cached;
    return 0;
}

void model_unpack(model *m)
{
    if (m->packed) munmap(m->packed, m->packed_bytes);
    m->packed = NULL;
}

bool model_pack_cache_default(char *out, size_t n)
{
    const char *v = getenv("KILN_PACK_CACHE"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    int w;
    if (v && *v)
        w = !strcmp(v, "0") || !strcmp(v, "off") ? -1 : snprintf(out, n, "%s", v);
    else if (xdg && *xdg)
        w = snprintf(out, n, "%s/kiln/packed", xdg);
    else if (home && *home)
        w = snprintf(out, n, "%s/.cache/kiln/packed", home);
    else
        w = -1;
    return w > 0 && (size_t)w < n;
}
