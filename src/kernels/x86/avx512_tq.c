/* kernels/x86/avx512_tq.c: TQ1_0 and TQ2_0 for the AVX-512 table: the 256-bit tile of
 * x86/avx2_tq.h with AVX-512 VNNI's vpdpbusd, a chunk's products added into int32 lanes in one
 * instruction (AVX2 needs vpmaddubsw and an add). The block's activation sums come off in int32
 * (vpmaddwd of the 16 sums by 1); TQ1_0 at one activation row skips the trits (tq1_0x_tile).
 * Exact integers throughout; the lanes are not AVX2's, so the float sums may differ from the
 * AVX2 table's in the last bits, as other types' do. */
#include "kernels/x86/avx2_tq.h"

void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i tq32_acc(__m256i s, __m256i q, __m256i a)
{
    s = _mm256_dpbusd_epi32(s, q, a);
    __asm__("" : "+v"(s)); /* keeps the accumulation in order, as in avx2_tq.c */
    return s;
}
static inline __m256i tq32_join(__m256i s, __m256i t)
{
    return _mm256_add_epi32(s, t);
}
static inline __m256i tq32_i32(__m256i s, __m256i bsum)
{
    return _mm256_sub_epi32(s, _mm256_madd_epi16(bsum, _mm256_set1_epi16(1)));
}

TQ_TILE(tq2_0, kl_block_tq2_0, tq32, 2)
TQ_GEMM(kl_avx512_gemm_tq2_0, tq2_0)
/* TQ1_0 without its trits: a trit of byte position n is (3 y) >> 8 for y the byte times 3^n mod
 * 256, and 3 y - 256 ((3 y) >> 8) = 3 y mod 256 is the byte at position n + 1. So a chunk's dot
 * with activations a is (3 sum y a - sum y' a) / 256, y' the chunk's bytes one position on: two
 * vpdpbusd of the raw bytes (no saturation: |lane| <= 8 * 4 * 255 * 128 * 3 < 2^31), exact in
 * every int32 lane, so the lanes of the trits' own dot (the TQ tile's) and the same bits, without
 * the compares. tq1_0_bytes writes y and y' of the 8 chunks (layout: avx2_tq.h's tq1_0_chunks). */
static inline __attribute__((always_inline)) void tq1_0_bytes(const kl_block_tq1_0 *w, __m256i y[8],
                                                              __m256i y3[8])
{
    __m256i x = _mm256_loadu_si256((const __m256i *)w->qs);
    _Pragma("GCC unroll 5") for (int c = 0; c < 5; c++)
    {
        y[c] = x;
        x = times3(x);
        y3[c] = x;
    }
    __m256i z = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->qs + 32)));
    __m256i z3 = times3(z), z9 = times3(z3), z27 = times3(z9), z81 = times3(z27);
    y[5] = _mm256_blend_epi32(z, z3, 0xF0), y3[5] = _mm256_blend_epi32(z3, z9, 0xF0);
    y[6] = _mm256_blend_epi32(z9, z27, 0xF0), y3[6] = _mm256_blend_epi32(z27, z81, 0xF0);
    uint32_t qh;
    memcpy(&qh, w->qh, 4);
    __m128i h = _mm_set1_epi32((int)qh), h3 = times3_128(h), h9 = times3_128(h3);
    __m128i h27 = times3_128(h9), h81 = times3_128(h27);
    __m128i hv = _mm_blend_epi32(_mm_blend_epi32(_mm_blend_epi32(h, h3, 0x2), h9, 0x4), h27, 0x8);
    __m128i hv3 =
        _mm_blend_epi32(_mm_blend_epi32(_mm_blend_epi32(h3, h9, 0x2), h27, 0x4), h81, 0x8);
    y[7] = _mm256_set_m128i(hv, _mm256_castsi256_si128(z81));
    y3[7] = _mm256_set_m128i(hv3, _mm256_castsi256_si128(times3(z81)));
}

/* The TQ tile (avx2_tq.h) over tq1_0_bytes: sums s of y . a and s3 of y' . a per activation row
 * (two chains), the block's trit dot (3 s - s3) >> 8. */
static inline __attribute__((always_inline)) void tq1_0x_tile(const kl_gemm *g, int64_t r, int b,
                                                              int nb)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const kl_block_tq1_0 *w = (const kl_block_tq1_0 *)(g->W + (size_t)r * g->w_stride);
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    size_t as = g->a_stride;
    __m256 acc[TQ_BT];
    _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nblk; j++) {
        __m256i s[TQ_BT], s3[TQ_BT], y[8], y3[8];
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) s[k] = s3[k] = _mm256_setzero_si256();
        const int8_t *aj = (const int8_t *)a0 + j * KL_QKK;
        tq1_0_bytes(&w[j], y, y3);
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aj + (size_t)k * as + 32 * c));
                s[k] = tq32_acc(s[k], y[c], a);
                s3[k] = tq32_acc(s3[k], y3[c], a);
            }
        }
        float d = _cvtsh_ss(w[j].d);
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)
        {
            const uint8_t *ak = a0 + (size_t)k * as;
            __m256i bsum = _mm256_loadu_si256((const __m256i *)(kl_act_q8_k_bsums(ak, n) + 16 * j));
            __m256i t = _mm256_srai_epi32(
                _mm256_sub_epi32(_mm256_add_epi32(s[k], _mm256_add_epi32(s[k], s[k])), s3[k]), 8);
            __m256i i32 = tq32_i32(t, bsum);
            __m256 dd = _mm256_set1_ps(d * kl_act_q8_k_d(ak, n)[j]);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), dd, acc[k]);
        }
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] =
        kl_avx2_hsum_ps(acc[k]);
}

/* One activation row: the trit-free tile (1.15x, 2048 x 2048 streamed, one thread); two or more:
 * the decoded trits, once for the rows (the trit-free tile does twice the vpdpbusd: slower from 4
 * rows on). The same int32 lanes either way: batch invariant. */
TQ_TILE(tq1_0, kl_block_tq1_0, tq32, 2)
static inline __attribute__((always_inline)) void tq1_0m_tile(const kl_gemm *g, int64_t r, int b,
                                                              int nb)
{
    if (nb == 1)
        tq1_0x_tile(g, r, b, 1);
    else
        tq1_0_tile(g, r, b, nb);
}
TQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0m)
