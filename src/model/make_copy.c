/* model/make_copy.c: `kiln model make --copy`: a llama model whose weights are set by hand so
 * that greedy decoding quotes its input, for measuring speculative decoding where drafts are
 * right (a random model quotes nothing, and no trained model that quotes fits this machine).
 * Only the first three layers do anything; the rest are zero, so the file has the size and
 * the cost per token of any model of its shape.
 *
 * The residual stream is four regions of W = dim/4 dims, one head's width per KV group:
 *   T  [0, W)    the token: a random vector e(v) per token id (its last dim a constant C)
 *   P  [W, 2W)   the previous token's e, written by layer 0
 *   P2 [2W, 3W)  the one before it, written by layer 1
 *   O  [3W, 4W)  the prediction, written by layer 2 and the only region the output reads.
 * Layers 0 and 1 attend to the position just before: the first head of each group has query
 * and key built from the constant C on the fast half of the RoPE pairs, set so that their
 * score cos((t - s - 1) theta_i) summed over the pairs peaks at s = t - 1; its value moves its
 * group's slice of T (layer 0) or P (layer 1) one region up. Layer 2 is the induction head: on
 * the slow half of the pairs (a RoPE base of 1e6 or more turns them less than a radian over a
 * few hundred tokens), its query holds e(x_t) and e(x_t-1) and its key at s e(x_s-1) and
 * e(x_s-2), a quarter head of each per group, so it attends where the last two tokens occurred
 * before and copies the token that followed into O. The output matrix's row v is e(v) over O:
 * the logits are the prediction's match with each token. A plain llama file: llama.cpp runs
 * it too. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/rng.h"
#include "model/internal.h"
#include "model/make.h"

#define COPY_C     16.0f /* the constant in T's last dim: the positional heads' input */
#define COPY_POS   13.0f /* their query and key length: score margin 0.74 x 169 / 8 (base 1e7) */
#define COPY_MATCH 16.0f /* the induction query's gain: a full match scores 4 x this */
#define COPY_OUT   0.1f  /* the output rows' gain */

int model_copy_check(const model_make_opts *o, kl_err *err)
{
    int hd = o->dim / o->heads;
    if (strcmp(o->arch, "llama") || o->experts || o->tied)
        return kl_errf(err, KL_EINVAL, "--copy makes an untied llama model without experts");
    if (o->layers < 3) return kl_errf(err, KL_EINVAL, "--copy needs 3 layers or more");
    if (!(o->rope_theta >= 1e6f))
        return kl_errf(err, KL_EINVAL,
                       "--copy needs --rope-theta 1000000 or more (1e7: long inputs)");
    if (o->dim != 4 * o->kv_heads * hd || hd % 8)
        return kl_errf(err, KL_EINVAL,
                       "--copy needs dim = 4 x kv-heads x head size (dim/heads), the head size a "
                       "multiple of 8 (e.g. --dim 2048 --heads 32 --kv-heads 8)");
    return 0;
}

/* e(v) over T (W floats): random, with the induction head's quarter-head slices and the rest
 * each of norm^2 equal to their length (so that matches score the same for every token), and
 * C last. */
static void token_vec(const model_make_opts *o, int64_t v, float *e)
{
    int hd = o->dim / o->heads, W = o->dim / 4, q = hd / 4;
    kl_rng g;
    kl_rng_seed(&g, o->seed ^ 0xc0b1c0b1ull ^ ((uint64_t)v * 0x9e3779b97f4a7c15ull));
    model_fill_normal(&g, e, W - 1, 1.0f);
    double rest = 0;
    for (int i = 0; i < W - 1; i++) {
        if (i % hd < q) continue;
        rest += (double)e[i] * (double)e[i];
    }
    for (int s = 0; s < o->kv_heads; s++) {
        double n = 0;
        for (int i = 0; i < q; i++)
            n += (double)e[s * hd + i] * (double)e[s * hd + i];
        for (int i = 0; i < q; i++)
            e[s * hd + i] *= (float)sqrt(q / n);
    }
    int n_rest = W - 1 - o->kv_heads * q;
    for (int i = 0; i < W - 1; i++)
        if (i % hd >= q) e[i] *= (float)sqrt(n_rest / rest);
    e[W - 1] = COPY_C;
}

