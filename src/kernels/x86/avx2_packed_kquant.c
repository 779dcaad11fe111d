/* kernels/x86/avx2_packed_kquant.c: the K-quants (Q2_K Q3_K Q4_K Q5_K Q6_K, and IQ4_XS; IQ3_XXS
 * and IQ3_S, this table's only) over the panels of 16 rows that AVX-512 reads
 * (kernels/pack_kquant.h; the same bytes, packed by pack_kquant.c, but for Q3_K's, AVX2's own:
 * tile_q3s below), AVX2. A 64-byte panel register (16 rows x 4 columns) is two 256-bit halves,
 * rows 0-7 and 8-15. At one activation row a panel is one sequential stream, which the
 * hardware prefetcher follows (the file's rows, read a few at a time, are streams too short
 * for it: the reason the row tiles of avx2_kquant.c fell behind at generation).
 *
 * Per half, sub-block of 32 columns and activation row (Q8_K: int8 a, scale d_a, 16-column
 * sums bs): vpmaddubsw of each 4-column group of unsigned quants u (Q6_K q + 32)
 * with the group's 4 activation bytes broadcast gives per row two int16 sums of 2 products;
 * those of the groups under one scale are added in int16 as far as they cannot overflow
 * (|u a| <= 128 u: Q4_K 8 groups (<= 30720), Q5_K, Q2_K 4, Q6_K 2 (<= 32256)), and
 * vpmaddwd by the rows' scale (sc, sc) sums them into int32: sum_t sc_t * dot_t(u, a), exact.
 * The offset term is vpmaddwd of the rows' (m_2s, m_2s+1) (Q6_K: the scales) with
 * (bs_2s, bs_2s+1): times dmin (Q2_K Q4_K Q5_K), or taken out of the integer sum times 32
 * (Q6_K). Then d * d_a (and -dmin * d_a) in float per super-block: llama.cpp's
 * integer sums, as avx2_kquant.c forms them; the float order differs from the reference's and
 * from AVX-512's (within rounding).
 *
 * IQ4_XS (Q4_K's nibbles, kl_iq4nl_values[u] through vpshufb): signed values, so
 * |w| times the activations with w's sign (a pair at most 2 * 127 * 127: one vpmaddwd by the
 * sub-block's scale per group), no offset, and the reference's float steps, (float)isum *
 * (d * d_a) added per super-block without FMA: its bits. The record's header is the file's
 * own 6-bit scales (pack_kquant.h), decoded once a super-block (iq4_half_scales): 2176 bytes
 * per 16 rows, the file's size. 1 thread, 2048 x 2048, B=1: 25.7 GB/s against 12.0 for the
 * rows of avx2_iq4.c (B=16: 123 against 85 GOP/s), measured with Q4_K's header (2368 bytes);
 * the 6-bit header's decode per sub-block cost 6-9% where the tile is compute-bound. Its tile
 * keeps each isum add in order with an empty asm: GCC had regrouped them (run 1: one vpmaddwd
 * per column group) into trees of stack spills, 56 stack accesses per sub-block at 4 rows.
 *
 * IQ3_XXS and IQ3_S (pack_kquant.h: the grid values as g = 2 u - Z, u unsigned, Z 62 or 15,
 * nibbles in IQ4_XS's places, the file's 4-bit scales, an f32 d): Q6_K's path, u against the
 * activations (IQ3_XXS's u through vpshufb, <= 62: 2 groups in int16; IQ3_S's the nibble,
 * <= 15: 8), by 2 (2 s + 1), the offset Z (2 s + 1) bs out of the integer sum: the file's
 * integer, and IQ4_XS's float steps: the reference's bits. The file's grid lookups (8 loads
 * and inserts a chunk, x86/avx2_iq3.c) gone, for 1.39x (IQ3_XXS) and 1.24x (IQ3_S) the
 * bytes. bench-kernels, 1 thread, streamed, GB/s of the file's bytes (loaded machine, read
 * limit measured 11-22 GB/s in the runs): B=1 IQ3_XXS 26.5-27.7 against 6.8-7.0 for
 * avx2_iq3.c, IQ3_S 31.2-33.1 against 7.4-7.7; B=2 185-195 / 167-190 GFLOP/s against 64-67
 * / 62-66; B=4, 8 ~210 / ~176 against ~100 / ~94. tile_gen at two rows: IQ3_S 1.05x, IQ3_XXS
 * even. Against the VBMI table's plane kernels (avx512vbmi_iq3.c, 24-26 GB/s) this is 1.06-1.12x
 * (IQ3_XXS) and 1.25-1.34x (IQ3_S) at B=1 but 0.86-0.96x at B=2 and 0.57-0.81x at B=4-8, so
 * that table keeps its own (its IQ3 also takes plane-ordered activations).
 *
 * Batch invariance: every (weight row, activation row) result is the same chain of
 * instructions over the super-blocks, whatever the tile. */
