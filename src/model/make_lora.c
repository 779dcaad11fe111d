/* model/make_lora.c: `kiln model make-lora`: a LoRA adapter with random weights for a base
 * model file, in llama.cpp's layout (general.type = adapter, adapter.type = lora,
 * adapter.lora.alpha; "<base tensor>.lora_a" of shape [cols, rank] and ".lora_b" of shape
 * [rank, rows] in GGUF's ne order), for tests and benchmarks. Each tensor is generated from
 * its own stream (seed and name), so the file depends only on the options. */
#include "model/make.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/internal.h"

void model_make_lora_defaults(model_make_lora_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 16;
    o->alpha = 16.f;
    o->targets = "q,k,v,o,gate,up,down";
    o->type = KL_F32;
    o->seed = 42;
    o->std = 0.02f;
}

static const struct {
    const char *target, *tensor; /* a layer's blk.N.<tensor>.weight, or the whole name */
} targets[] = {
    {"q", "attn_q"},      {"k", "attn_k"},  {"v", "attn_v"},      {"o", "attn_output"},
    {"gate", "ffn_gate"}, {"up", "ffn_up"}, {"down", "ffn_down"}, {"output", "output.weight"}};
#define N_TARGETS (int)(sizeof targets / sizeof targets[0])

/* Parses "q,k,..." into want[N_TARGETS]. */
static int parse_targets(const char *list, bool *want, kl_err *err)
{
    memset(want, 0, sizeof(bool) * N_TARGETS);
    int n = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int k = 0;
        while (k < N_TARGETS &&
               (strlen(targets[k].target) != len || strncmp(p, targets[k].target, len)))
            k++;
        if (k == N_TARGETS)
            return kl_errf(err, KL_EINVAL,
                           "unknown target '%.*s' (q, k, v, o, gate, up, down, output)", (int)len,
                           p);
        n += !want[k];
        want[k] = true;
        p += len + (p[len] == ',');
    }
    if (!n) return kl_errf(err, KL_EINVAL, "no targets");
    return 0;
}

typedef struct pair {
    char base[GGUF_MAX_NAME];
    int64_t cols, rows;
} pair;

/* The base tensors to adapt, in file order (layer by layer); returns their count, or -1. */
static int list_pairs(const gguf_file *b, const bool *want, pair *out, int cap)
{
    int n = 0;
    uint32_t layers = 0;
    const char *arch;
    char key[96];
    if (gguf_get_str(b, "general.architecture", &arch, NULL)) return -1;
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (gguf_get_u32(b, key, &layers, NULL) || layers > 4096) return -1;
    for (int l = -1; l < (int)layers; l++)
        for (int k = 0; k < N_TARGETS; k++) {
            bool head = !strcmp(targets[k].target, "output");
            if (!want[k] || head != (l < 0)) continue;
            char name[GGUF_MAX_NAME];
            if (head)
                snprintf(name, sizeof name, "%s", targets[k].tensor);
            else
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, targets[k].tensor);
            const gguf_tensor *t = gguf_find_tensor(b, name);
            if (!t || t->n_dims != 2 || n == cap) continue;
            out[n] = (pair){.cols = t->ne[0], .rows = t->ne[1]};
            snprintf(out[n].base, sizeof out[n].base, "%s", name);
            n++;
        }
    return n;
}

/* Writes rows x cols random values of type t for tensor name. */
static int write_random(gguf_writer *w, const model_make_lora_opts *o, const char *name,
                        int64_t rows, int64_t cols, float *x, uint8_t *q)
{
    kl_rng g;
    kl_rng_seed(&g, o->seed ^ model_hash_name(name));
    size_t rb = kl_dtype_row_bytes(o->type, cols);
    for (int64_t r = 0; r < rows; r++) {
        model_fill_normal(&g, x, cols, o->std);
        kl_quantize_row(o->type, x, q, cols);
        int rc = gguf_writer_write(w, q, rb);
        if (rc) return rc;
    }
    return 0;
}

