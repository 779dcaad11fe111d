/* model/lora.c: LoRA adapters (model/lora.h): reading and checking an adapter file against
 * its base model, and applying the adapters of a batch in the forward pass.
 *
 * An adapter keeps, per adapted projection, A (rank, cols) and B transposed (rank, rows), both
 * F16 whatever the file held: half the bytes of F32 to read each step (the update is bound by
 * memory, like the base matmul), and one kernel for every file type. */
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "model/internal.h"

#define DEFAULT_MAX_RANK 64

/* One adapted projection. */
typedef struct lora_pair {
    uint16_t *A;  /* (rank, cols) */
    uint16_t *Bt; /* (rank, rows) */
    int rank;
    float scale;
} lora_pair;

struct model_lora {
    const model *m;
    int n_slots;      /* pairs' entries: n_layers * LORA_SLOTS + 1 (0 in a stack) */
    lora_pair *pairs; /* (n_layers * LORA_SLOTS + 1): layer l slot s at l * LORA_SLOTS + s, the
                         output head last; A NULL: not adapted. NULL in a stack */
    const model_lora **parts; /* (n_parts) a stack's adapters, borrowed; NULL: not a stack */
    int n_parts;
    model_lora_info info;
};

static const char *const slot_names[LORA_SLOTS] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down"};

static const model_w *slot_w(const model *m, int layer, int slot)
{
    if (layer < 0) return &m->output;
    const model_layer *ly = &m->layers[layer];
    const model_w *ws[LORA_SLOTS] = {&ly->wq,     &ly->wk,   &ly->wv,    &ly->wo,
                                     &ly->w_gate, &ly->w_up, &ly->w_down};
    return ws[slot];
}

/* The pair index of base tensor name in m, or -1 (with err set) when m has no such projection
 * an adapter can update. */
static int pair_index(const model *m, const gguf_file *f, const char *name, kl_err *err)
{
    int nl = m->hp.n_layers;
    if (!strcmp(name, "output.weight") && !m->hp.tied_output) return nl * LORA_SLOTS;
    if (!strcmp(name, "token_embd.weight"))
        return kl_errf(err, KL_EUNSUP,
                       "%s: LoRA tensor %s: adapting the token embeddings is not supported",
                       gguf_path(f), name),
               -1;
    int l, end = 0;
    char slot[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &l, slot, &end) == 2 && !name[end] && l >= 0 &&
        l < nl)
        for (int s = 0; s < LORA_SLOTS; s++) {
            if (strcmp(slot, slot_names[s]) || !slot_w(m, l, s)->data) continue;
            if (s == LORA_Q && (m->arch->quirks & ARCH_MLA)) /* model/mla.c has no slot */
                return kl_errf(err, KL_EUNSUP,
                               "%s: LoRA tensor %s: adapting a latent-attention (deepseek2) "
                               "query is not supported",
                               gguf_path(f), name),
                       -1;
            return l * LORA_SLOTS + s;
        }
    kl_errf(err, KL_EBADFILE,
            "%s: LoRA tensor %s: the base model has no such projection (maybe the wrong base "
            "model?)",
            gguf_path(f), name);
    return -1;
}

/* Dequantizes row r of t (n values) into dst, refusing values that are not finite or do not
 * fit F16. */
static int read_row(const gguf_file *f, const gguf_tensor *t, int64_t r, float *dst, int64_t n,
                    kl_err *err)
{
    size_t rb = kl_dtype_row_bytes(t->type, n);
    if (!rb || !kl_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, dst, n))
        return kl_errf(err, KL_EUNSUP, "%s: LoRA tensor %s: type %s cannot be read here",
                       gguf_path(f), t->name, kl_dtype_get(t->type)->name);
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(dst[i]) <= 65504.f))
            return kl_errf(err, KL_EBADFILE,
                           "%s: LoRA tensor %s: value %g at row %lld is not finite or out of F16 "
                           "range",
                           gguf_path(f), t->name, (double)dst[i], (long long)r);
    return 0;
}

