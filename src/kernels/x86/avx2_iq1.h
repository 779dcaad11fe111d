/* kernels/x86/avx2_iq1.h: the IQ1_S and IQ1_M decoders of the 256-bit IQ tile (x86/avx2_iq.h),
 * shared by x86/avx2_iq1.c (vpmaddwd and an add per chunk, IQ1_S's int16 sums) and
 * x86/avx512_iq1.c (AVX-512 VNNI's
 * vpdpwssd and vpdpbusd on 256-bit registers, and BMI2's pdep for the grid indices).
 * kernels/ref_iq1.c has the layouts.
 *
 * A chunk of 32 elements is 4 grid entries of 8 values -1, 0, 1 (4 plain loads). At one
 * activation row the kernel is bound by the number of instructions (llvm-mca -mcpu=znver3 of
 * the B=1 loop: 6 a cycle, 60 cycles a block before these decoders, the time measured), and
 * half of them made the 32 grid indices of a block. So:
 *   - IQ1_M takes the integers 8 g + shift (shift +-1 per 8 elements), made unsigned for
 *     vpmaddubsw (IQ1_M_TILE); 8 g is vpsignb of 8 by g (g is 0 or +-1), not three adds; a
 *     chunk's shift bytes and its 16 pair scales are one vpshufb each, of registers made once a
 *     block that hold the block's shifts and scales in both 128-bit lanes;
 *   - IQ1_S's shift is one per 32, so its sum is split (iq1_s_st): g's signs on the
 *     activations times one scale byte a chunk, and the shifts through the activations' sums;
 *   - the indices: with BMI2 (the AVX-512 table) a chunk's 4 are two pdep and an or, 16 bits
 *     each in one register; without it (AVX2 CPUs before Zen 3 run pdep in microcode), IQ1_M's
 *     by shifts and masks per index, IQ1_S's made in vector registers a block ahead
 *     (iq1_s_indices). Indices made in vector registers and read back at once measured slower
 *     (the loads wait for the store: AVX2 IQ1_S 0.84x; for the AVX-512 table one 512-bit store
 *     of the 32 indices read back by 8 loads, 0.73x; vmovq and vpextrq, 0.85x, on AVX2 too). */
#ifndef KILN_KERNELS_X86_AVX2_IQ1_H
#define KILN_KERNELS_X86_AVX2_IQ1_H
#include "kernels/x86/avx2_iq.h"

typedef struct {
    float d;
    __m256i sc[2]; /* 16-bit scales of chunks 4h..4h+3, in both 128-bit lanes (h = c / 4) */
    __m256i sh[2]; /* the shift bytes of chunks 4h..4h+3 (+-1), in both lanes */
    __m256i s9;    /* IQ1_M: 9 (2 s + 1) of each 16 elements, int16 (sc[] holds 2 (2 s + 1)) */
} iq1_st;
typedef iq1_st iq1_m_st;

/* x in both 128-bit lanes */
static inline __m256i iq1_both(__m128i x)
{
    return _mm256_broadcastsi128_si256(x);
}

/* The grid entries of 4 indices of 16 bits each in x (pdep's form) */
static inline __m256i iq1_lut4x(uint64_t x)
{
    return iq2_lut64x4(kl_iq1s_grid, (uint16_t)x, (uint16_t)(x >> 16), (uint16_t)(x >> 32),
                       (unsigned)(x >> 48));
}
/* 8 g + shift of grid entries g; spread picks the shift bytes out of sh. */
static inline __m256i iq1_8g_shift(__m256i g, __m256i sh, __m256i spread)
{
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g),
                           _mm256_shuffle_epi8(sh, spread));
}
static inline __m256i iq1_grid4(unsigned i0, unsigned i1, unsigned i2, unsigned i3, __m256i sh,
                                __m256i spread)
{
    return iq1_8g_shift(iq2_lut64x4(kl_iq1s_grid, i0, i1, i2, i3), sh, spread);
}
static inline __m256i iq1_grid4x(uint64_t x, __m256i sh, __m256i spread)
{
    return iq1_8g_shift(iq1_lut4x(x), sh, spread);
}

