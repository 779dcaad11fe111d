/* kernels/x86/avx512_tq.c: TQ1_0 and TQ2_0 for the AVX-512 table: the 256-bit tile of
 * x86/avx2_tq.h with AVX-512 VNNI's vpdpbusd, a chunk's products added into int32 lanes in one
 * instruction (AVX2 needs vpmaddubsw and an add). A block's int32 sums start from minus its
 * activation sums (vpmaddwd of the 16 sums by -1); TQ1_0 at one to three activation rows skips the
 * trits (tq1_0x_tile). Exact integers throughout; the lanes are not AVX2's, so the float sums may
 * differ from the AVX2 table's in the last bits, as other types' do. */
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/avx2_tq.h"
#include "kernels/x86/packed_prefetch.h"

void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i tq32_acc(__m256i s, __m256i q, __m256i a)
{
    s = _mm256_dpbusd_epi32(s, q, a);
    __asm__("" : "+v"(s)); /* keeps the accumulation in order, as in avx2_tq.c */
    return s;
}
/* The block's sums start from minus the activations' (vpmaddwd by -1), one vpsubd fewer a row. */
static inline __m256i tq32_init(__m256i bsum)
{
    return _mm256_madd_epi16(bsum, _mm256_set1_epi16(-1));
}
static inline __m256i tq32_join(__m256i s, __m256i t)
{
    return _mm256_add_epi32(s, t);
}
static inline __m256i tq32_i32(__m256i s, __m256i bsum)
{
    (void)bsum;
    return s;
}

TQ_TILE(tq2_0, kl_block_tq2_0, tq32, 2)

/* TQ2_0 at one activation row, 512 bits at a time: each half of the block's 64 bytes broadcast
 * to both halves of a register and masked, low half 0x03 and high 0x0C (fields 0 and 1 in
 * place, times 1 and 4), or 0x30 | 0xC0 (fields 2 and 3, times 16 and 64), so that a register
 * meets 64 consecutive activations (chunks 2i, 2i + 1) in one vpdpbusd, exact in int32. The
 * scales come off with one vpsravd per sum (each lane a multiple of its scale), and the halves
 * add up to the 256-bit tile's int32 lanes: the same bits. The fields as ands and the scales
 * as shifts keep the vpdpbusd ports free (shifting each field, or gf2p8affineqb, shares
 * them): 43 GB/s from L2 against the 256-bit tile's 33.
 * Streamed, the hardware prefetcher alone kept too few lines in flight (29 GB/s from memory
 * at one thread, 33 in L2): each block asks for the line KL_PF_AHEAD bytes ahead
 * (x86/packed_prefetch.h), rows one after another in memory (past a row's end that is the next
 * row's; a hint, it never faults). 8192x2048 and 2048x2048, one thread, GB/s streamed: 28-31 ->
 * 38-42 (4 KB ahead 31-37, 16 KB 37-42). */
static inline __attribute__((always_inline)) void tq2_0r_tile(const kl_gemm *g, int64_t r, int b)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const kl_block_tq2_0 *w = (const kl_block_tq2_0 *)(g->W + (size_t)r * g->w_stride);
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    const int8_t *a = (const int8_t *)a0;
    const float *ad = kl_act_q8_k_d(a0, n);
    const int16_t *bs = kl_act_q8_k_bsums(a0, n);
    const __m512i m01 = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C), 1);
    const __m512i m23 = _mm512_inserti64x4(_mm512_set1_epi8(0x30), _mm256_set1_epi8((char)0xC0), 1);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(6), 1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < nblk; j++) {
        _mm_prefetch((const char *)&w[j] + KL_PF_AHEAD, _MM_HINT_T0);
        __m512i x0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w[j].qs));
        __m512i x1 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[j].qs + 32)));
        const int8_t *aj = a + j * KL_QKK;
        /* s: fields 0, 1 (less the activations' sums, in the scale-1 half); t: fields 2, 3 */
        __m512i s =
            _mm512_zextsi256_si512(tq32_init(_mm256_loadu_si256((const __m256i *)(bs + 16 * j))));
        __m512i t = _mm512_setzero_si512();
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(x0, m01), _mm512_loadu_si512(aj));
        t = _mm512_dpbusd_epi32(t, _mm512_and_si512(x0, m23), _mm512_loadu_si512(aj + 64));
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(x1, m01), _mm512_loadu_si512(aj + 128));
        t = _mm512_dpbusd_epi32(t, _mm512_and_si512(x1, m23), _mm512_loadu_si512(aj + 192));
        s = _mm512_add_epi32(_mm512_srav_epi32(s, sh01), _mm512_srav_epi32(t, sh23));
        __m256i i32 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)w[j].d));
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d, _mm256_set1_ps(ad[j])), acc);
    }
    g->y[(int64_t)b * g->ldy + r] = kl_avx2_hsum_ps(acc);
}
TQ2_0_GEMM(kl_avx512_gemm_tq2_0)
/* TQ1_0 packed as TQ2_0's blocks (kernels/pack_tq.c): a panel is 16 plain TQ2_0 rows, so the
 * TQ2_0 kernel with a row's stride; the same int32 lanes and float steps as the TQ1_0 tiles
 * below, so their bits, at 1.7x the weights a second at one row (their trits cost more than
 * the 22% more bytes). */
