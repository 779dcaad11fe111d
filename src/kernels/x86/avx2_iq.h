/* kernels/x86/avx2_iq.h: the AVX2 matmul tile shared by the 256-element IQ types
 * (x86/avx2_iq*.c; the TQ types have their own, x86/avx2_tq.c) against Q8_K activations; the AVX2
 * form of avx512_iq.h (see there for the plan). Differences: a type decodes chunks of 32 elements
 * (PFX_chunk32, c in 0..7), the pair sums are multiplied by their scale with vpmaddwd, a signed
 * chunk takes its signs onto the activations with vpsignb, and tiles are one weight row by up to
 * IQ2_BT activation rows (16 registers). Included by those files only. */
#ifndef KILN_KERNELS_X86_AVX2_IQ_H
#define KILN_KERNELS_X86_AVX2_IQ_H
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/avx2_reduce.h"
#include "kernels/x86/tile4_gemm.h"

#define IQ2_BT    4  /* activation rows per tile */
#define IQ2_CHUNK 16 /* weight rows kept in cache while the activation tiles pass over them */

/* Slots 0-7 of chunk c (elements 32c..32c+15) take group 2c's scale, slots 8-15 group 2c+1's. */
static inline __m256i iq2_chunk_scales(__m256i s16, int c)
{
    __m256i pair = _mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(c));
    return _mm256_shuffle_epi8(pair,
                               _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2,
                                                3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
}

/* Scales unpacked in registers: the scalar kl_iq_scales_* write 16 int16 that a 256-bit load
 * then reads back, a store-forwarding stall per block (most of a B=1 matmul's time). */
static inline __m256i iq2_odd16(__m256i s)
{
    return _mm256_or_si256(_mm256_slli_epi16(s, 1), _mm256_set1_epi16(1));
}
/* 8 scales in 32-bit lanes (any sign; the low 16 bits are kept), each used for two sixteens. */
static inline __m256i iq2_twice16(__m256i s32)
{
    __m256i lo = _mm256_and_si256(s32, _mm256_set1_epi32(0xFFFF));
    return _mm256_or_si256(lo, _mm256_slli_epi32(s32, 16));
}
/* Nibble ib of a 32-bit word in lane ib. */
static inline __m256i iq2_nibbles32(uint32_t v)
{
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)v),
                                              _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                            _mm256_set1_epi32(0xF));
}

/* Byte j % 8 of each group of 8 holding a sign byte: bit j set gives a negative byte, clear a
 * positive one, never 0 (vpsignb's operand): (b & bit) + 127 is 127 or 128..255, one operation
 * fewer than a compare and an or to +-1. */
static inline __m256i iq2_sign_of_bits(__m256i m)
{
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    return _mm256_add_epi8(_mm256_and_si256(m, bit), _mm256_set1_epi8(0x7F));
}
/* Sign bytes of IQ3_XXS, IQ2_XXS, IQ2_XS in registers: 32 bytes of 7 sign bits each (bit 7
 * clear) get bit 7 set to their parity (an even count of set bits in the byte: the row of
 * kl_iq_ksigns), through a parity table of each nibble. */
static inline __m256i iq2_ksigns32(__m256i f)
{
    const __m256i par =
        _mm256_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0, 0,
                         -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i lo = _mm256_shuffle_epi8(par, _mm256_and_si256(f, m4));
    __m256i hi = _mm256_shuffle_epi8(par, _mm256_and_si256(_mm256_srli_epi16(f, 4), m4));
    return _mm256_or_si256(f, _mm256_xor_si256(lo, hi));
}
/* 4 fields of 7 bits at bits 0, 7, 14, 21 of each 32-bit lane, one to a byte (lane i: sign
 * bytes 4i..4i+3): fields 2, 3 to the high 16 bits first, then field 1 and 3 up by one bit. */
static inline __m256i iq2_fields7(__m256i a)
{
    __m256i y =
        _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x3FFF)),
                        _mm256_and_si256(_mm256_slli_epi32(a, 2), _mm256_set1_epi32(0x3FFF0000)));
    return _mm256_or_si256(
        _mm256_and_si256(y, _mm256_set1_epi32(0x007F007F)),
        _mm256_and_si256(_mm256_slli_epi32(y, 1), _mm256_set1_epi32(0x7F007F00)));
}

/* 8 x 4 sign bytes (dword c: chunk c's) arranged where one in-lane vpshufb takes out a chunk's:
 * its bytes 0, 1 at bytes 2c, 2c + 1 of the low 128-bit lane, its bytes 2, 3 at the same places
 * of the high lane (the IQ3 types and IQ2's). */
static inline __m256i iq2_signs_by_chunk(__m256i sb)
{
    /* lane h: bytes 0, 1 of chunks 4h..4h+3, then their bytes 2, 3; qwords reordered after */
    __m256i sg = _mm256_shuffle_epi8(sb, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10,
                                                          11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2,
                                                          3, 6, 7, 10, 11, 14, 15));
    return _mm256_permute4x64_epi64(sg, _MM_SHUFFLE(3, 1, 2, 0));
}