/* The root mean square of the residual entering layer l (0..2): T, then T and P, then three
 * regions of the same norm. */
static float rms_at(const model_make_opts *o, int l)
{
    int W = o->dim / 4;
    return sqrtf((float)(l + 1) * ((float)(W - 1) + COPY_C * COPY_C) / (float)o->dim);
}

/* Row r of layer l's positional (previous-token) head query or key: nonzero on the first row of
 * each rotated pair i, in the constant's column. */
static void positional(const model_make_opts *o, int l, bool query, int64_t r, float *x)
{
    int hd = o->dim / o->heads, per = o->heads / o->kv_heads, d = (int)(r % hd);
    int64_t head = r / hd;
    if ((query && head % per) || d >= hd / 2) return; /* one head per group; fast pairs */
    int i = d / 2;
    float theta = powf(o->rope_theta, -2.0f * (float)i / (float)hd);
    float gain = COPY_POS * rms_at(o, l) / COPY_C; /* the norm divides C by the rms */
    if (query) /* rotated back one position: cos((t - s - 1) theta) */
        x[o->dim / 4 - 1] = gain * (d % 2 ? -sinf(theta) : cosf(theta));
    else if (d % 2 == 0)
        x[o->dim / 4 - 1] = gain;
}

static void layer_row(const model_make_opts *o, int l, const char *what, int64_t r, float *x)
{
    int hd = o->dim / o->heads, per = o->heads / o->kv_heads, W = o->dim / 4, q = hd / 4;
    float rms = rms_at(o, l);
    if (!strcmp(what, "attn_output.weight")) { /* r: a residual dim; columns: heads x hd */
        if (r < (int64_t)(l + 1) * W || r >= (int64_t)(l + 2) * W) return;
        int64_t g = (r % W) / hd, d = (r % W) % hd;
        x[g * per * hd + d] = 1.0f;
        return;
    }
    int64_t g = r / hd, d = r % hd;       /* (KV) head and dim of the row */
    if (!strcmp(what, "attn_v.weight")) { /* T (layers 0, 2) or P (1), unnormed */
        x[(l == 1 ? W : 0) + g * hd + d] = rms;
        return;
    }
    if (l < 2) {
        if (!strcmp(what, "attn_q.weight")) positional(o, l, true, r, x);
        if (!strcmp(what, "attn_k.weight")) positional(o, l, false, r, x);
        return;
    }
    if (d < hd / 2) return; /* the induction head uses the slow pairs */
    int64_t j = d - hd / 2; /* 0 .. hd/2: two quarter heads */
    if (!strcmp(what, "attn_q.weight")) {
        if ((r / hd) % per) return;
        g = r / hd / per;
        x[(j < q ? 0 : W) + g * hd + j % q] = COPY_MATCH * rms; /* e(x_t), e(x_t-1) */
    } else if (!strcmp(what, "attn_k.weight")) {
        x[(j < q ? W : 2 * W) + g * hd + j % q] = rms; /* e(x_s-1), e(x_s-2) */
    }
}

void model_copy_row(const model_make_opts *o, const char *name, int64_t r, int64_t cols, float *x)
{
    int W = o->dim / 4;
    memset(x, 0, sizeof *x * (size_t)cols);
    if (!strcmp(name, "token_embd.weight")) {
        token_vec(o, r, x);
        return;
    }
    if (!strcmp(name, "output.weight")) {
        token_vec(o, r, x + 3 * W);
        for (int i = 0; i < W; i++)
            x[3 * W + i] *= COPY_OUT;
        return;
    }
    int l, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) != 1 || !n || l > 2) return; /* zero */
    layer_row(o, l, name + n, r, x);
}
