/* kernels/convert.c: whole-row F16 <-> F32 conversions (the KV cache's reads and writes and
 * the attention's F16 rounding), with an F16C path picked once from cpuid. The scalar loops
 * over kl_fp16_to_fp32 / kl_fp32_to_fp16 are the reference. */
#include <cpuid.h>
#include <stdbool.h>
#include <pthread.h>

#include "kernels/kernels.h"

/* F16C from cpuid leaf 1 (clang 14's __builtin_cpu_supports does not know "f16c"). */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

void kl_avx2_fp16_to_fp32_row(const uint16_t *src, float *dst, int n);
void kl_avx2_fp32_to_fp16_row(const float *src, uint16_t *dst, int n);

void kl_ref_fp16_to_fp32_row(const uint16_t *src, float *dst, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = kl_fp16_to_fp32(src[i]);
}

void kl_ref_fp32_to_fp16_row(const float *src, uint16_t *dst, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = kl_fp32_to_fp16(src[i]);
}

static void (*to32)(const uint16_t *, float *, int) = kl_ref_fp16_to_fp32_row;
static void (*to16)(const float *, uint16_t *, int) = kl_ref_fp32_to_fp16_row;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void pick(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && cpu_has_f16c()) {
        to32 = kl_avx2_fp16_to_fp32_row;
        to16 = kl_avx2_fp32_to_fp16_row;
    }
}

void kl_fp16_to_fp32_row(const uint16_t *src, float *dst, int n)
{
    pthread_once(&once, pick);
    to32(src, dst, n);
}

void kl_fp32_to_fp16_row(const float *src, uint16_t *dst, int n)
{
    pthread_once(&once, pick);
    to16(src, dst, n);
}