/* IQ1_S, split in two sums (fewer instructions a chunk than 8 g + shift as weights):
 *   sum sc (8 g + shift) a = sum 8 sc (g + 1) a + sum sc (shift - 8) a.
 * The first: a chunk's 32 g (0xFF, 0, 1) pick its unsigned weights 8 sc (g + 1) by vpshufb of a
 * two-byte table (0xFF, bit 7 set, reads 0; as x86/avx512vbmi_iq1.c) and multiply the
 * activations in sums of 4 (ACC8: vpdpbusd). AVX2 (SUM16) takes sc (g + 1) (<= 30) by
 * vpmaddubsw and adds the pair sums of 4 chunks as int16 (each at most 2 * 30 * 128, 4 at
 * most 30720: exact), then one vpmaddwd by 8 per 4 chunks. The second: shift and scale are the
 * chunk's, so it is the activations' sums of 16 (Q8_K's bsums) times sc (shift - 8), one
 * vpmaddwd a block. Int32 lane i holds elements 4 i..4 i + 3 of each chunk plus the shift sums
 * of chunk i, on both tables and in the packed kernel (x86/avx2_iq1_packed.c): the same
 * integers. */
typedef struct {
    float d;
    __m256i t1,
        t8;     /* sc (t8: 8 sc) of chunk c in byte c of both 128-bit lanes, twice it in 8 + c */
    __m256i ss; /* (2 s + 1) (shift - 8) of each 16 elements, int16 */
#ifndef __BMI2__
    const uint16_t *idx; /* the block's 32 grid indices, in iq1_s_idx */
#endif
} iq1_s_st;

#ifndef __BMI2__
/* Two blocks' grid indices, the block in hand's and the next one's: per thread, as the workers
 * run tiles at once. Made a block ahead, as indices read back right after their store wait for
 * it (0.84x); the row's first block still does (one in 8 at 2048 columns). */
static _Thread_local _Alignas(32) uint16_t iq1_s_idx[2][KL_QKK / 8];

/* The 32 grid indices of a block into idx: index 4 c + l is qs[4 c + l] and bits 3 l.. of
 * qh[c] at bit 8, qh[c] moved to the 4 lanes by vpshufb, then to bit 8 by a multiply (vpmullw
 * by 2^(8 - 3 l) for l < 3, vpmulhuw by 2^15 for l = 3: AVX2 has no shift per 16-bit lane). */
static inline void iq1_s_indices(const kl_block_iq1_s *w, uint16_t *idx)
{
    __m256i qh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qh));
    const __m256i lo =
        _mm256_setr_epi16(256, 32, 4, 0, 256, 32, 4, 0, 256, 32, 4, 0, 256, 32, 4, 0);
    const __m256i hi =
        _mm256_setr_epi16(0, 0, 0, -32768, 0, 0, 0, -32768, 0, 0, 0, -32768, 0, 0, 0, -32768);
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
    {
        /* qh[c] of chunks c = 4 h + 0, 1 in the low 128-bit lane, 4 h + 2, 3 in the high one */
        char a = (char)(8 * h), b = (char)(a + 1), e = (char)(a + 2), f = (char)(a + 3);
        char g = (char)(a + 4), k = (char)(a + 5), m = (char)(a + 6), n = (char)(a + 7);
        __m256i hb = _mm256_shuffle_epi8(qh, _mm256_setr_epi8(a, b, a, b, a, b, a, b, e, f, e, f, e,
                                                              f, e, f, g, k, g, k, g, k, g, k, m, n,
                                                              m, n, m, n, m, n));
        hb = _mm256_or_si256(_mm256_mullo_epi16(hb, lo), _mm256_mulhi_epu16(hb, hi));
        hb = _mm256_and_si256(hb, _mm256_set1_epi16(0x700));
        __m256i q = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w->qs + 16 * h)));
        _mm256_store_si256((__m256i *)(idx + 16 * h), _mm256_or_si256(q, hb));
    }
}
#endif