/* Checks the pair (a, b) for base weight w and copies it into p. */
static int load_pair(const model *m, const gguf_file *f, const gguf_tensor *a, const gguf_tensor *b,
                     const model_w *w, float alpha, float scale, lora_pair *p, kl_err *err)
{
    int max_rank = m->opts.max_lora_rank;
    if (a->n_dims != 2 || b->n_dims != 2 || a->ne[0] != w->cols || b->ne[1] != w->rows)
        return kl_errf(err, KL_EBADFILE,
                       "%s: LoRA tensors %s [%lld, %lld] and %s [%lld, %lld] do not fit the base "
                       "weight [%lld, %lld] (maybe the wrong base model?)",
                       gguf_path(f), a->name, (long long)a->ne[0], (long long)a->ne[1], b->name,
                       (long long)b->ne[0], (long long)b->ne[1], (long long)w->cols,
                       (long long)w->rows);
    if (a->ne[1] != b->ne[0])
        return kl_errf(err, KL_EBADFILE, "%s: LoRA tensor %s has rank %lld but %s has %lld",
                       gguf_path(f), a->name, (long long)a->ne[1], b->name, (long long)b->ne[0]);
    if (a->ne[1] < 1 || a->ne[1] > max_rank)
        return kl_errf(err, KL_ERANGE,
                       "%s: LoRA tensor %s has rank %lld, over the limit of %d "
                       "(--max-lora-rank)",
                       gguf_path(f), a->name, (long long)a->ne[1], max_rank);
    int rank = (int)a->ne[1];
    int64_t cols = w->cols, rows = w->rows;
    p->rank = rank;
    p->scale = (alpha != 0.f ? alpha / (float)rank : 1.f) * scale;
    p->A = malloc(sizeof(uint16_t) * (size_t)rank * (size_t)cols);
    p->Bt = malloc(sizeof(uint16_t) * (size_t)rank * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)(cols > rank ? cols : rank));
    int rc =
        !p->A || !p->Bt || !row ? kl_errf(err, KL_ENOMEM, "%s: out of memory", gguf_path(f)) : 0;
    for (int r = 0; r < rank && !rc; r++)
        if (!(rc = read_row(f, a, r, row, cols, err)))
            kl_fp32_to_fp16_row(row, p->A + (size_t)r * (size_t)cols, (int)cols);
    for (int64_t o = 0; o < rows && !rc; o++)
        if (!(rc = read_row(f, b, o, row, rank, err)))
            for (int r = 0; r < rank; r++)
                p->Bt[(size_t)r * (size_t)rows + (size_t)o] = kl_fp32_to_fp16(row[r]);
    free(row);
    return rc;
}

/* The metadata llama.cpp checks: an adapter, of type lora, for the base's architecture. */
static int check_meta(const model *m, const gguf_file *f, float *alpha, kl_err *err)
{
    const char *type = "", *atype = "", *arch = "";
    const char *path = gguf_path(f);
    if (gguf_find_kv(f, "general.type") && gguf_get_str(f, "general.type", &type, err))
        return KL_EBADFILE;
    if (strcmp(type, "adapter"))
        return kl_errf(err, KL_EBADFILE,
                       "%s: not a LoRA adapter (general.type is '%s', expected 'adapter')", path,
                       type);
    if (gguf_find_kv(f, "adapter.type") && gguf_get_str(f, "adapter.type", &atype, err))
        return KL_EBADFILE;
    if (strcmp(atype, "lora"))
        return kl_errf(err, KL_EUNSUP, "%s: adapter.type is '%s', expected 'lora'", path, atype);
    if (gguf_find_kv(f, "general.architecture") &&
        gguf_get_str(f, "general.architecture", &arch, err))
        return KL_EBADFILE;
    if (strcmp(arch, m->hp.arch))
        return kl_errf(err, KL_EBADFILE,
                       "%s: an adapter for architecture '%s', but the base model is '%s'", path,
                       arch, m->hp.arch);
    *alpha = 0.f;
    int rc = gguf_get_f32(f, "adapter.lora.alpha", alpha, err);
    if (rc && rc != KL_ENOTFOUND) return rc;
    if (!isfinite(*alpha) || *alpha < 0)
        return kl_errf(err, KL_EBADFILE, "%s: adapter.lora.alpha %g is not a finite value >= 0",
                       path, (double)*alpha);
    if (m->arch->quirks & ARCH_FUSED)
        return kl_errf(err, KL_EUNSUP,
                       "%s: LoRA adapters on %s's fused projections are not supported yet", path,
                       m->hp.arch);
    return 0;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    *stem = n >= k ? n - k : 0;
    return n > k && !strcmp(s + n - k, suffix);
}