void kl_avx512_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    kl_avx512_gemm_tq2_0(&h, r0, r1);
}
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
    y[5] = _mm256_mask_add_epi8(z, 0xFFFF0000u, z, _mm256_add_epi8(z, z)); /* times 1 | 3 */
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

/* Block j's dots at each of nb activation rows (bytes a, sums bs), from its bytes y, y3: s (y)
 * and s3 (y3) in two chains each (even and odd chunks; one chain each was 0.93x at one row), s3
 * in one at three rows (1.03x there: the rows' chains are enough), starting from the
 * activations' sums times 256. */
static inline __attribute__((always_inline)) void
tq1_0x_dots(const __m256i y[8], const __m256i y3[8], const int8_t *const a[],
            const int16_t *const bs[], int nb, int64_t j, __m256i o[][4])
{
    __m256i s[TQ_BT][2], s3[TQ_BT][2];
    _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++)
    {
        s[k][0] = s[k][1] = s3[k][1] = _mm256_setzero_si256();
        s3[k][0] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)),
                                     _mm256_set1_epi16(256));
    }
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++)
    {
        __m256i ac = _mm256_loadu_si256((const __m256i *)(a[k] + j * KL_QKK + 32 * c));
        s[k][c & 1] = tq32_acc(s[k][c & 1], y[c], ac);
        s3[k][nb < 3 ? c & 1 : 0] = tq32_acc(s3[k][nb < 3 ? c & 1 : 0], y3[c], ac);
    }
    _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++)
    {
        o[k][0] = s[k][0], o[k][1] = s[k][1], o[k][2] = s3[k][0], o[k][3] = s3[k][1];
    }
}

/* A block's int32 lanes from its dots: (3 s - s3) >> 8, the activations' sums already off. */
static inline __m256i tq1_0x_lanes(const __m256i o[4])
{
    __m256i s = _mm256_add_epi32(o[0], o[1]);
    return _mm256_srai_epi32(
        _mm256_sub_epi32(_mm256_add_epi32(s, _mm256_add_epi32(s, s)), _mm256_add_epi32(o[2], o[3])),
        8);
}

/* Block j's lanes is times d and the rows' scales into acc: d broadcast as fp16 and converted
 * in the vector, then one vmulps a row (vpinsrw, vcvtph2ps, vmulss and vbroadcastss before). */
static inline __attribute__((always_inline)) void tq1_0x_end(int nb, __m256 *acc, const __m256i *is,
                                                             const kl_block_tq1_0 *w,
                                                             const float *const *ad, int64_t j)
{
    __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)w->d));
    _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++) acc[k] = _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(is[k]), _mm256_mul_ps(d, _mm256_set1_ps(ad[k][j])), acc[k]);
}

/* One weight row by nb (1-3) activation rows, a block a step, its lanes made and scaled in the
 * next step after that block's dots are issued: the dots' chains then find the previous block's
 * tail to overlap in the out-of-order window (1.07x at one row over two blocks a step with the
 * tail at the end). The float sums in block order. */
static inline __attribute__((always_inline)) void tq1_0x_tile(const kl_gemm *g, int64_t r, int b,
                                                              int nb)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const kl_block_tq1_0 *w = (const kl_block_tq1_0 *)(g->W + (size_t)r * g->w_stride);
    const int8_t *a[TQ_BT];
    const int16_t *bs[TQ_BT];
    const float *ad[TQ_BT];
    __m256 acc[TQ_BT];
    __m256i y[8], y3[8], o[TQ_BT][4], is[TQ_BT];
    q8k_rows(g, b, nb, a, ad, bs, acc);
    tq1_0_bytes(&w[0], y, y3);
    tq1_0x_dots(y, y3, a, bs, nb, 0, o);
    for (int64_t j = 1; j < nblk; j++) {
        tq1_0_bytes(&w[j], y, y3);
        _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++) is[k] = tq1_0x_lanes(o[k]);
        tq1_0x_dots(y, y3, a, bs, nb, j, o);
        tq1_0x_end(nb, acc, is, &w[j - 1], ad, j - 1);
    }
    _Pragma("GCC unroll 3") for (int k = 0; k < nb; k++) is[k] = tq1_0x_lanes(o[k]);
    tq1_0x_end(nb, acc, is, &w[nblk - 1], ad, nblk - 1);
    q8k_store(g, r, b, nb, acc);
}

/* One to three activation rows: the trit-free tile (one row 1.5x the TQ tile, 2048 x 2048
 * streamed, one thread; two rows 1.28x, three 1.07x in cache); four: the decoded trits, once for
 * the rows (the trit-free tile does twice the vpdpbusd). The trit-free tile steps one block at a
 * time with the previous block's tail after the dots (two blocks a step, the tails at the end:
 * 0.97x at one row, 0.93x at three; issuing the next block's bytes before the dots spilled,
 * 0.82x). The same int32 lanes either way: batch invariant. */
TQ_TILE(tq1_0, kl_block_tq1_0, tq32, 2)
static inline __attribute__((always_inline)) void tq1_0m_tile(const kl_gemm *g, int64_t r, int b,
                                                              int nb)
{
    if (nb <= 3)
        tq1_0x_tile(g, r, b, nb);
    else
        tq1_0_tile(g, r, b, nb);
}
TQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0m)