/* Block j of the row of nblk blocks at row */
static inline void iq1_s_begin(const kl_block_iq1_s *row, int64_t j, int64_t nblk, iq1_s_st *st)
{
    const kl_block_iq1_s *w = &row[j];
    __m128i qh = _mm_loadu_si128((const __m128i *)w->qh); /* scale s in bits 12-14, shift sign 15 */
    __m128i sc =
        _mm_or_si128(_mm_and_si128(_mm_srli_epi16(qh, 11), _mm_set1_epi16(14)), _mm_set1_epi16(1));
    __m128i neg = _mm_srai_epi16(qh, 15);
    __m128i ss = _mm_sub_epi16(_mm_sub_epi16(_mm_xor_si128(sc, neg), neg), _mm_slli_epi16(sc, 3));
    st->ss = _mm256_set_m128i(_mm_unpackhi_epi16(ss, ss), _mm_unpacklo_epi16(ss, ss));
    st->t1 = iq1_both(_mm_packus_epi16(sc, _mm_slli_epi16(sc, 1)));
    st->t8 = iq1_both(_mm_packus_epi16(_mm_slli_epi16(sc, 3), _mm_slli_epi16(sc, 4)));
    st->d = 0.125f * _cvtsh_ss(w->d);
#ifdef __BMI2__
    (void)nblk;
#else
    uint16_t *idx = iq1_s_idx[0];
    __asm__("" : "+r"(idx)); /* one base register */
    if (j == 0) iq1_s_indices(w, idx);
    if (j + 1 < nblk) iq1_s_indices(w + 1, idx + KL_QKK / 8 * ((j + 1) & 1));
    __asm__("" : "+m"(*(uint16_t(*)[KL_QKK / 4]) idx)); /* read back from memory */
    st->idx = idx + KL_QKK / 8 * (j & 1);
#endif
}
/* The grid entries of chunk c: index l is qs[4 c + l], bits 8-10 from bits 3 l.. of qh[c]. */
static inline __m256i iq1_s_grid(const kl_block_iq1_s *w, const iq1_s_st *st, int c)
{
#ifdef __BMI2__
    (void)st;
    uint32_t q4;
    memcpy(&q4, w->qs + 4 * c, 4);
    return iq1_lut4x(_pdep_u64(q4, 0x00FF00FF00FF00FFull) |
                     _pdep_u64(w->qh[c], 0x0700070007000700ull));
#else
    (void)w;
    uint64_t x;
    memcpy(&x, st->idx + 4 * c, 8);
    __asm__("" : "+r"(x)); /* split by shifts, not 4 loads */
    return iq1_lut4x(x);
#endif
}
/* A tile's locals: the blocks of weight row r, its activation rows' quants, scales, bsums and
 * float sums */
#define IQ1_TILE_ROWS(BLOCK, BT)                                                                   \
    int64_t nblk = g->cols / KL_QKK;                                                               \
    const BLOCK *w = (const BLOCK *)(g->W + (size_t)r * g->w_stride);                              \
    const int8_t *aq[BT];                                                                          \
    const float *ad[BT];                                                                           \
    const int16_t *bs[BT];                                                                         \
    __m256 acc[BT];                                                                                \
    q8k_rows(g, b, nb, aq, ad, bs, acc)

/* The IQ1_S tile: ACC8(s, u, v) adds the sums of 4 of the products of unsigned bytes u and
 * signed bytes v into the int32 lanes of s, or with SUM16 the pair sums into the int16 lanes
 * (u is then sc (g + 1), not 8 sc (g + 1)); up to BT activation rows. */