/* Binds every pair of f into a (a->pairs allocated by the caller). */
static int load_pairs(model_lora *a, const gguf_file *f, float alpha, float scale, kl_err *err)
{
    const model *m = a->m;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        size_t stem;
        if (ends_with(t->name, "_norm.weight", &stem)) continue; /* llama.cpp ignores them too */
        bool is_a = ends_with(t->name, ".lora_a", &stem);
        if (!is_a && !ends_with(t->name, ".lora_b", &stem))
            return kl_errf(err, KL_EBADFILE,
                           "%s: tensor %s is not a LoRA tensor (.lora_a or .lora_b)", gguf_path(f),
                           t->name);
        char base[GGUF_MAX_NAME], other[GGUF_MAX_NAME + 8];
        snprintf(base, sizeof base, "%.*s", (int)stem, t->name);
        snprintf(other, sizeof other, "%s.lora_%c", base, is_a ? 'b' : 'a');
        const gguf_tensor *o = gguf_find_tensor(f, other);
        if (!o)
            return kl_errf(err, KL_EBADFILE,
                           "%s: LoRA tensor %s has no %s (a pair is missing "
                           "one half)",
                           gguf_path(f), t->name, other);
        if (!is_a) continue; /* each pair is loaded once, from its A */
        int k = pair_index(m, f, base, err);
        if (k < 0) return KL_EBADFILE;
        int nl = m->hp.n_layers;
        const model_w *w =
            k == nl * LORA_SLOTS ? &m->output : slot_w(m, k / LORA_SLOTS, k % LORA_SLOTS);
        int rc = load_pair(m, f, t, o, w, alpha, scale, &a->pairs[k], err);
        if (rc) return rc;
        lora_pair *p = &a->pairs[k];
        a->info.n_pairs++;
        a->info.bytes += sizeof(uint16_t) * (size_t)p->rank * (size_t)(w->cols + w->rows);
        if (p->rank > a->info.rank) a->info.rank = p->rank;
    }
    if (!a->info.n_pairs)
        return kl_errf(err, KL_EBADFILE, "%s: the adapter has no LoRA tensors", gguf_path(f));
    return 0;
}

/* The adapter's identity: a hash of where each pair goes, its scale and its weights. */
static uint64_t identity(const model_lora *a)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) return (uint64_t)(uintptr_t)a; /* unique while it lives: never shares blocks */
    XXH3_64bits_reset(st);
    int n = a->m->hp.n_layers * LORA_SLOTS + 1;
    for (int k = 0; k < n; k++) {
        const lora_pair *p = &a->pairs[k];
        if (!p->A) continue;
        const model_w *w =
            k == n - 1 ? &a->m->output : slot_w(a->m, k / LORA_SLOTS, k % LORA_SLOTS);
        XXH3_64bits_update(st, &k, sizeof k);
        XXH3_64bits_update(st, &p->rank, sizeof p->rank);
        XXH3_64bits_update(st, &p->scale, sizeof p->scale);
        XXH3_64bits_update(st, p->A, sizeof(uint16_t) * (size_t)p->rank * (size_t)w->cols);
        XXH3_64bits_update(st, p->Bt, sizeof(uint16_t) * (size_t)p->rank * (size_t)w->rows);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h ? h : 1; /* never 0, the base model's */
}

