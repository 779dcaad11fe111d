/* kernels/x86/avx512_dpbusd.h: the packed int8 tiles' one multiply-accumulate
 * (x86/avx512_packed*.c). Included by those files only. */
#ifndef KILN_KERNELS_X86_AVX512_DPBUSD_H
#define KILN_KERNELS_X86_AVX512_DPBUSD_H
#include <immintrin.h>
#include <stdint.h>

/* acc + w (unsigned bytes, 16 lanes x 4) . the 4 signed bytes at p, the same for every lane.
 * The broadcast rides in vpdpbusd's memory operand ({1to16}): GCC emits a separate
 * vpbroadcastd for _mm512_set1_epi32, one more instruction per multiply-accumulate, which
 * cost 3-6% of the packed Q8_0 / Q4_0 tiles (B=1 to 16, 1 thread, in cache and streamed).
 * Same instruction and result otherwise. */
static inline __m512i kl_dpbusd_bcast(__m512i acc, __m512i w, const int8_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}
#endif