#include <immintrin.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"
#include "kernels/pack_kquant.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/packed_prefetch.h"

#define BT 4 /* activation rows per tile */
#define HR 8 /* rows per half panel */

/* Unsigned quants of half hf of sub-block s, column group g: 8 rows x columns 32s + 4g..+3. */
static inline __attribute__((always_inline)) __m256i quants(int K, const uint8_t *P, int hf, int s,
                                                            int g)
{
    const uint8_t *lo = P + off_lo(K, s) + (size_t)hf * 32,
                  *hi = P + off_hi(K, s) + (size_t)hf * 32;
    __m256i w;
    if (K == Q4 || K == Q5 || K == Q6 || K == IQ4X ||
        is_iq3(K)) { /* low nibbles g < 4, high g >= 4 of reg g % 4 */
        __m256i v = _mm256_loadu_si256((const __m256i *)(lo + (size_t)(g % 4) * REG));
        w = _mm256_and_si256(g < 4 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
    } else { /* bits 2 (g % 4) of reg g / 4 */
        __m256i v = _mm256_loadu_si256((const __m256i *)(lo + (size_t)(g / 4) * REG));
        w = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (g % 4)), _mm256_set1_epi8(0x03));
    }
    if (K == Q5) { /* bit g of hb -> bit 4 */
        __m256i hb = _mm256_loadu_si256((const __m256i *)hi);
        __m256i x = g < 4 ? _mm256_slli_epi16(hb, 4 - g) : _mm256_srli_epi16(hb, g - 4);
        w = _mm256_or_si256(w, _mm256_and_si256(x, _mm256_set1_epi8(0x10)));
    }
    if (K == Q6) { /* bits 2k of h2 reg g / 4, k = g % 4 -> bits 4-5 */
        __m256i v = _mm256_loadu_si256((const __m256i *)(hi + (size_t)(g / 4) * REG));
        int k = g % 4;
        __m256i x = k < 2 ? _mm256_slli_epi16(v, 4 - 2 * k) : _mm256_srli_epi16(v, 2 * k - 4);
        w = _mm256_or_si256(w, _mm256_and_si256(x, _mm256_set1_epi8(0x30)));
    }
    if (K == IQ4X) /* the signed values themselves */
        w = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq4nl_values)), w);
    if (K == IQ3X) /* u, g = 2 u - 62 (IQ3_S's u is the nibble) */
        w = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kl_iq3p_xxs_u)), w);
    return w;
}

/* vpshufb controls over the 16 scale bytes of 8 rows (row i: bytes 2i, 2i + 1), broadcast to
 * both 128-bit lanes: rows 0-3 come from the low lane, 4-7 from the high. Each picks, per row,
 * two int16 from byte x then y; 'z' a zero byte. Signed bytes go to the high byte of the int16
 * (shifted down arithmetically after). */
#define Z -1
#define CTL(x0, x1, y0, y1, base)                                                                  \
    (x0) < 0 ? Z : (x0) + (base), (x1) < 0 ? Z : (x1) + (base), (y0) < 0 ? Z : (y0) + (base),      \
        (y1) < 0 ? Z : (y1) + (base)
#define ROW4(x0, x1, y0, y1, lane)                                                                 \
    CTL(x0, x1, y0, y1, 8 * (lane)), CTL(x0, x1, y0, y1, 8 * (lane) + 2),                          \
        CTL(x0, x1, y0, y1, 8 * (lane) + 4), CTL(x0, x1, y0, y1, 8 * (lane) + 6)
/* _mm256_setr_epi8 takes 32 chars: lane 0 rows 0-3, lane 1 rows 4-7 */
#define PICK(x0, x1, y0, y1)                                                                       \
    _mm256_shuffle_epi8(v, _mm256_setr_epi8(ROW4(x0, x1, y0, y1, 0), ROW4(x0, x1, y0, y1, 1)))

/* IQ4_XS's 6-bit scales of half hf, decoded once a super-block (its sub-blocks pick theirs
 * with one vpshufb): ls - 32 as signed bytes, lane l rows 4l..4l+3, byte 4i + j of the lane
 * sub-block 2j in ls[0] and 2j + 1 in ls[1]. sl's byte j of a row holds sub-blocks 2j (low
 * nibble) and 2j + 1 (high); sh's bits 2s, 2s + 1 are ls_s >> 4, byte j / 2 of the row's two,
 * bits 0-3 for j even and 4-7 for j odd. Per sub-block this decode had cost ten operations a
 * half (shifts, ands, an or, a shuffle, a subtraction: AVX2 IQ4_XS prompts 7% below Q4_K's
 * pre-decoded header; once a super-block, ~1.01x alone). */