int model_lora_load(model_lora **out, const model *m, const gguf_file *f, float scale, kl_err *err)
{
    *out = NULL;
    float alpha;
    int rc = check_meta(m, f, &alpha, err);
    if (rc) return rc;
    if (!isfinite(scale))
        return kl_errf(err, KL_EINVAL, "%s: LoRA scale %g is not finite", gguf_path(f),
                       (double)scale);
    model_lora *a = calloc(1, sizeof *a);
    if (a) a->pairs = calloc((size_t)m->hp.n_layers * LORA_SLOTS + 1, sizeof *a->pairs);
    if (!a || !a->pairs) {
        free(a);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", gguf_path(f));
    }
    a->m = m;
    a->n_slots = m->hp.n_layers * LORA_SLOTS + 1;
    a->info.alpha = alpha;
    a->info.scale = scale;
    if ((rc = load_pairs(a, f, alpha, scale, err))) {
        model_lora_free(a);
        return rc;
    }
    a->info.id = identity(a);
    *out = a;
    return 0;
}

int model_lora_stack(model_lora **out, model_lora *const *parts, int n, kl_err *err)
{
    *out = NULL;
    if (n < 1) return kl_errf(err, KL_EINVAL, "model: a stack of no LoRA adapters");
    for (int k = 0; k < n; k++)
        if (parts[k]->parts || parts[k]->m != parts[0]->m)
            return kl_errf(err, KL_EINVAL,
                           "model: LoRA adapter %d of a stack is itself a stack or for another "
                           "model",
                           k);
    model_lora *a = calloc(1, sizeof *a);
    if (a) a->parts = malloc(sizeof *a->parts * (size_t)n);
    if (!a || !a->parts) {
        free(a);
        return kl_errf(err, KL_ENOMEM, "model: out of memory");
    }
    a->m = parts[0]->m;
    a->n_parts = n;
    a->info.scale = 1.f;
    /* the identity: the parts' in order (updates are added in order: another order, other
       bits), each hashed with the hash of those before it as the seed */
    for (int k = 0; k < n; k++) {
        const model_lora_info *p = &parts[k]->info;
        a->parts[k] = parts[k];
        if (p->rank > a->info.rank) a->info.rank = p->rank;
        a->info.n_pairs += p->n_pairs;
        a->info.bytes += p->bytes;
        a->info.id = XXH3_64bits_withSeed(&p->id, sizeof p->id, a->info.id);
    }
    if (!a->info.id) a->info.id = 1; /* 0 is the base model's */
    *out = a;
    return 0;
}

void model_lora_free(model_lora *a)
{
    if (!a) return;
    for (int k = 0; k < a->n_slots; k++)
        free(a->pairs[k].A), free(a->pairs[k].Bt);
    free(a->pairs);
    free(a->parts);
    free(a);
}

const model_lora_info *model_lora_info_of(const model_lora *a)
{
    return &a->info;
}

const model *model_lora_model(const model_lora *a)
{
    return a->m;
}

/* ---- the forward pass ---- */

int model_lora_scratch_alloc(model *m, kl_err *err)
{
    lora_scratch *s = &m->lora;
    if (m->opts.max_lora_rank < 1) m->opts.max_lora_rank = DEFAULT_MAX_RANK;
    size_t n = (size_t)m->opts.max_batch_tokens, nl = (size_t)m->opts.max_logits;
    s->idx = malloc(sizeof(int32_t) * n);
    s->group_of = malloc(sizeof(int32_t) * n);
    s->out_idx = malloc(sizeof(int32_t) * nl);
    s->out_tok = malloc(sizeof(int32_t) * nl);
    s->groups = malloc(sizeof(lora_group) * n);
    s->out_groups = malloc(sizeof(lora_group) * nl);
    s->segs = malloc(sizeof(kl_lora_seg) * 3 * n);
    s->t = malloc(sizeof(float) * 3 * n * (size_t)m->opts.max_lora_rank);
    if (!s->idx || !s->group_of || !s->out_idx || !s->out_tok || !s->groups || !s->out_groups ||
        !s->segs || !s->t)
        return kl_errf(err, KL_ENOMEM, "model: cannot allocate LoRA scratch");
    return 0;
}

void model_lora_scratch_free(model *m)
{
    lora_scratch *s = &m->lora;
    free(s->idx), free(s->group_of), free(s->out_idx), free(s->out_tok), free(s->groups),
        free(s->out_groups);
    free(s->segs), free(s->t);
}

/* Groups rows [0, n) by adapter (row i is token token_of[i], or token i when token_of is
 * NULL) into groups and idx, stable: rows keep their order within a group; rows on the base
 * model are left out. Returns the number of groups. */