static int check(const model_make_lora_opts *o, kl_err *err)
{
    if (!o->base_path) return kl_errf(err, KL_EINVAL, "--base FILE is required");
    if (o->rank < 1 || o->rank > 4096)
        return kl_errf(err, KL_EINVAL, "rank %d is out of range (1..4096)", o->rank);
    if (o->type != KL_F32 && o->type != KL_F16 && o->type != KL_BF16 && o->type != KL_Q8_0)
        return kl_errf(err, KL_EINVAL, "type must be f32, f16, bf16 or q8_0");
    if (!kl_dtype_row_bytes(o->type, o->rank))
        return kl_errf(err, KL_EINVAL,
                       "rank %d does not fit %s blocks (lora_b's rows are rank "
                       "long)",
                       o->rank, kl_dtype_get(o->type)->name);
    if (!(o->std > 0.f && o->std < 10.f) || !(o->alpha >= 0.f && o->alpha < 1e6f))
        return kl_errf(err, KL_EINVAL, "std must be positive and alpha >= 0");
    return 0;
}

int model_make_lora(const model_make_lora_opts *o, const char *out_path, kl_err *err)
{
    bool want[N_TARGETS];
    int rc = check(o, err);
    if (rc || (rc = parse_targets(o->targets, want, err))) return rc;
    gguf_file *b;
    if ((rc = gguf_open(&b, o->base_path, err))) return rc;
    const char *arch;
    int cap = 4096 * 7 + 1, n = -1;
    pair *ps = malloc(sizeof *ps * (size_t)cap);
    if (ps && !gguf_get_str(b, "general.architecture", &arch, NULL))
        n = list_pairs(b, want, ps, cap);
    if (n <= 0) {
        rc = kl_errf(err, n < 0 ? KL_EBADFILE : KL_EINVAL,
                     n < 0 ? "%s: not a model file Kiln can adapt"
                           : "%s: the base model has none of the targets",
                     o->base_path);
        goto out;
    }
    int64_t widest = o->rank;
    for (int i = 0; i < n; i++)
        widest = ps[i].cols > widest ? ps[i].cols : widest;
    float *x = malloc(sizeof(float) * (size_t)widest);
    uint8_t *q = malloc(sizeof(float) * (size_t)widest);
    gguf_writer *w = NULL;
    if (!x || !q) {
        rc = kl_errf(err, KL_ENOMEM, "out of memory");
    } else if (!(rc = gguf_writer_open(&w, out_path, err))) {
        gguf_writer_set_str(w, "general.architecture", arch);
        gguf_writer_set_str(w, "general.type", "adapter");
        gguf_writer_set_str(w, "general.name", "kiln-random-lora");
        gguf_writer_set_str(w, "adapter.type", "lora");
        gguf_writer_set_f32(w, "adapter.lora.alpha", o->alpha);
        char name[GGUF_MAX_NAME + 8];
        for (int i = 0; i < n; i++) {
            snprintf(name, sizeof name, "%s.lora_a", ps[i].base);
            gguf_writer_add_tensor(w, name, o->type, 2, (int64_t[]){ps[i].cols, o->rank});
            snprintf(name, sizeof name, "%s.lora_b", ps[i].base);
            gguf_writer_add_tensor(w, name, o->type, 2, (int64_t[]){o->rank, ps[i].rows});
        }
        gguf_writer_begin_data(w);
        for (int i = 0; i < n && !rc; i++) {
            snprintf(name, sizeof name, "%s.lora_a", ps[i].base);
            rc = write_random(w, o, name, o->rank, ps[i].cols, x, q);
            snprintf(name, sizeof name, "%s.lora_b", ps[i].base);
            if (!rc) rc = write_random(w, o, name, ps[i].rows, o->rank, x, q);
        }
        /* a write error sticks in the writer and is reported by finish */
        rc = gguf_writer_finish(w, err);
    }
    free(x);
    free(q);
out:
    free(ps);
    gguf_close(b);
    return rc;
}