static inline __attribute__((always_inline)) void iq4_half_scales(const uint8_t *P, int hf,
                                                                  __m256i ls[2])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i sl = _mm256_loadu_si256((const __m256i *)(P + OFF_SL + (size_t)hf * HR * 4)),
            sh = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(P + OFF_SH + (size_t)hf * HR * 2)));
    /* row i's byte j <- sh byte 2i + j / 2 (lane 1: rows 4-7) */
    sh = _mm256_shuffle_epi8(sh, _mm256_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8,
                                                  8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
                                                  15, 15));
    /* bits 0-1: sub-block 2j's top bits, 2-3: 2j + 1's */
    sh = _mm256_blendv_epi8(sh, _mm256_srli_epi16(sh, 4),
                            _mm256_set1_epi16((short)0xFF00)); /* j odd: the high byte */
    const __m256i c32 = _mm256_set1_epi8(32);
    ls[0] = _mm256_sub_epi8(
        _mm256_or_si256(_mm256_and_si256(sl, m4), _mm256_and_si256(_mm256_slli_epi16(sh, 4), m30)),
        c32);
    ls[1] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sl, 4), m4),
                                            _mm256_and_si256(_mm256_slli_epi16(sh, 2), m30)),
                            c32);
}

/* vpshufb controls of iq4_sub_scales: row i's byte j into the high byte of both its int16. */
#define IQ4J(j)                                                                                    \
    Z, (j), Z, (j), Z, 4 + (j), Z, 4 + (j), Z, 8 + (j), Z, 8 + (j), Z, 12 + (j), Z, 12 + (j)
static const int8_t iq4_pick[4][32] __attribute__((aligned(32))) = {
    {IQ4J(0), IQ4J(0)}, {IQ4J(1), IQ4J(1)}, {IQ4J(2), IQ4J(2)}, {IQ4J(3), IQ4J(3)}};

/* (sc, sc) per row of sub-block 2j + e from iq4_half_scales' bytes. */
static inline __attribute__((always_inline)) __m256i iq4_sub_scales(const __m256i ls[2], int j,
                                                                    int e)
{
    return _mm256_srai_epi16(
        _mm256_shuffle_epi8(ls[e], _mm256_load_si256((const __m256i *)iq4_pick[j])), 8);
}

/* IQ3's 4-bit s of half hf as 2 s + 1 in bytes, in iq4_half_scales' places: once a
 * super-block, its sub-blocks pick theirs with one vpshufb. */
static inline __attribute__((always_inline)) void iq3_half_scales(const uint8_t *P, int hf,
                                                                  __m256i ls[2])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i sl = _mm256_loadu_si256((const __m256i *)(P + OFF_S3 + (size_t)hf * HR * 4));
    __m256i lo = _mm256_and_si256(sl, m4), hi = _mm256_and_si256(_mm256_srli_epi16(sl, 4), m4);
    ls[0] = _mm256_or_si256(_mm256_add_epi8(lo, lo), one);
    ls[1] = _mm256_or_si256(_mm256_add_epi8(hi, hi), one);
}

/* vpshufb controls of iq3_sub_scales: row i's byte j into the low byte of both its int16. */
#define IQ3J(j)                                                                                    \
    (j), Z, (j), Z, 4 + (j), Z, 4 + (j), Z, 8 + (j), Z, 8 + (j), Z, 12 + (j), Z, 12 + (j), Z
static const int8_t iq3_pick[4][32] __attribute__((aligned(32))) = {
    {IQ3J(0), IQ3J(0)}, {IQ3J(1), IQ3J(1)}, {IQ3J(2), IQ3J(2)}, {IQ3J(3), IQ3J(3)}};

/* Half hf's scale operands of sub-block s = 2j + e: (sc, sc) per row for columns 0-15 and
 * 16-31 of the sub-block (the same for the 32-column Q4_K/Q5_K), and the offset pairs against
 * (bs_2s, bs_2s+1); IQ4_XS's from iq4_half_scales' ls, no offset. */
static inline __attribute__((always_inline)) void scales(int K, const uint8_t *P, int hf, int j,
                                                         int e, const __m256i ls[2], __m256i *sc_lo,
                                                         __m256i *sc_hi, __m256i *off)
{
    const int s = 2 * j + e;
    if (K == IQ4X) {
        *sc_lo = *sc_hi = iq4_sub_scales(ls, j, e);
        *off = _mm256_setzero_si256();
        return;
    }
    if (is_iq3(K)) { /* 2 (2 s + 1) against u, Z (2 s + 1) against the bsums (pack_kquant.h) */
        __m256i sc = _mm256_shuffle_epi8(ls[e], _mm256_load_si256((const __m256i *)iq3_pick[j]));
        *sc_lo = *sc_hi = _mm256_add_epi16(sc, sc);
        *off = _mm256_mullo_epi16(sc, _mm256_set1_epi16((short)iq3_zero(K)));
        return;
    }
    const uint8_t *raw = P + OFF_SM + (size_t)s * KL_PR * 2 + (size_t)hf * HR * 2;
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)raw));
    if (K == Q4 || K == Q5) { /* (sc, m) */
        *sc_lo = *sc_hi = PICK(0, Z, 0, Z);
        *off = PICK(1, Z, 1, Z);
    } else if (K == Q2) { /* (sc | m << 4) for groups 2s, 2s + 1 */
        const __m256i m4 = _mm256_set1_epi16(0x0F);
        *sc_lo = _mm256_and_si256(PICK(0, Z, 0, Z), m4);
        *sc_hi = _mm256_and_si256(PICK(1, Z, 1, Z), m4);
        *off = _mm256_srli_epi16(PICK(0, Z, 1, Z), 4);
    } else { /* signed sc_2s, sc_2s+1 */
        *sc_lo = _mm256_srai_epi16(PICK(Z, 0, Z, 0), 8);
        *sc_hi = _mm256_srai_epi16(PICK(Z, 1, Z, 1), 8);
        *off = _mm256_srai_epi16(PICK(Z, 0, Z, 1), 8);
    }
}