static int group_rows(lora_scratch *s, const model_batch *b, const int32_t *token_of, int n,
                      lora_group *groups, int32_t *idx)
{
    int ng = 0;
    for (int i = 0; i < n; i++) {
        const struct model_lora *a = b->lora[b->seq[token_of ? token_of[i] : i]];
        int g = 0;
        while (g < ng && groups[g].a != a)
            g++;
        if (a && g == ng) groups[ng++] = (lora_group){a, 0, 0};
        s->group_of[i] = a ? g : -1;
        if (a) groups[g].n++;
    }
    for (int g = 1; g < ng; g++)
        groups[g].start = groups[g - 1].start + groups[g - 1].n;
    for (int g = 0; g < ng; g++)
        groups[g].n = 0;
    for (int i = 0; i < n; i++) {
        int g = s->group_of[i];
        if (g >= 0) idx[groups[g].start + groups[g].n++] = i;
    }
    return ng;
}

void model_lora_plan(model *m, const model_batch *b)
{
    lora_scratch *s = &m->lora;
    s->n_groups = s->n_out_groups = 0;
    if (!b->lora) return;
    bool any = false;
    for (int k = 0; k < b->n_seqs && !any; k++)
        any = b->lora[k] != NULL;
    if (!any) return;
    s->n_groups = group_rows(s, b, NULL, b->n, s->groups, s->idx);
    int r = 0; /* logits rows: the tokens that want them, in order */
    for (int i = 0; i < b->n; i++)
        if (b->want_logits && b->want_logits[i]) s->out_tok[r++] = i;
    s->n_out_groups = group_rows(s, b, s->out_tok, r, s->out_groups, s->out_idx);
}

/* The d-th adapter group g's rows take (a stack's d-th part; a plain adapter is its own
 * 0th), or NULL past the last. */
static const model_lora *part_at(const model_lora *a, int d)
{
    if (!a->parts) return d == 0 ? a : NULL;
    return d < a->n_parts ? a->parts[d] : NULL;
}

/* The updates at depth d (one kl_lora_apply: a row in at most one segment per output).
 * Returns whether any group has an adapter at depth d + 1. */
static bool add_depth(model *m, kl_workers *w, int layer, const lora_slot *slots, int n,
                      const float *x, float *const *ys, int d)
{
    lora_scratch *s = &m->lora;
    bool head = layer < 0, more = false;
    int ng = head ? s->n_out_groups : s->n_groups;
    const lora_group *groups = head ? s->out_groups : s->groups;
    const int32_t *idx = head ? s->out_idx : s->idx;
    int nseg = 0;
    size_t t_at = 0;
    for (int g = 0; g < ng; g++) {
        const model_lora *a = part_at(groups[g].a, d);
        if (!a) continue;
        more |= part_at(groups[g].a, d + 1) != NULL;
        for (int k = 0; k < n; k++) {
            int pk = head ? m->hp.n_layers * LORA_SLOTS : layer * LORA_SLOTS + (int)slots[k];
            const lora_pair *p = &a->pairs[pk];
            if (!p->A) continue;
            const model_w *wt = head ? &m->output : slot_w(m, layer, slots[k]);
            s->segs[nseg++] = (kl_lora_seg){.A = p->A,
                                            .Bt = p->Bt,
                                            .rank = p->rank,
                                            .cols = wt->cols,
                                            .rows = wt->rows,
                                            .scale = p->scale,
                                            .x = x,
                                            .ldx = wt->cols,
                                            .y = ys[k],
                                            .ldy = wt->rows,
                                            .idx = idx + groups[g].start,
                                            .n = groups[g].n,
                                            .t = s->t + t_at};
            t_at += (size_t)groups[g].n * (size_t)p->rank;
        }
    }
    if (nseg) kl_lora_apply(w, &(kl_lora_batch){s->segs, nseg});
    return more;
}

void model_lora_add(model *m, kl_workers *w, int layer, const lora_slot *slots, int n,
                    const float *x, float *const *ys)
{
    int d = 0;
    while (add_depth(m, w, layer, slots, n, x, ys, d))
        d++;
}
