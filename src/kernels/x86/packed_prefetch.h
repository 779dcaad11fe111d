/* kernels/x86/packed_prefetch.h: how far ahead the packed tiles (x86/avx2_packed*.c,
 * avx512_packed*.c, avx2_iq1_packed.c) and the TQ2_0 one-row tiles (avx2_tq.c, avx512_tq.c) ask
 * for their weights. Included by those files only.
 *
 * A thread's panels are one contiguous stream, yet at one activation row (generation) the
 * hardware prefetcher alone keeps too few lines in flight: the first tile over a panel asks
 * for the lines KL_PF_AHEAD past those it reads, a share of the record per step, in order
 * (the tiles that follow find the panel cached). Past the panel's end it reads into the next
 * panel; past the matrix's, a prefetch is a hint and never faults. Streamed 8192x2048, 1
 * thread, B=1, GB/s of the file's bytes (limit 42), without -> with: Q6_K 20 -> 40 (AVX-512),
 * 18 -> 40 (AVX2), Q8_0 26 -> 39 (AVX2); distance 4 KB 32-34, 8 KB 39-40, 16 KB 37-40. */
#ifndef KILN_KERNELS_X86_PACKED_PREFETCH_H
#define KILN_KERNELS_X86_PACKED_PREFETCH_H
#include <immintrin.h>
#include <stddef.h>

#define KL_PF_AHEAD 8192 /* bytes */

/* Asks for share i of n of the rb-byte record at p, KL_PF_AHEAD ahead: its 64-byte lines in
 * order, ceil(lines / n) a share (the last share may reach into the next record). */
static inline __attribute__((always_inline)) void kl_pf_share(const void *p, size_t rb, int i,
                                                              int n)
{
    const size_t per = ((rb + 63) / 64 + (size_t)n - 1) / (size_t)n;
    const char *q = (const char *)p + KL_PF_AHEAD + (size_t)i * per * 64;
    _Pragma("GCC unroll 8") for (size_t c = 0; c < per; c++) _mm_prefetch(q + c * 64, _MM_HINT_T0);
}
#endif