static inline __m256i bcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The unsigned operand of vpmaddubsw: the quants, or IQ4_XS's |w| (<= 127) ... */
static inline __attribute__((always_inline)) __m256i magnitude(int K, __m256i w)
{
    return K == IQ4X ? _mm256_sign_epi8(w, w) : w;
}
/* ... against the activations, with w's sign moved onto them for IQ4_XS (w is never 0, and
 * |a| <= 127: a pair is at most 2 * 127 * 127, no saturation). */
static inline __attribute__((always_inline)) __m256i signed_act(int K, __m256i a, __m256i w)
{
    return K == IQ4X ? _mm256_sign_epi8(a, w) : a;
}

/* Column groups added in int16 before a vpmaddwd (see the top). */
static inline __attribute__((always_inline)) int run_of(int K)
{
    return K == Q4 || K == IQ3S ? 8 : K == Q6 || K == IQ3X ? 2 : K == IQ4X ? 1 : 4;
}

/* The offset's factor when it comes out of the integer sum (Q6_K 32, IQ3 1: its
 * scales' Z is in the offset pairs already), as a shift; -1: the types with a float min. */
static inline __attribute__((always_inline)) int fold_of(int K)
{
    return K == Q6 ? 5 : is_iq3(K) ? 0 : -1;
}

/* Stores the half's 8 results of one activation row, the rows of the matrix only. */
static inline void store_half(float *y, __m256 v, int64_t n)
{
    if (n >= HR) {
        _mm256_storeu_ps(y, v);
    } else if (n > 0) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_maskstore_ps(y, m, v);
    }
}

/* Half hf's super-block scales d (and dmin, for the types with a min; else d again). */
static inline __attribute__((always_inline)) void half_scales(int K, const uint8_t *P, int hf,
                                                              __m256 *dv, __m256 *mv)
{
    if (is_iq3(K)) { /* f32 */
        *dv = *mv = _mm256_loadu_ps((const float *)(P + OFF_D + (size_t)hf * HR * 4));
        return;
    }
    *dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(P + OFF_D + (size_t)hf * HR * 2)));
    *mv = K == Q2 || K == Q4 || K == Q5
              ? _mm256_cvtph_ps(
                    _mm_loadu_si128((const __m128i *)(P + OFF_DMIN + (size_t)hf * HR * 2)))
              : *dv;
}

/* A super-block's float step, the same in tile() and tile_gen(): out + isum d da, less
 * ioff dmin da for the types with a min (Q3_K/Q6_K have their offset in isum already). */
static inline __attribute__((always_inline)) __m256
block_out(int K, __m256i isum, __m256i ioff, __m256 dv, __m256 mv, float a_d, __m256 out)
{
    __m256 da = _mm256_set1_ps(a_d);
    if (K == IQ4X || is_iq3(K)) /* the reference's steps: out + (float)isum * (d * da) */
        return _mm256_add_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dv, da)));
    out = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dv, da), out);
    if (K == Q2 || K == Q4 || K == Q5)
        out = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ioff), _mm256_mul_ps(mv, da), out);
    return out;
}

/* Activation rows [b, b + NB) of a tile: quants, scales d and 16-column sums. */
typedef struct {
    const int8_t *q[BT];
    const float *d[BT];
    const int16_t *bs[BT];
} act_rows;

/* Fills A for rows [b, b + NB) and zeroes the tile's outputs, both halves. */
static inline __attribute__((always_inline)) void act_rows_at(const kl_gemm *g, int b, int NB,
                                                              act_rows *A, __m256 out[2][BT])
{
    q8k_rows(g, b, NB, A->q, A->d, A->bs, out[0]);
    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++) out[1][k] = _mm256_setzero_ps();
}

