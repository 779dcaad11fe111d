/* kernels/x86/tile4_gemm.h: the loop around a tile of one weight row by up to 4 activation rows
 * (PFX_tile(g, r, b, nb), for the AVX2 IQ tiles of x86/avx2_iq.h and the TQ tile of
 * x86/avx2_tq.h): weight rows [r0, r1) in chunks of CHUNK kept in cache while the activation
 * rows pass over them 4 at a time, each tile called with a constant height so that it unrolls. */
#ifndef KILN_KERNELS_X86_TILE4_GEMM_H
#define KILN_KERNELS_X86_TILE4_GEMM_H

#define TILE4_GEMM(NAME, PFX, CHUNK)                                                               \
    void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                            \
    {                                                                                              \
        for (int64_t rc = r0; rc < r1; rc += (CHUNK))                                              \
            for (int b = 0; b < g->B; b += 4) {                                                    \
                int nb = g->B - b < 4 ? g->B - b : 4;                                              \
                int64_t re = rc + (CHUNK) < r1 ? rc + (CHUNK) : r1;                                \
                for (int64_t r = rc; r < re; r++)                                                  \
                    switch (nb) {                                                                  \
                    case 4:                                                                        \
                        PFX##_tile(g, r, b, 4);                                                    \
                        break;                                                                     \
                    case 3:                                                                        \
                        PFX##_tile(g, r, b, 3);                                                    \
                        break;                                                                     \
                    case 2:                                                                        \
                        PFX##_tile(g, r, b, 2);                                                    \
                        break;                                                                     \
                    default:                                                                       \
                        PFX##_tile(g, r, b, 1);                                                    \
                        break;                                                                     \
                    }                                                                              \
            }                                                                                      \
    }

#endif
