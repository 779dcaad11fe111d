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
 * vpdpbusd of the raw bytes, exact in every int32 lane (|lane| <= 3 * 8 * 4 * 255 * 127 + 256 *
 * 32 * 127 < 2^31), so the lanes of the trits' own dot (the TQ tile's) and the same bits, without
 * the compares. tq1_0_bytes writes y and y' of the 8 chunks (layout: avx2_tq.h's tq1_0_chunks):
 * qs[32..47] as pairs (times 1 | 3, then times 3 each step), qh's 16 bytes as 16-bit products
 * truncated to bytes (vpmullw, vpmovwb) rather than byte adds and blends per power. */
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
    y[5] = _mm256_blend_epi32(z, times3(z), 0xF0); /* times 1 | 3 */
    y3[5] = times3(y[5]);
    y[6] = times3(y3[5]);
    y3[6] = times3(y[6]); /* times 27 | 81 */
    uint32_t qh;
    memcpy(&qh, w->qh, 4);
    __m256i hw = _mm256_cvtepu8_epi16(_mm_set1_epi32((int)qh));
    __m128i hv = _mm256_cvtepi16_epi8(_mm256_mullo_epi16(
        hw, _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27)));
    y[7] = _mm256_permute2x128_si256(y3[6], _mm256_castsi128_si256(hv), 0x21); /* 81 | qh */
    y3[7] = times3(y[7]);
}

/* One block's int32 lanes at one activation row: (3 s - s3) >> 8 less the activations' sums,
 * which s3 starts from (times 256). s and s3 in two chains each (even and odd chunks): a chain
 * of 8 vpdpbusd bounded the block by its latency (the same integers either way). */
static inline __attribute__((always_inline)) __m256i
tq1_0x_block(const kl_block_tq1_0 *w, const int8_t *a, const int16_t *bsum)
{
    __m256i y[8], y3[8], s[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i s3[2] = {
        _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsum), _mm256_set1_epi16(256)),
        _mm256_setzero_si256()};
    tq1_0_bytes(w, y, y3);
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
    {
        __m256i ac = _mm256_loadu_si256((const __m256i *)(a + 32 * c));
        s[c & 1] = tq32_acc(s[c & 1], y[c], ac);
        s3[c & 1] = tq32_acc(s3[c & 1], y3[c], ac);
    }
    __m256i s1 = _mm256_add_epi32(s[0], s[1]);
    return _mm256_srai_epi32(_mm256_sub_epi32(_mm256_add_epi32(s1, _mm256_add_epi32(s1, s1)),
                                              _mm256_add_epi32(s3[0], s3[1])),
                             8);
}

/* One weight row by one activation row, two blocks a step (the blocks' work interleaves where
 * a block alone left the out-of-order window idle); the float sums in block order, as the TQ
 * tile adds them. */
static inline __attribute__((always_inline)) void tq1_0x_tile(const kl_gemm *g, int64_t r, int b)
{
    int64_t n = g->cols, nblk = n / KL_QKK, j = 0;
    const kl_block_tq1_0 *w = (const kl_block_tq1_0 *)(g->W + (size_t)r * g->w_stride);
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    const int8_t *a = (const int8_t *)a0;
    const int16_t *bsums = kl_act_q8_k_bsums(a0, n);
    const float *ad = kl_act_q8_k_d(a0, n);
    __m256 acc = _mm256_setzero_ps();
    for (; j + 1 < nblk; j += 2) {
        __m256i i0 = tq1_0x_block(&w[j], a + j * KL_QKK, bsums + 16 * j);
        __m256i i1 = tq1_0x_block(&w[j + 1], a + (j + 1) * KL_QKK, bsums + 16 * (j + 1));
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_set1_ps(_cvtsh_ss(w[j].d) * ad[j]), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1),
                              _mm256_set1_ps(_cvtsh_ss(w[j + 1].d) * ad[j + 1]), acc);
    }
    if (j < nblk) {
        __m256i i0 = tq1_0x_block(&w[j], a + j * KL_QKK, bsums + 16 * j);
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_set1_ps(_cvtsh_ss(w[j].d) * ad[j]), acc);
    }
    g->y[(int64_t)b * g->ldy + r] = kl_avx2_hsum_ps(acc);
}

/* One activation row: the trit-free tile (1.5x the TQ tile, 2048 x 2048 streamed, one thread); two
 * or more: the decoded trits, once for the rows (the trit-free tile does twice the vpdpbusd: slower
 * from 4 rows on). The same int32 lanes either way: batch invariant. */
TQ_TILE(tq1_0, kl_block_tq1_0, tq32, 2)
static inline __attribute__((always_inline)) void tq1_0m_tile(const kl_gemm *g, int64_t r, int b,
                                                              int nb)
{
    if (nb == 1)
        tq1_0x_tile(g, r, b);
    else
        tq1_0_tile(g, r, b, nb);
}
TQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0m)