/* One panel (16 rows from r) x activation rows [b, b + NB), over all super-blocks. */
static inline __attribute__((always_inline)) void tile(const kl_gemm *g, int64_t r, int b, int NB,
                                                       int K)
{
    int64_t n = g->cols, nsb = n / KL_QKK;
    const size_t rb = rec_bytes(K);
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    act_rows A;
    __m256 out[2][BT];
    act_rows_at(g, b, NB, &A, out);
    const int run = run_of(K);
    for (int64_t j = 0; j < nsb; j++, P += rb) {
        _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
        {
            __m256i isum[BT], ioff[BT];
            _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
            {
                isum[k] = _mm256_setzero_si256();
                ioff[k] = _mm256_setzero_si256();
            }
            __m256i ls[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            if (K == IQ4X) iq4_half_scales(P, hf, ls);
            if (is_iq3(K)) iq3_half_scales(P, hf, ls);
            for (int s2 = 0; s2 < 8; s2 += 2)
                _Pragma("GCC unroll 2") for (int e = 0; e < 2; e++)
                {
                    const int s = s2 + e; /* e constant: ls[e] stays in a register */
                    __m256i sc_lo, sc_hi, off;
                    /* the first tile over the panel asks for the record KL_PF_AHEAD
                     * ahead (x86/packed_prefetch.h), an eighth per sub-block: streamed
                     * 8192x2048, B=1, 1 thread, GB/s (limit 42), without -> with: Q6_K
                     * 17.5-18.4 -> 40.1-40.8, Q4_K 33 -> 36 (40.5 in tile_gen), Q2_K 29 ->
                     * 31.5 */
                    if (b == 0 && hf == 0) kl_pf_share(P, rb, s, 8);
                    scales(K, P, hf, s2 / 2, e, ls, &sc_lo, &sc_hi, &off);
                    __m256i p[BT];
                    _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                    {
                        __m256i w = quants(K, P, hf, s, q), uw = magnitude(K, w);
                        _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
                        {
                            if (q % run == 0) p[k] = _mm256_setzero_si256();
                            p[k] = _mm256_add_epi16(
                                p[k],
                                _mm256_maddubs_epi16(
                                    uw, signed_act(K, bcast4(A.q[k] + j * KL_QKK + 32 * s + 4 * q),
                                                   w)));
                        }
                        if (q % run == run - 1) {
                            __m256i sc = q < 4 ? sc_lo : sc_hi;
                            _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
                            {
                                isum[k] = _mm256_add_epi32(isum[k], _mm256_madd_epi16(p[k], sc));
                                if (K == IQ4X || is_iq3(K)) /* in order (GCC had spilled) */
                                    __asm__("" : "+x"(isum[k]));
                            }
                        }
                    }
                    if (K != IQ4X)
                        _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++) ioff[k] =
                            _mm256_add_epi32(
                                ioff[k], _mm256_madd_epi16(off, bcast4(A.bs[k] + 16 * j + 2 * s)));
                }
            __m256 dv, mv;
            half_scales(K, P, hf, &dv, &mv);
            _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
            {
                __m256i s = isum[k];
                if (fold_of(K) >= 0)
                    s = _mm256_sub_epi32(s, _mm256_slli_epi32(ioff[k], fold_of(K)));
                out[hf][k] = block_out(K, s, ioff[k], dv, mv, A.d[k][j], out[hf][k]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
    {
        float *y = g->y + (int64_t)(b + k) * g->ldy + r;
        store_half(y, out[0][k], g->rows - r);
        store_half(y + HR, out[1][k], g->rows - r - HR);
    }
}

/* tile() for one or two activation rows (generation), both halves of each sub-block in one
 * pass: the panel is then read front to back once, as one even stream (half by half, the
 * second half's pass re-read the record from L1 with no new line asked of DRAM meanwhile:
 * Q6_K streamed at 0.65 of its in-cache speed), and each activation broadcast serves both
 * halves (GEN1 and GEN2 below say which types this serves). Q6_K takes the offset out of the
 * integer sum per sub-block, with the scales times 32 (|32 sc| <= 1024, |bs| <= 2032:
 * exact in int32), the same integer as tile()'s one subtraction (and two fewer accumulators);
 * the float steps are tile()'s: the same bits, whichever tile a row falls in. */
static inline __attribute__((always_inline)) void tile_gen(const kl_gemm *g, int64_t r, int b,
                                                           int NB, int K)
{
    int64_t n = g->cols, nsb = n / KL_QKK;
    const size_t rb = rec_bytes(K);
    const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
    act_rows A;
    __m256 out[2][BT];
    act_rows_at(g, b, NB, &A, out);
    const int run = run_of(K), fold = fold_of(K);
    for (int64_t j = 0; j < nsb; j++, P += rb) {
        __m256i isum[2][2], ioff[2][2];
        _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
            _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++) isum[hf][k] = ioff[hf][k] =
                _mm256_setzero_si256();
        __m256i ls[2][2] = {{_mm256_setzero_si256(), _mm256_setzero_si256()},
                            {_mm256_setzero_si256(), _mm256_setzero_si256()}};
        if (K == IQ4X) /* not a GEN type now; kept in step with tile() */
            _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++) iq4_half_scales(P, hf, ls[hf]);
        if (is_iq3(K))
            _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++) iq3_half_scales(P, hf, ls[hf]);
        for (int s = 0; s < 8; s++) {
            __m256i sc_lo[2], sc_hi[2], off[2], p[2][2];
            if (b == 0) kl_pf_share(P, rb, s, 8);
            _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
            {
                scales(K, P, hf, s / 2, s % 2, ls[hf], &sc_lo[hf], &sc_hi[hf], &off[hf]);
                if (fold > 0) off[hf] = _mm256_slli_epi16(off[hf], fold);
            }
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
            {
                __m256i a[2];
                _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++) a[k] =
                    bcast4(A.q[k] + j * KL_QKK + 32 * s + 4 * q);
                _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
                {
                    __m256i w = quants(K, P, hf, s, q), uw = magnitude(K, w);
                    _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++)
                    {
                        __m256i m = _mm256_maddubs_epi16(uw, signed_act(K, a[k], w));
                        p[hf][k] = q % run == 0 ? m : _mm256_add_epi16(p[hf][k], m);
                    }
                    if (q % run == run - 1) {
                        __m256i sc = q < 4 ? sc_lo[hf] : sc_hi[hf];
                        _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++) isum[hf][k] =
                            _mm256_add_epi32(isum[hf][k], _mm256_madd_epi16(p[hf][k], sc));
                    }
                }
            }
            if (K != IQ4X) _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++)
                {
                    __m256i bs = bcast4(A.bs[k] + 16 * j + 2 * s);
                    _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
                    {
                        __m256i t = _mm256_madd_epi16(off[hf], bs);
                        if (fold >= 0)
                            isum[hf][k] = _mm256_sub_epi32(isum[hf][k], t);
                        else
                            ioff[hf][k] = _mm256_add_epi32(ioff[hf][k], t);
                    }
                }
        }
        _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++)
        {
            __m256 dv, mv;
            half_scales(K, P, hf, &dv, &mv);
            _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++) out[hf][k] =
                block_out(K, isum[hf][k], ioff[hf][k], dv, mv, A.d[k][j], out[hf][k]);
        }
    }
    _Pragma("GCC unroll 2") for (int k = 0; k < NB; k++)
    {
        float *y = g->y + (int64_t)(b + k) * g->ldy + r;
        store_half(y, out[0][k], g->rows - r);
        store_half(y + HR, out[1][k], g->rows - r - HR);
    }
}

