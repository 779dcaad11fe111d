/* model/moe.c: the FFN of a Mixture-of-Experts layer (Mixtral, Qwen2-MoE, Qwen3-MoE,
 * DeepSeek-V2/V3) over one batch. Each token's router logits (ffn_gate_inp) go through a
 * softmax (or a sigmoid: DeepSeek-V3); its n_expert_used most probable experts (plus
 * DeepSeek-V3's selection bias) run and their outputs are summed weighted by those
 * probabilities (renormalised to sum 1 where the model does, scaled for deepseek2), the
 * order and arithmetic of llama.cpp's build_moe_ffn. qwen2moe adds a shared expert for every
 * token, scaled by sigmoid(x . ffn_gate_inp_shexp); deepseek2 adds its shared experts as they
 * are.
 *
 * The cost is the experts' weights, so the batch's choices are grouped by expert: each chosen
 * expert's gate, up and down matrices are read once per step, over the rows of every token
 * that chose it (kl_matmul_runs: all experts in one pass of the workers per projection). A
 * row's result does not depend on the other rows, so a sequence gets the same bits alone or
 * in a batch. */
#include <math.h>
#include <string.h>

#include "model/internal.h"

/* Token i's choices: its router logits to probabilities in place (softmax, or a sigmoid
 * each: DeepSeek-V3), then the k experts of highest probability plus the layer's selection
 * bias, if any (the lower index first on a tie), highest first, weighted by their unbiased
 * probabilities: renormalised to sum 1 where the model says (hp.expert_norm), then scaled
 * (hp.expert_scale, deepseek2's routed scaling). */
static void route(const model *m, const model_layer *ly, int i)
{
    const model_scratch *s = &m->s;
    int E = m->hp.n_expert, k = m->hp.n_expert_used;
    float *p = s->moe_logits + (size_t)i * E, *wt = s->moe_wt + (size_t)i * k;
    const float *bias = ly->exp_probs_b;
    int32_t *sel = s->moe_sel + (size_t)i * k;
    if (m->hp.expert_gating == MODEL_GATING_SIGMOID)
        for (int e = 0; e < E; e++)
            p[e] = 1.f / (1.f + expf(-p[e]));
    else
        kl_softmax(p, E);
    float sum = 0.f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bv = 0.f;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int t = 0; t < j && !taken; t++)
                taken = sel[t] == e;
            float v = bias ? p[e] + bias[e] : p[e];
            if (!taken && (best < 0 || v > bv)) best = e, bv = v;
        }
        sel[j] = best, wt[j] = p[best];
        sum += wt[j];
    }
    for (int j = 0; j < k; j++) {
        if (m->hp.expert_norm) wt[j] /= sum;
        wt[j] *= m->hp.expert_scale;
    }
}

/* Groups the n tokens' choices by expert: moe_first[e] is expert e's first grouped row (in
 * token order), moe_slot the row of each choice, moe_x each row's input (the token's xb). */
static void group(model *m, int n)
{
    model_scratch *s = &m->s;
    int E = m->hp.n_expert, k = m->hp.n_expert_used, dim = m->hp.dim;
    int32_t *first = s->moe_first;
    memset(first, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int c = 0; c < n * k; c++)
        first[s->moe_sel[c] + 1]++;
    for (int e = 0; e < E; e++) {
        s->moe_load[e] += (uint64_t)first[e + 1];
        first[e + 1] += first[e];
    }
    for (int c = 0; c < n * k; c++) { /* first[e] runs to the end of e's rows... */
        int r = first[s->moe_sel[c]]++;
        s->moe_slot[c] = r;
        memcpy(s->moe_x + (size_t)r * dim, s->xb + (size_t)(c / k) * dim, sizeof(float) * dim);
    }
    for (int e = E; e > 0; e--) /* ...and back to its start */
        first[e] = first[e - 1];
    first[0] = 0;
}

/* Rows [r0, r1) of hb = silu(hb) * hb2, ff wide; split across the workers. */
typedef struct {
    float *hb;
    const float *hb2;
    int ff, rows;
} act_job;

static void act_part(void *ctx, int ith, int nth)
{
    const act_job *j = ctx;
    for (int r = (int)((int64_t)j->rows * ith / nth); r < (int64_t)j->rows * (ith + 1) / nth; r++)
        kl_swiglu(j->hb + (size_t)r * j->ff, j->hb + (size_t)r * j->ff, j->hb2 + (size_t)r * j->ff,
                  j->ff);
}

