/* kernels/rope.c: rotary position embedding. The angles of a position are computed once per
 * token and applied to each of its heads; scalar: it is a small part of a step. */
#include <math.h>

#include "kernels/kernels.h"

/* As llama.cpp: the angle of pair i is pos * scale^i, the power multiplied up in float i by
 * i, times the pair's factor. */
void kl_rope_angles(const kl_rope_cfg *c, int pos, float *cs)
{
    float theta = (float)pos;
    for (int i = 0; i < c->n_rot / 2; i++) {
        float a = theta * c->freq[i];
        cs[2 * i] = cosf(a), cs[2 * i + 1] = sinf(a);
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