/* Q3_K in AVX2's own layout (pack_kquant.h, Q3S): the 8 column groups of half hf of
 * sub-block s, groups 0-3 (the sixteen of sc_2s) as u, groups 4-7 (sc_2s+1's) as 8 u, each one
 * vpand, u3 and u7 two shifts more (vpsrlw moves no bit of the neighbouring byte into the ones
 * kept: each part is masked first). */
static inline __attribute__((always_inline)) void q3s_quants(const uint8_t *P, int hf, int s,
                                                             __m256i w[8])
{
    const __m256i *q = (const __m256i *)(P + off_lo(Q3S, s) + (size_t)hf * 32);
    const __m256i b0 = _mm256_loadu_si256(q), b1 = _mm256_loadu_si256(q + REG / 32),
                  b2 = _mm256_loadu_si256(q + 2 * REG / 32);
    const __m256i m7 = _mm256_set1_epi8(7), m38 = _mm256_set1_epi8(0x38),
                  mc0 = _mm256_set1_epi8((char)0xC0);
    w[0] = _mm256_and_si256(b0, m7);
    w[1] = _mm256_and_si256(b1, m7);
    w[2] = _mm256_and_si256(b2, m7);
    w[3] = _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(b0, mc0), 6),
                           _mm256_srli_epi16(_mm256_and_si256(b2, _mm256_set1_epi8(0x40)), 4));
    w[4] = _mm256_and_si256(b0, m38);
    w[5] = _mm256_and_si256(b1, m38);
    w[6] = _mm256_and_si256(b2, m38);
    w[7] =
        _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(b1, mc0), 3),
                        _mm256_srli_epi16(_mm256_and_si256(b2, _mm256_set1_epi8((char)0x80)), 2));
}