#define IQ1_S_TILE(ACC8, SUM16, BT)                                                                \
    static inline __attribute__((always_inline)) void iq1_s_tile(const kl_gemm *g, int64_t r,      \
                                                                 int b, int nb)                    \
    {                                                                                              \
        IQ1_TILE_ROWS(kl_block_iq1_s, BT);                                                         \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            iq1_s_st st;                                                                           \
            iq1_s_begin(w, j, nblk, &st);                                                          \
            /* the shift sums; the sums of chunks 0-3 and 4-7 (SUM16), or of all in i8[0] */       \
            __m256i is[BT], i8[2][BT];                                                             \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                is[k] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)),   \
                                          st.ss);                                                  \
                i8[0][k] = (SUM16) ? _mm256_setzero_si256() : is[k];                               \
                i8[1][k] = _mm256_setzero_si256();                                                 \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)                                    \
            {                                                                                      \
                __m256i gr = iq1_s_grid(&w[j], &st, c);                                            \
                __m256i t = _mm256_shuffle_epi8((SUM16) ? st.t1 : st.t8,                           \
                                                _mm256_set1_epi16((short)(c | (8 + c) << 8)));     \
                __m256i u = _mm256_shuffle_epi8(t, gr);                                            \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m256i a =                                                                    \
                        _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));        \
                    i8[(SUM16) ? c / 4 : 0][k] = ACC8(i8[(SUM16) ? c / 4 : 0][k], u, a);           \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                           \
                (SUM16) ? _mm256_add_epi32(                                                        \
                              is[k],                                                               \
                              _mm256_add_epi32(_mm256_madd_epi16(i8[0][k], _mm256_set1_epi16(8)),  \
                                               _mm256_madd_epi16(i8[1][k], _mm256_set1_epi16(8)))) \
                        : i8[0][k];                                                                \
            q8k_block_end(nb, acc, is, st.d, ad, j);                                               \
        }                                                                                          \
        q8k_store(g, r, b, nb, acc);                                                               \
    }

/* IQ1_M: entry e's nibble is nibble e % 2 of qh[e / 2] (index bits 8-10, the shift's sign in
 * bit 3); 3-bit scales per 16 in the scale words. */
static inline void iq1_m_begin(const kl_block_iq1_m *w, iq1_st *st)
{
    __m128i qh = _mm_loadu_si128((const __m128i *)w->qh), m4 = _mm_set1_epi8(0x0F);
    __m128i n0 = _mm_and_si128(qh, m4), n1 = _mm_and_si128(_mm_srli_epi16(qh, 4), m4);
    __m128i e[2] = {_mm_unpacklo_epi8(n0, n1), _mm_unpackhi_epi8(n0, n1)}; /* entry nibbles */
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
    {
        __m128i neg = _mm_cmpgt_epi8(e[h], _mm_set1_epi8(7)); /* bit 3 set */
        st->sh[h] = iq1_both(_mm_or_si128(neg, _mm_set1_epi8(1)));
    }
    /* scale t: bits 3 (t % 4).. of word t / 4, moved to bits 13-15 by a multiply (AVX2 has no
     * per-word shift), then down */
    uint64_t sw;
    memcpy(&sw, w->scales, 8);
    __m256i v =
        _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)sw),
                            _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5,
                                             4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7));
    v = _mm256_mullo_epi16(v, _mm256_setr_epi16(1 << 13, 1 << 10, 1 << 7, 1 << 4, 1 << 13, 1 << 10,
                                                1 << 7, 1 << 4, 1 << 13, 1 << 10, 1 << 7, 1 << 4,
                                                1 << 13, 1 << 10, 1 << 7, 1 << 4));
    __m256i s = iq2_odd16(_mm256_srli_epi16(v, 13));
    st->s9 = _mm256_mullo_epi16(s, _mm256_set1_epi16(9));
    s = _mm256_add_epi16(s, s);
    st->sc[0] = _mm256_permute2x128_si256(s, s, 0x00);
    st->sc[1] = _mm256_permute2x128_si256(s, s, 0x11);
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
}
static inline __m256i iq1_m_chunk32(const kl_block_iq1_m *w, const iq1_st *st, int c)
{
    /* entry 4 (c % 4) + l's shift byte over elements 8 l..8 l + 7 */
    char b = (char)(4 * (c % 4)), b1 = (char)(b + 1), b2 = (char)(b + 2), b3 = (char)(b + 3);
    __m256i spread = _mm256_setr_epi8(b, b, b, b, b, b, b, b, b1, b1, b1, b1, b1, b1, b1, b1, b2,
                                      b2, b2, b2, b2, b2, b2, b2, b3, b3, b3, b3, b3, b3, b3, b3);
#ifdef __BMI2__
    uint32_t q4;
    uint16_t h;
    memcpy(&q4, w->qs + 4 * c, 4);
    memcpy(&h, w->qh + 2 * c, 2);
    return iq1_grid4x(_pdep_u64(q4, 0x00FF00FF00FF00FFull) |
                          (_pdep_u64(h, 0x0F000F000F000F00ull) & 0x0700070007000700ull),
                      st->sh[c / 4], spread);
#else
    const uint8_t *q = w->qs + 4 * c;
    unsigned h0 = w->qh[2 * c], h1 = w->qh[2 * c + 1];
    return iq1_grid4(q[0] | (h0 << 8 & 0x700), q[1] | (h0 << 4 & 0x700), q[2] | (h1 << 8 & 0x700),
                     q[3] | (h1 << 4 & 0x700), st->sh[c / 4], spread);
#endif
}
/* Chunk c's sixteens take scales 2 c and 2 c + 1: words 2 (c % 4) and 2 (c % 4) + 1 of
 * sc[c / 4], one per 128-bit lane. */
