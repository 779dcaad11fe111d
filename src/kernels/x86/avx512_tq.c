/* kernels/x86/avx512_tq.c: TQ1_0 and TQ2_0 against Q8_K activations, AVX-512 (the tile is
 * x86/avx512_iq.h; kernels/ref_tq.c has the layouts). Both decode to q + 1 in 0..2 (TQ2_0's
 * 2-bit fields as they stand, 0..3), unsigned with a bias of 1 that the tile takes out
 * through the activations' sums; the scale of every 16 elements is 1.
 *
 * TQ1_0: a chunk's 64 bytes are gathered from qs[0..31], qs[32..47] and qh (which byte holds
 * which element: ref_tq.c), multiplied by 3^n (the trit's position) mod 256 in bytes; the
 * top base-3 digit of the product is the trit. */
#include "kernels/x86/avx512_iq.h"

void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

typedef iq_block_st tq1_0_st;
typedef iq_block_st tq2_0_st;

static inline void tq1_0_begin(const kl_block_tq1_0 *w, iq_block_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

static inline void tq2_0_begin(const kl_block_tq2_0 *w, iq_block_st *st)
{
    st->s16 = _mm256_set1_epi16(1);
    st->d = _cvtsh_ss(w->d);
}

/* Byte arithmetic mod 256 (as x86/avx2_tq.c): times 3 is two byte adds, and the top base-3
 * digit of a byte y, (3 y) >> 8, is [y >= 86] + [y >= 171]. */
static inline __m512i times3(__m512i v)
{
    return _mm512_add_epi8(v, _mm512_add_epi8(v, v));
}
static inline __m512i top_trit(__m512i y)
{
    const __m512i one = _mm512_set1_epi8(1);
    __m512i t = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(y, _mm512_set1_epi8(86)), one);
    return _mm512_mask_add_epi8(t, _mm512_cmpge_epu8_mask(y, _mm512_set1_epi8((char)171)), t, one);
}

/* Chunk c's 64 bytes times 3^n, in quarters of 16 (a: qs[0..31], b: qs[32..47], h: qh[0..3]):
 *   0: a | 3 a;  1: 9 a | 27 a;  2: 81 a | b | 3 b;  3: 9 b | 27 b | 81 b | h, 3 h, 9 h, 27 h. */
static inline __m512i tq1_0_chunk(const kl_block_tq1_0 *w, const iq_block_st *st, int c)
{
    (void)st;
    __m512i y;
    if (c < 3) {
        __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w->qs));
        __m512i a3 = times3(a), a9 = times3(a3), a27 = times3(a9);
        if (c == 0) {
            y = _mm512_mask_blend_epi64(0xF0, a, a3);
        } else if (c == 1) {
            y = _mm512_mask_blend_epi64(0xF0, a9, a27);
        } else {
            __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(w->qs + 32)));
            y = _mm512_mask_blend_epi64(0xC0, _mm512_mask_blend_epi64(0x30, times3(a27), b),
                                        times3(b));
        }
    } else {
        __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(w->qs + 32)));
        __m512i b9 = times3(times3(b)), b27 = times3(b9);
        uint32_t qh;
        memcpy(&qh, w->qh, 4);
        __m512i h = _mm512_set1_epi32((int)qh), h3 = times3(h), h9 = times3(h3);
        y = _mm512_mask_blend_epi64(0x30, _mm512_mask_blend_epi64(0x0C, b9, b27), times3(b27));
        y = _mm512_mask_blend_epi32(0x1000, y, h);
        y = _mm512_mask_blend_epi32(0x2000, y, h3);
        y = _mm512_mask_blend_epi32(0x4000, y, h9);
        y = _mm512_mask_blend_epi32(0x8000, y, times3(h9));
    }
    return top_trit(y);
}

/* TQ2_0: chunk c is bits 4(c % 2) .. 4(c % 2) + 3 of qs[32 (c / 2) ..]: two fields of 32. */
static inline __m512i tq2_0_chunk(const kl_block_tq2_0 *w, const iq_block_st *st, int c)
{
    (void)st;
    __m256i x = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * (c / 2)));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 2), 1);
    v = _mm512_srli_epi16(v, (unsigned)(4 * (c % 2)));
    return _mm512_and_si512(v, _mm512_set1_epi8(3));
}

IQ_TILE(tq1_0, kl_block_tq1_0, 1)
IQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0)
IQ_TILE(tq2_0, kl_block_tq2_0, 1)
IQ_GEMM(kl_avx512_gemm_tq2_0, tq2_0)