/* Q3_K's tile over the Q3S layout: 8 times the integer sum, so that groups 4-7 need no shift.
 * Per half, sub-block and activation row: groups 0-3 (u, pairs <= 7 * 127 * 2) add in int16
 * and vpmaddwd by (8 sc_2s, 8 sc_2s); groups 4-7 (8 u, pairs <= 14224) two at a time, by
 * (sc_2s+1, sc_2s+1); the offset, vpmaddwd of (32 sc_2s, 32 sc_2s+1) with (bs_2s, bs_2s+1),
 * subtracted (|8 isum| < 2^26). Each scale is its byte in an int16's high half shifted down
 * arithmetically by 5, 8 or 3. Per super-block the sum shifted down by 3 (exact) is tile()'s
 * integer, and the float steps are tile()'s: the same bits as before the layout (and from
 * every tile). H halves a pass: both at one activation row (the record read front to back
 * once, as tile_gen does; the broadcasts are loaded again for each half, as GCC kept them for
 * both and spilled), one at two to four. Against tile() over the shared layout (u from two
 * 2-bit planes and a high-bit plane, 5 operations a group), 1 thread, bench-kernels,
 * alternated: B=1 streamed 24.1-25.7 -> 31.3-32.5 GB/s of the file's bytes (from L2 26 -> 33:
 * still bound by the core, ~130 instructions a sub-block), B=2 164-177 -> 194-200 GFLOP/s,
 * B=4 180-195 -> 240-252. */
static inline __attribute__((always_inline)) void tile_q3s(const kl_gemm *g, int64_t r, int b,
                                                           int NB, int H)
{
    act_rows A;
    __m256 out[2][BT];
    act_rows_at(g, b, NB, &A, out);
    const size_t rb = rec_bytes(Q3S);
    for (int h0 = 0; h0 < 2; h0 += H) {
        const uint8_t *P = g->W + (size_t)(r / KL_PR) * g->w_stride;
        for (int64_t j = 0; j < g->cols / KL_QKK; j++, P += rb) {
            __m256i isum[2][BT];
            _Pragma("GCC unroll 2") for (int e = 0; e < H; e++)
                _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++) isum[e][k] =
                    _mm256_setzero_si256();
            for (int s = 0; s < 8; s++) {
                if (b == 0 && h0 == 0) kl_pf_share(P, rb, s, 8);
                const int64_t a0 = j * KL_QKK + 32 * s; /* the sub-block's activations */
                _Pragma("GCC unroll 2") for (int e = 0; e < H; e++)
                {
                    const int hf = h0 + e;
                    __m256i w[8];
                    q3s_quants(P, hf, s, w);
                    const uint8_t *raw = P + OFF_SM + (size_t)s * KL_PR * 2 + (size_t)hf * HR * 2;
                    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)raw));
                    __m256i sc8_lo = _mm256_srai_epi16(PICK(Z, 0, Z, 0), 5),
                            sc_hi = _mm256_srai_epi16(PICK(Z, 1, Z, 1), 8),
                            off32 = _mm256_srai_epi16(PICK(Z, 0, Z, 1), 3);
                    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
                    {
                        const int8_t *ak = A.q[k] + a0;
                        /* each half broadcasts its own: kept for both, GCC spilled them */
                        __asm__ volatile("" : "+r"(ak));
                        __m256i p = _mm256_maddubs_epi16(w[0], bcast4(ak));
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[1], bcast4(ak + 4)));
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[2], bcast4(ak + 8)));
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[3], bcast4(ak + 12)));
                        __m256i t = _mm256_madd_epi16(p, sc8_lo);
                        p = _mm256_add_epi16(_mm256_maddubs_epi16(w[4], bcast4(ak + 16)),
                                             _mm256_maddubs_epi16(w[5], bcast4(ak + 20)));
                        t = _mm256_add_epi32(t, _mm256_madd_epi16(p, sc_hi));
                        p = _mm256_add_epi16(_mm256_maddubs_epi16(w[6], bcast4(ak + 24)),
                                             _mm256_maddubs_epi16(w[7], bcast4(ak + 28)));
                        t = _mm256_add_epi32(t, _mm256_madd_epi16(p, sc_hi));
                        t = _mm256_sub_epi32(
                            t, _mm256_madd_epi16(off32, bcast4(A.bs[k] + 16 * j + 2 * s)));
                        isum[e][k] = _mm256_add_epi32(isum[e][k], t);
                    }
                }
            }
            _Pragma("GCC unroll 2") for (int e = 0; e < H; e++)
            {
                __m256 dv, mv;
                half_scales(Q3, P, h0 + e, &dv, &mv);
                _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++) out[h0 + e][k] =
                    block_out(Q3, _mm256_srai_epi32(isum[e][k], 3), isum[e][k], dv, mv, A.d[k][j],
                              out[h0 + e][k]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < NB; k++)
    {
        float *y = g->y + (int64_t)(b + k) * g->ldy + r;
        store_half(y, out[0][k], g->rows - r);
        store_half(y + HR, out[1][k], g->rows - r - HR);
    }
}

/* Panels of rows [r0, r1) x all activation rows, BT at a time (tile_q3s). */
static void gemm_packed_q3_k(const kl_gemm *g, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r += KL_PR)
        for (int b = 0; b < g->B; b += BT) {
            int nb = g->B - b < BT ? g->B - b : BT;
            if (nb == 4)
                tile_q3s(g, r, b, 4, 1);
            else if (nb == 3)
                tile_q3s(g, r, b, 3, 1);
            else if (nb == 2)
                tile_q3s(g, r, b, 2, 1);
            else
                tile_q3s(g, r, b, 1, 2);
        }
}

