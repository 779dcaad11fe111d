/* kernels/x86/avx512vbmi_iq.h: what the AVX-512 VBMI IQ files (x86/avx512vbmi_iq.c: IQ2,
 * x86/avx512vbmi_iq3.c: IQ3) share besides x86/avx512_iq.h's tiles: the grids' codes and the
 * sign-parity matrix. Included by those files only. */
#ifndef KILN_KERNELS_X86_AVX512VBMI_IQ_H
#define KILN_KERNELS_X86_AVX512VBMI_IQ_H
#include <stdbool.h>

#include "kernels/x86/avx512_iq.h"

/* gf2p8affineqb matrix: output bit i is the parity of (x & row i), row i in byte 7 - i; bits
 * 0-6 pass, bit 7 is the parity of bits 0-6 (an even count of set bits in the byte): a 7-bit
 * sign field to its kl_iq_ksigns byte. */
#define KL_KSIGNS_AFFINE 0x010204081020407Fll

/* Fills the code planes of a grid of n entries of e bytes (4 or 8): each entry's code, 3 bits
 * per element for e = 4, 2 for e = 8 (the number of the byte's value in the sorted list of the
 * grid's values), lo the low and hi the high half; vals[x]: the value of field x & 7 (e = 4)
 * or x & 3 (e = 8). False if the grid has more values than a field holds. */
bool kl_avx512vbmi_grid_codes(const uint8_t *grid, int n, int e, uint8_t *lo, uint8_t *hi,
                              uint8_t vals[64]);

/* The plane layouts' quantizers (kernels/impl.h's KL_ACT_Q8_K_T4 and T8P; x86/avx512vbmi_iq.c). */
void kl_avx512vbmi_quant_act_q8_k_t4(const float *x, void *dst, int64_t n);
void kl_avx512vbmi_quant_act_q8_k_t8p(const float *x, void *dst, int64_t n);

/* A type's row as a plane dot: its activation layout, quantizer and gemm (no packed form: a
 * gemm_packed would have to take the plane layout too, as IQ2_XS's and IQ2_S's, set after this
 * by x86/avx512vbmi_iq2_packed.c, and the IQ3 types', by x86/avx512vbmi_iq3.c, do). */
static inline void iq_plane_ops(kl_type_ops *o, kl_dtype act, kl_row_fn quant, kl_gemm_fn gemm)
{
    o->act = act, o->quant_act = quant, o->gemm = gemm, o->gemm_packed = NULL;
}

/* A grid's code planes as a decoder reads them: through a pointer the compiler cannot see
 * through, so that it loads them where they are used (vpermt2b's memory operand) instead of
 * hoisting 16 or 32 registers of tables to each weight row's start and spilling them to the
 * stack there. */
#define in_loop(p) ((__typeof__(&(p)[0]))opaque_ptr((p)))
static inline const void *opaque_ptr(const void *p)
{
    __asm__("" : "+r"(p));
    return p;
}

static inline __m512i ld(const uint8_t *p)
{
    return _mm512_load_si512((const void *)p);
}

/* Plane bytes of the entries whose indices' low 8 bits are idx's bytes (bit 7 also in b7):
 * vpermt2b over 128-byte windows, then a blend. (Each vpermi2b writing its window's bytes over
 * the index bytes of the lanes in its mask, disjoint masks in place of blends, chains 2 to 8
 * vpermi2b a plane, each waiting for the last: one thread, alternated on Zen 5, lut512's blends
 * take IQ3_S from 5.3-5.5 to 4.3-4.6 ns a block at B=1, B=2 6.0-6.1 -> 5.2-5.3, B=4 8.5 ->
 * 7.7-7.8; IQ2_S's lut1024 as 8 such vpermi2b: 9 ns a block against 5.) */
static inline __m512i lut256(const uint8_t *t, __m512i idx, __mmask64 b7)
{
    __m512i lo = _mm512_permutex2var_epi8(ld(t), idx, ld(t + 64));
    __m512i hi = _mm512_permutex2var_epi8(ld(t + 128), idx, ld(t + 192));
    return _mm512_mask_blend_epi8(b7, lo, hi);
}

/* The same for 9-bit indices, bit 8 in b8. */
static inline __m512i lut512(const uint8_t *t, __m512i idx, __mmask64 b7, __mmask64 b8)
{
    return _mm512_mask_blend_epi8(b8, lut256(t, idx, b7), lut256(t + 256, idx, b7));
}

#endif