/* Grid lookups by plain loads, not vpgather: on Zen 4 a gather of 8 dwords or 4 qwords costs
 * more than the loads and inserts (and llama.cpp's AVX2 dots load the same way). Measured again
 * on Zen 4 (bench-kernels, 8192 x 2048, one thread): vpgatherqq for IQ2_XXS 6.8 -> 4.0 GB/s,
 * vpgatherdd for IQ3_XXS 6.7 -> 4.8; Intel Skylake to Ice Lake with the GDS microcode
 * mitigation run gathers slower still. Also slower on Zen 4: vpbroadcastd + vpblendd in place
 * of the inserts (0.9x), unaligned 256-bit loads from a padded grid placed in their lane and
 * blended (0.9x), a 64K-entry table of index pairs for IQ3_XXS (512 KB, from L2: 0.8x). */
static inline __m256i iq2_lut64x4(const uint64_t *grid, unsigned i0, unsigned i1, unsigned i2,
                                  unsigned i3)
{
    return _mm256_setr_epi64x((long long)grid[i0], (long long)grid[i1], (long long)grid[i2],
                              (long long)grid[i3]);
}

/* The AVX2 accumulate of a chunk: its int16 pair sums p times their scales into int32 lanes. The
 * empty asm keeps GCC from regrouping the adds into stack spills. */
static inline __m256i iq2_acc_avx2(__m256i s, __m256i p, __m256i sc)
{
    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, sc));
    __asm__("" : "+x"(s));
    return s;
}

#define IQ2_TILE_ANY(PFX, BLOCK, MS) IQ2_TILE_DOT(PFX, BLOCK, MS, iq2_acc_avx2, IQ2_BT)
/* The tile with ACC(s, p, sc) for the accumulate and up to BT activation rows
 * (x86/avx512_iq1.c: AVX-512 VNNI's vpdpwssd, 8 rows in its 32 registers). */
#define IQ2_TILE_DOT(PFX, BLOCK, MS, ACC, BT) IQ2_TILE_GEN(PFX, BLOCK, MS, ACC, BT, 0)
/* The AVX2 tile with each block's PFX_begin run while the block before it is summed: a
 * decoder whose begin is a long chain (IQ2_XXS's signs, 17 vector operations) or stores what
 * its chunks read back (IQ3_S's indices; its begin then writes one of two buffers, as the
 * tile holds two blocks' states at once). */
#define IQ2_TILE_AHEAD(PFX, BLOCK, MS) IQ2_TILE_GEN(PFX, BLOCK, MS, iq2_acc_avx2, IQ2_BT, 1)
#define IQ2_TILE_GEN(PFX, BLOCK, MS, ACC, BT, AHEAD)                                               \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        int64_t n = g->cols, nblk = n / KL_QKK;                                                    \
        const BLOCK *w = (const BLOCK *)(g->W + (size_t)r * g->w_stride);                          \
        const int8_t *aq[BT];                                                                      \
        const float *ad[BT];                                                                       \
        __m256 acc[BT];                                                                            \
        q8k_rows(g, b, nb, aq, ad, NULL, acc);                                                     \
        PFX##_st next;                                                                             \
        memset(&next, 0, sizeof next); /* read only when AHEAD, after its begin */                 \
        if (AHEAD) PFX##_begin(&w[0], &next);                                                      \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            PFX##_st st;                                                                           \
            if (AHEAD) {                                                                           \
                st = next;                                                                         \
                PFX##_begin(&w[j + 1 < nblk ? j + 1 : j], &next);                                  \
            } else {                                                                               \
                PFX##_begin(&w[j], &st);                                                           \
            }                                                                                      \
            __m256i is[BT];                                                                        \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm256_setzero_si256();   \
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)                                    \
            {                                                                                      \
                __m256i sg = _mm256_setzero_si256();                                               \
                __m256i q = PFX##_chunk32(&w[j], &st, c, &sg), sc = PFX##_chunk_scales(&st, c);    \
                __m256i uq = (MS) ? q : _mm256_sign_epi8(q, q);                                    \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m256i a =                                                                    \
                        _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));        \
                    a = _mm256_sign_epi8(a, (MS) ? sg : q);                                        \
                    is[k] = ACC(is[k], _mm256_maddubs_epi16(uq, a), sc);                           \
                }                                                                                  \
            }                                                                                      \
            q8k_block_end(nb, acc, is, st.d, ad, j);                                               \
        }                                                                                          \
        q8k_store(g, r, b, nb, acc);                                                               \
    }

/* The scales of chunk c from the block's 16 in st->s16. */
#define IQ2_S16_SCALES(PFX)                                                                        \
    static inline __m256i PFX##_chunk_scales(const PFX##_st *st, int c)                            \
    {                                                                                              \
        return iq2_chunk_scales(st->s16, c);                                                       \
    }
/* PFX_chunk32 gives the signed w (|w| <= 127). */
#define IQ2_TILE(PFX, BLOCK) IQ2_S16_SCALES(PFX) IQ2_TILE_ANY(PFX, BLOCK, 0)

#define IQ2_GEMM(NAME, PFX) TILE4_GEMM(NAME, PFX, IQ2_CHUNK) /* IQ2_BT is 4 */
#endif
