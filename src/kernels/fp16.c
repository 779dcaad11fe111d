/* kernels/fp16.c: IEEE half and bfloat16 conversions, scalar, bit-exact (round to nearest
 * even, like F16C's vcvtps2ph with rounding mode 0, which llama.cpp uses on x86). */
#include <string.h>

#include "kernels/kernels.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Returns the float value of half h (subnormals, infinities and NaNs included). */
float kl_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return f32_from_bits(sign | 0x7f800000 | (m << 13));
    if (e == 0) {
        if (m == 0) return f32_from_bits(sign);
        float v = (float)m * (1.0f / 16777216.0f); /* m * 2^-24, exact */
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

/* Returns f rounded to the nearest half (ties to even); overflow gives infinity, NaN a
 * quiet NaN. */
uint16_t kl_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffff;
    if (x > 0x7f800000) return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff);
    uint32_t e = x >> 23;
    if (e > 142) return sign | 0x7c00; /* >= 2^16, or infinity */
    uint32_t mant = (x & 0x7fffff) | 0x800000;
    if (e < 113) { /* half subnormal (or zero): value / 2^-24 = mant * 2^(e - 126) */
        if (e == 0) return sign;
        uint32_t shift = 126 - e;
        if (shift > 25) return sign;
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t h = ((e - 112) << 10) | ((x >> 13) & 0x3ff), rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right */
    return sign | (uint16_t)h;
}

/* Returns the float whose top 16 bits are h. */
float kl_bf16_to_fp32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* Returns f rounded to the nearest bfloat16 (ties to even); NaN stays a quiet NaN. */
uint16_t kl_fp32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