static inline __m256i iq1_m_chunk_scales(const iq1_st *st, int c)
{
    short lo = (short)(0x100 * (4 * (c % 4) + 1) + 4 * (c % 4)), hi = (short)(lo + 0x202);
    __m256i w = _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi);
    return _mm256_shuffle_epi8(st->sc[c / 4], w);
}

/* The IQ1_M tile (x86/avx2_iq.h's IQ tile with unsigned weights): with w = 8 g + shift,
 *   sum sc w a = sum 2 sc u a - sum 9 sc a, u = (w + 9) / 2 in 0..9 (w + 9 is even),
 * u by vpavgb of w + 9 and zero, vpmaddubsw'd with the activations as they are (no vpsignb on
 * each activation row) and the pair sums times 2 sc by ACC(s, p, sc); the second sum is the
 * activations' sums of 16 (bsums) times 9 sc, one vpmaddwd a block. Int32 lane i holds elements
 * 4 i..4 i + 3 of each chunk and the bsums of 16-element groups 2 i, 2 i + 1, as in the packed
 * kernel (x86/avx2_iq1_packed.c): the same integers. */
#define IQ1_M_TILE(ACC, BT)                                                                        \
    static inline __attribute__((always_inline)) void iq1_m_tile(const kl_gemm *g, int64_t r,      \
                                                                 int b, int nb)                    \
    {                                                                                              \
        IQ1_TILE_ROWS(kl_block_iq1_m, BT);                                                         \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            iq1_st st;                                                                             \
            iq1_m_begin(&w[j], &st);                                                               \
            __m256i is[BT];                                                                        \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm256_sub_epi32(         \
                _mm256_setzero_si256(),                                                            \
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), st.s9));  \
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)                                    \
            {                                                                                      \
                __m256i q = iq1_m_chunk32(&w[j], &st, c), sc = iq1_m_chunk_scales(&st, c);         \
                __m256i u = _mm256_avg_epu8(_mm256_add_epi8(q, _mm256_set1_epi8(9)),               \
                                            _mm256_setzero_si256());                               \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m256i a =                                                                    \
                        _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));        \
                    is[k] = ACC(is[k], _mm256_maddubs_epi16(u, a), sc);                            \
                }                                                                                  \
            }                                                                                      \
            q8k_block_end(nb, acc, is, st.d, ad, j);                                               \
        }                                                                                          \
        q8k_store(g, r, b, nb, acc);                                                               \
    }

/* The two kernels: IQ1_S's tile with ACC8 and SUM16, IQ1_M's with ACC, tiles of up to BT
 * activation rows and GEMM the row walk for them (see IQ2_TILE_DOT). */
#define IQ1_GEMMS(NAME_S, NAME_M, ACC8, SUM16, ACC, BT, GEMM)                                      \
    IQ1_S_TILE(ACC8, SUM16, BT)                                                                    \
    GEMM(NAME_S, iq1_s)                                                                            \
    IQ1_M_TILE(ACC, BT)                                                                            \
    GEMM(NAME_M, iq1_m)
#endif
