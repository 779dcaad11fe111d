/* Random blocks of a quantized type (tests/t_blocks.h). */
#include "t_blocks.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

uint8_t *t_random_blocks(kl_dtype t, size_t n, uint64_t seed)
{
    size_t bb = kl_dtype_get(t)->block_bytes;
    uint8_t *buf = malloc(bb * n);
    uint64_t rs = seed ^ (uint64_t)t;
    for (size_t i = 0; i < bb * n; i++)
        buf[i] = (uint8_t)(rnd(&rs) >> 32);
    for (size_t b = 0; b < n; b++) {
        uint8_t *p = buf + b * bb;
        uint16_t d = (uint16_t)((0x2000 + (rnd(&rs) & 0x0FFF)) | (rnd(&rs) & 0x8000));
        if (t == KL_IQ1_M) { /* the scale's top nibble: keep its exponent below 31 */
            p[bb - 1] &= (uint8_t)~0x40;
            continue;
        }
        size_t off = t == KL_TQ1_0 ? 52 : t == KL_TQ2_0 ? 64 : 0; /* TQ: d after the quants */
        memcpy(p + off, &d, 2);
    }
    return buf;
}
