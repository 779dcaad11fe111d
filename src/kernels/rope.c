/* kernels/rope.c: rotary position embedding, with linear and YaRN context scaling (Peng et
 * al. 2023, "YaRN: Efficient Context Window Extension of Large Language Models", as
 * llama.cpp computes it). The angles of a position are computed once per token and applied
 * to each of its heads; scalar: it is a small part of a step. */
#include <math.h>

#include "kernels/kernels.h"

/* 1 for the pairs below the ramp (kept as trained), 0 past it (interpolated). */
static float yarn_ramp(const float corr[2], int i)
{
    float y = ((float)i - corr[0]) / fmaxf(0.001f, corr[1] - corr[0]);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

void kl_rope_angles(const kl_rope_cfg *c, int pos, float *cs)
{
    float theta = (float)pos;
    for (int i = 0; i < c->n_rot / 2; i++) {
        float extrap = c->factors ? theta / c->factors[i] : theta;
        float a = c->freq_scale * extrap, mscale = c->attn_factor;
        if (c->ext_factor != 0.0f) {
            float mix = yarn_ramp(c->corr, i) * c->ext_factor;
            a = a * (1 - mix) + extrap * mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / c->freq_scale);
        }
        cs[2 * i] = cosf(a) * mscale, cs[2 * i + 1] = sinf(a) * mscale;
        theta *= c->scale;
    }
}

void kl_rope(float *head, int n_rot, const float *cs, bool neox)
{
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float x0 = head[i0], x1 = head[i1];
        head[i0] = x0 * c - x1 * s;
        head[i1] = x0 * s + x1 * c;
    }
}

/* The pair whose angle turns `turns` times over n positions: n_rot * ln(n / (turns * 2 pi))
 * / (2 ln base). */
static float corr_dim(int n_rot, int n, float turns, float base)
{
    return (float)n_rot * logf((float)n / (turns * 2 * (float)M_PI)) / (2 * logf(base));
}

void kl_rope_yarn_corr(int n_rot, int n_ctx_orig, float base, float beta_fast, float beta_slow,
                       float corr[2])
{
    corr[0] = fmaxf(0.0f, floorf(corr_dim(n_rot, n_ctx_orig, beta_fast, base)));
    corr[1] = fminf((float)(n_rot - 1), ceilf(corr_dim(n_rot, n_ctx_orig, beta_slow, base)));
}