static void act(model *m, kl_workers *w, int rows, int ff)
{
    act_job j = {m->s.hb, m->s.hb2, ff, rows};
    if (w && rows >= 8)
        kl_workers_run(w, act_part, &j);
    else
        act_part(&j, 0, 1);
}

/* The chosen experts over their grouped rows: gate and up (one pass), SwiGLU, down (one
 * pass), into moe_y. */
static void experts(model *m, kl_workers *w, const model_layer *ly, int n)
{
    model_scratch *s = &m->s;
    int E = m->hp.n_expert, rows = n * m->hp.n_expert_used, ff = m->hp.ff_exp, dim = m->hp.dim;
    kl_mm_run *runs = s->moe_runs;
    int nr = 0;
    for (int e = 0; e < E; e++) {
        int r0 = s->moe_first[e], cnt = s->moe_first[e + 1] - r0;
        if (!cnt) continue;
        runs[nr++] = (kl_mm_run){model_mm_out(&ly->exp_gate[e], s->hb + (size_t)r0 * ff), r0, cnt};
        runs[nr++] = (kl_mm_run){model_mm_out(&ly->exp_up[e], s->hb2 + (size_t)r0 * ff), r0, cnt};
    }
    kl_matmul_runs(w, runs, nr, dim, s->moe_x, dim, rows, s->mm);
    act(m, w, rows, ff);
    nr = 0;
    for (int e = 0; e < E; e++) {
        int r0 = s->moe_first[e], cnt = s->moe_first[e + 1] - r0;
        if (cnt)
            runs[nr++] =
                (kl_mm_run){model_mm_out(&ly->exp_down[e], s->moe_y + (size_t)r0 * dim), r0, cnt};
    }
    kl_matmul_runs(w, runs, nr, ff, s->hb, ff, rows, s->mm);
}

/* The shared expert over xb (n rows) into moe_sh, and qwen2moe's gate's logit into moe_shg. */
static void shared_expert(model *m, kl_workers *w, const model_layer *ly, int n)
{
    model_scratch *s = &m->s;
    model_w g = {ly->sh_gate_inp, KL_F32, 1, m->hp.dim, NULL};
    if (ly->sh_gate_inp) model_proj(m, w, &g, s->xb, n, s->moe_shg);
    model_proj2(m, w, &ly->sh_gate, s->hb, &ly->sh_up, s->hb2, s->xb, n);
    act(m, w, n, m->hp.ff_shexp);
    model_proj(m, w, &ly->sh_down, s->hb, n, s->moe_sh);
}

/* Token i's output: its experts' outputs weighted, in the order chosen (llama.cpp's sum),
 * plus the gated shared expert. */
typedef struct {
    model *m;
    const model_layer *ly;
    bool shared;
    int n;
} sum_job;

static void sum_part(void *ctx, int ith, int nth)
{
    const sum_job *j = ctx;
    const model_scratch *s = &j->m->s;
    int k = j->m->hp.n_expert_used, dim = j->m->hp.dim;
    for (int i = (int)((int64_t)j->n * ith / nth); i < (int64_t)j->n * (ith + 1) / nth; i++) {
        float *xb = s->xb + (size_t)i * dim;
        for (int jj = 0; jj < k; jj++) {
            size_t c = (size_t)i * k + jj;
            const float *y = s->moe_y + (size_t)s->moe_slot[c] * dim;
            if (jj == 0)
                for (int d = 0; d < dim; d++)
                    xb[d] = y[d] * s->moe_wt[c];
            else
                kl_axpy_f32(xb, s->moe_wt[c], y, dim);
        }
        if (j->shared) {
            float g = j->ly->sh_gate_inp ? 1.f / (1.f + expf(-s->moe_shg[i])) : 1.f;
            kl_axpy_f32(xb, g, s->moe_sh + (size_t)i * dim, dim);
        }
    }
}

void model_moe_ffn(model *m, kl_workers *w, int layer, int n)
{
    const model_layer *ly = &m->layers[layer];
    bool shared = ly->sh_gate.data != NULL;
    model_proj(m, w, &ly->router, m->s.xb, n, m->s.moe_logits);
    for (int i = 0; i < n; i++)
        route(m, ly, i);
    group(m, n);
    if (shared) shared_expert(m, w, ly, n);
    experts(m, w, ly, n);
    sum_job j = {m, ly, shared, n};
    if (w && n >= 8)
        kl_workers_run(w, sum_part, &j);
    else
        sum_part(&j, 0, 1);
}
