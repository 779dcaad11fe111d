/* base/ckd.h: checked size arithmetic. Every size computed from untrusted input (a GGUF
 * header, an HTTP length) goes through these: almost every GGUF CVE is an unchecked
 * multiply or add on a count taken from the file. Each returns true on overflow. */
#ifndef KILN_BASE_CKD_H
#define KILN_BASE_CKD_H
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

static inline bool ckd_add_u64(uint64_t *r, uint64_t a, uint64_t b)
{
    return __builtin_add_overflow(a, b, r);
}
static inline bool ckd_mul_u64(uint64_t *r, uint64_t a, uint64_t b)
{
    return __builtin_mul_overflow(a, b, r);
}
/* Rounds x up to a multiple of align (a power of two); true on overflow. Never a macro:
 * GGML_PAD's wraparound near UINT64_MAX was itself a CVE. */
static inline bool ckd_pad_u64(uint64_t *r, uint64_t x, uint64_t align)
{
    uint64_t t;
    if (__builtin_add_overflow(x, align - 1, &t)) return true;
    *r = t & ~(align - 1);
    return false;
}
#endif
