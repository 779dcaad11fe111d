/* kernels/act.c: the activations and norms only some architectures use (GELU for Gemma and
 * StarCoder 2, LayerNorm for Command-R and StarCoder 2, soft-capping for Gemma 2), scalar:
 * they run once per element between matmuls. */
#include <math.h>

#include "kernels/kernels.h"

static float gelu(float x)
{
    const float k = 0.79788456080286535588f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * x * (1.0f + 0.044715f * x * x)));
}

void kl_geglu(float *out, const float *gate, const float *up, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = gelu(gate[i]) * up[i];
}

void kl_gelu_bias(float *x, const float *bias, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = gelu(bias ? x[i] + bias[i] : x[i]);
}

void kl_layernorm(float *out, const float *x, const float *weight, const float *bias, int n,
                  float eps)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)x[i];
    float mean = (float)(sum / n);
    double sum2 = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i] - mean;
        sum2 += (double)(v * v);
    }
    float scale = 1.0f / sqrtf((float)(sum2 / n) + eps);
    for (int i = 0; i < n; i++) {
        float y = (x[i] - mean) * scale * weight[i];
        out[i] = bias ? y + bias[i] : y;
    }
}

void kl_softcap(float *x, int n, float cap)
{
    float inv = 1.0f / cap;
    for (int i = 0; i < n; i++)
        x[i] = tanhf(x[i] * inv) * cap;
}