/* The types tile_gen serves at two rows (GEN2) and at one (GEN1). Streaming 4 copies of
 * 8192x2048, 1 thread, loaded machine, GB/s of weights, tile -> tile_gen: Q6_K B=1 24-26 ->
 * 32-34, B=2 16 -> 27; Q2_K B=1 22.4 -> 24.2-24.6, B=2 14.8 both; not taken: Q3_K (B=1 21.4 ->
 * 22.0, B=2 16.1 -> 15.2), Q4_K (36-38 both), IQ4_XS (bound by its decode, not the stream:
 * B=1 25.7, B=2 15.8 GB/s either way). Q4_K and Q5_K at B=1 once the tiles prefetch
 * (PF_AHEAD; 1 thread, 64 MB streamed): Q4_K 34-36 -> 40.2-40.8 (though in cache tile() is
 * the faster, 57 against 48: tile_gen's loop is 105 instructions a sub-block, about all the
 * core issues), Q5_K 33.5-33.6 -> 39.5-39.6; at B=2 tile() stays ahead for Q5_K (175-177
 * against 171-172 GOP/s). IQ3 at two rows: see the top (at one, tile() was not tried). */
#define GEN2(K) ((K) == Q6 || (K) == Q2 || is_iq3(K))
#define GEN1(K) (GEN2(K) || (K) == Q4 || (K) == Q5)

#define TILE_NB(K, g, r, b, nb)                                                                    \
    switch (nb) { /* constant tile heights */                                                      \
    case 4:                                                                                        \
        tile(g, r, b, 4, K);                                                                       \
        break;                                                                                     \
    case 3:                                                                                        \
        tile(g, r, b, 3, K);                                                                       \
        break;                                                                                     \
    case 2:                                                                                        \
        if (GEN2(K))                                                                               \
            tile_gen(g, r, b, 2, K);                                                               \
        else                                                                                       \
            tile(g, r, b, 2, K);                                                                   \
        break;                                                                                     \
    default:                                                                                       \
        if (GEN1(K))                                                                               \
            tile_gen(g, r, b, 1, K);                                                               \
        else                                                                                       \
            tile(g, r, b, 1, K);                                                                   \
        break;                                                                                     \
    }

/* Panels of rows [r0, r1) (r0 a multiple of 16) x all activation rows, BT at a time. */
#define PACKED_GEMM(NAME, K)                                                                       \
    static void NAME(const kl_gemm *g, int64_t r0, int64_t r1)                                     \
    {                                                                                              \
        for (int64_t r = r0; r < r1; r += KL_PR)                                                   \
            for (int b = 0; b < g->B; b += BT) {                                                   \
                int nb = g->B - b < BT ? g->B - b : BT;                                            \
                TILE_NB(K, g, r, b, nb)                                                            \
            }                                                                                      \
    }

PACKED_GEMM(gemm_packed_q2_k, Q2)
PACKED_GEMM(gemm_packed_q4_k, Q4)
PACKED_GEMM(gemm_packed_q5_k, Q5)
PACKED_GEMM(gemm_packed_q6_k, Q6)
PACKED_GEMM(gemm_packed_iq4_xs, IQ4X)
PACKED_GEMM(gemm_packed_iq3_xxs, IQ3X)
PACKED_GEMM(gemm_packed_iq3_s, IQ3S)

/* Fills the packed gemms of the K-quants but Q3_K, and IQ4_XS (kl_panel_types_kquant their
 * packers, shared with AVX-512). */
void kl_avx2_types_packed_kquant(kl_isa *isa)
{
    isa->types[KL_Q2_K].gemm_packed = gemm_packed_q2_k;
    isa->types[KL_Q4_K].gemm_packed = gemm_packed_q4_k;
    isa->types[KL_Q5_K].gemm_packed = gemm_packed_q5_k;
    isa->types[KL_Q6_K].gemm_packed = gemm_packed_q6_k;
    isa->types[KL_IQ4_XS].gemm_packed = gemm_packed_iq4_xs;
}

/* This table's own: Q3_K in its layout (pack_kquant.h, Q3S), IQ3_XXS and IQ3_S (packers:
 * kl_panel_types_iq3); from kl_isa_avx2_own. */
void kl_avx2_types_packed_own(kl_isa *isa)
{
    kl_panel_types_q3_k_avx2(isa);
    isa->types[KL_Q3_K].gemm_packed = gemm_packed_q3_k;
    isa->types[KL_IQ3_XXS].gemm_packed = gemm_packed_iq3_xxs;
    isa->types[KL_IQ3_S].gemm_packed = gemm_packed_iq3_s;
}
