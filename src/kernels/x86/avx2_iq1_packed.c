/* kernels/x86/avx2_iq1_packed.c: IQ1_S and IQ1_M packed into 2-bit codes (kernels/pack_iq1.c
 * has the layouts: IQ1_S's the one x86/avx512vbmi_iq1.c reads, IQ1_M's this table's own) against
 * Q8_K activations, AVX2. IQ1_M's tile is below its IQ1_S's.
 *
 * IQ1_S: the plain AVX2 tile's sums (x86/avx2_iq1.h: 8 sc (g + 1) times the activations,
 * sc (shift - 8) times their bsums) with the grid lookups gone: a 32-byte half of a record's
 * codes holds elements 64 p + i (i 0..31 or 32..63) of the four planes p, so each plane's half
 * is one chunk of 32 elements in the activations' order. The codes' low nibbles (planes 0, 1)
 * and high ones (2, 3), two of each a block, index a 16-byte table by the chunk's scale that
 * holds sc (g + 1) for its plane's two bits: one vpshufb gives a chunk's unsigned weights,
 * vpmaddubsw'd with the activations as they are. The int32 lanes and float steps are the plain
 * kernel's: packed or not, AVX2 gives the same bits (within 1e-5 of the reference).
 *
 * Measured (Zen 5, 8192x2048 streamed, 1 thread, GB/s of the file's bytes at B=1, GFLOP/s at
 * B=4): this 12.8-13.4 and 206-215; the split it replaced (g's signs by vpsignb on the
 * activations times sc, five vector operations a chunk) 10.8-11.3 and 175-179. vpshufb,
 * vpmaddubsw and vpmaddwd share two pipes (4 of each take 4.1 cycles), so a chunk's vpshufb
 * costs as its vpmaddubsw; the table row is picked by scalar shifts of the scale nibbles. */
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/packed_prefetch.h"
#include "kernels/x86/tile4_gemm.h"

void kl_avx2_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m_packed(const kl_gemm *g, int64_t r0, int64_t r1);

#define BT 4 /* activation rows per tile */

/* Per nibble n of the record's s (scale s in bits 0-2, the shift's sign in bit 3): -sc (shift -
 * 8) = 7 sc or 9 sc, sc = 2 s + 1 (at most 135: unsigned) */
static const _Alignas(16) uint8_t ss_tab[16] = {7, 21, 35, 49, 63, 77, 91,  105,
                                                9, 27, 45, 63, 81, 99, 117, 135};
/* sc (g + 1) by a code nibble (plane 2 q's code in bits 0-1, 2 q + 1's in bits 2-3), at byte
 * 32 s + 16 q */
static _Alignas(32) uint8_t u_tab[8][2][16];

/* The 16 bytes at byte off of a table of 16-byte rows, in both 128-bit lanes */
static inline __attribute__((always_inline)) __m256i tab_row16(const void *tab, uint64_t off)
{
    return _mm256_broadcastsi128_si256(
        _mm_load_si128((const __m128i *)((const uint8_t *)tab + off)));
}
/* A tile's locals: the blocks a row, its activation rows' quants, scales, bsums (from
 * x86/avx2_q8k_rows.h) and float sums */
#define TILE_ROWS                                                                                  \
    int64_t nblk = g->cols / KL_QKK;                                                               \
    const int8_t *aq[BT];                                                                          \
    const float *ad[BT];                                                                           \
    const int16_t *bs[BT];                                                                         \
    __m256 acc[BT];                                                                                \
    q8k_rows(g, b, nb, aq, ad, bs, acc)

/* Weight row r's record j, of rec bytes, in its panel; the first tile over it (activation
 * rows from b = 0) asks for the lines KL_PF_AHEAD on (a record spans two lines or three). */
static inline __attribute__((always_inline)) const uint8_t *record(const kl_gemm *g, int64_t r,
                                                                   int64_t j, int b, size_t rec)
{
    size_t nblk = (size_t)(g->cols / KL_QKK);
    const uint8_t *q =
        g->W + (size_t)(r / KL_PR) * g->w_stride + ((size_t)(r % KL_PR) * nblk + (size_t)j) * rec;
    if (b == 0) kl_pf_share(q, rec, 0, 1);
    return q;
}

static void tab_init(void)
{
    for (int s = 0; s < 8; s++)
        for (int q = 0; q < 2; q++)
            for (int n = 0; n < 16; n++)
                u_tab[s][q][n] = (uint8_t)((2 * s + 1) * (n >> (2 * q) & 3));
}

/* -sc (shift - 8) of the block's 16 sixteens as int16, from its nibbles sn */
static inline __attribute__((always_inline)) __m256i iq1p_shifts(uint32_t sn)
{
    /* the nibbles' bytes: 0, 2, 4, 6 in bytes 0-3, 1, 3, 5, 7 in bytes 4-7 */
    uint64_t x = (uint64_t)(sn & 0x0F0F0F0Fu) | (uint64_t)(sn >> 4 & 0x0F0F0F0Fu) << 32;
    __m128i n16 = _mm_shuffle_epi8(_mm_cvtsi64_si128((long long)x),
                                   _mm_setr_epi8(0, 0, 4, 4, 1, 1, 5, 5, 2, 2, 6, 6, 3, 3, 7, 7));
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_load_si128((const __m128i *)ss_tab), n16));
}

static inline __attribute__((always_inline)) void iq1p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    TILE_ROWS;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t j = 0; j < nblk; j++) {
        const uint8_t *q = record(g, r, j, b, KL_IQ1P_REC);
        uint32_t sn;
        uint16_t dh;
        memcpy(&sn, q + KL_IQ1P_S, 4), memcpy(&dh, q + KL_IQ1P_D, 2);
        const uint64_t sn5 = (uint64_t)sn << 5;
        __m256i ss = iq1p_shifts(sn);
        __m256i x0 = _mm256_loadu_si256((const __m256i *)q),
                x1 = _mm256_loadu_si256((const __m256i *)(q + 32));
        /* code nibbles: planes 0, 1 of half h in nib[h], planes 2, 3 in nib[2 + h] */
        __m256i nib[4] = {_mm256_and_si256(x0, m4), _mm256_and_si256(x1, m4),
                          _mm256_and_si256(_mm256_srli_epi16(x0, 4), m4),
                          _mm256_and_si256(_mm256_srli_epi16(x1, 4), m4)};
        __m256i is[BT], i16[2][BT]; /* the shift sums; chunks 0-3's and 4-7's pair sums */
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            const int p = c / 2;
            __m256i u = _mm256_shuffle_epi8(
                tab_row16(u_tab, (sn5 >> (4 * c) & 0xE0) + 16 * (p & 1)), nib[(p / 2) * 2 + c % 2]);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                __m256i d = _mm256_maddubs_epi16(u, a);
                i16[c / 4][k] = c % 4 ? _mm256_add_epi16(i16[c / 4][k], d) : d;
                __asm__("" : "+x"(i16[c / 4][k])); /* keeps GCC from regrouping the adds */
            }
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
        {
            __m256i s8 = _mm256_add_epi32(_mm256_madd_epi16(i16[0][k], _mm256_set1_epi16(8)),
                                          _mm256_madd_epi16(i16[1][k], _mm256_set1_epi16(8)));
            is[k] = _mm256_sub_epi32(
                s8, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), ss));
        }
        q8k_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    q8k_store(g, r, b, nb, acc);
}
TILE4_GEMM(kl_avx2_gemm_iq1_s_packed, iq1p, KL_PR)

/* IQ1_M in the AVX2 table's own record (kernels/pack_iq1.c: IQ1_S's code bytes, codes k = g + 1
 * in 0..2; per chunk of 32 one row offset into mp_row, which holds its shift signs and scales):
 * the plain AVX2 tile's sums (x86/avx2_iq1.h's IQ1_M_TILE: u = (w + 9) / 2 of w = 8 g + shift,
 * unsigned, times the activations, the pair sums times 2 sc; 9 sc times the bsums) with no grid
 * lookups: chunk c's u = 4 k + (shift + 1) / 2 is its plane's code bits moved to bits 2-3 and
 * masked plus bit 0 of its row's bytes, its 16 scales the row's words masked. The int32 lanes
 * are the plain tile's, so are the float steps, so the bits: packed or not, AVX2 gives the same.
 *
 * At one activation row the tile is bound by its vector operations (about 70 a block; Zen 5 runs
 * four a cycle) more than by its loads. Measured (Zen 5, 1 thread, B=1, 512x2048 in cache, GB/s
 * of the file's bytes): this 11.5-12.0; the record before it (shared with VBMI, rows picked by
 * scalar shifts and masks of packed fields, ~130 instructions a block) 10.7-11.4; a row each for
 * the shifts and the scales (two dependent loads a chunk) 11.4-12.0; the shift bits as one
 * register, bit c for chunk c (a shift, a mask and an add a chunk) 10.5-11.1. Without the
 * shifts at all it would run 16-17: they are the cost the file's layout leaves. */
/* By n | x << 4 (n: bit l set where elements 8 l..8 l + 7 of the chunk shift by +1/8; x: the
 * scales s of its sixteens, bits 0-2 and 3-5): word i is 2 (2 s + 1) + (shift + 1) / 2 with
 * (shift + 1) / 2 again in its high byte, for elements 2 i, 2 i + 1 (sixteen i / 8, eight i / 4):
 * bit 0 of each byte is the shift's, bits 1-7 of word i the pair's scale. 32 KB. */
static _Alignas(32) uint16_t mp_row[1024][16];

static void iq1mp_init(void)
{
    for (int n = 0; n < 16; n++)
        for (int x = 0; x < 64; x++)
            for (int i = 0; i < 16; i++) {
                int s01 = n >> (i / 4) & 1, sc2 = 2 * (2 * (i < 8 ? x & 7 : x >> 3) + 1);
                mp_row[n | x << 4][i] = (uint16_t)((sc2 + s01) | s01 << 8);
            }
}

/* Chunk c = 2 p + h's u = (w + 9) / 2 = 4 k + (shift + 1) / 2 of w = 8 g + shift: plane p's codes
 * k (bits 2 p, 2 p + 1 of the half qh[h]) as 4 k, plus bit 0 of its row's bytes */
static inline __attribute__((always_inline)) __m256i iq1mp_u(const __m256i *qh, __m256i row, int c)
{
    const int p = c / 2;
    __m256i x = qh[c % 2];
    x = p == 0 ? _mm256_slli_epi16(x, 2) : p == 1 ? x : _mm256_srli_epi16(x, 2 * p - 2);
    return _mm256_add_epi8(_mm256_and_si256(x, _mm256_set1_epi8(0x0C)),
                           _mm256_and_si256(row, _mm256_set1_epi8(1)));
}

/* 9 (2 s + 1) of the block's 16 sixteens as int16, from the chunks' row offsets 4 (n | x << 4)
 * at ix: chunk c's twice in dword c (lane 0 c 0-3, lane 1 4-7), x's fields masked in place and
 * moved to 18 s by vpmulhuw (x 2^16 18 / 64 and / 512) */
static inline __attribute__((always_inline)) __m256i iq1mp_scales9(const uint8_t *ix)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ix));
    v = _mm256_blend_epi32(_mm256_unpacklo_epi16(v, v), _mm256_unpackhi_epi16(v, v), 0xF0);
    v = _mm256_and_si256(v, _mm256_set1_epi32(0x0E0001C0));
    v = _mm256_mulhi_epu16(v, _mm256_set1_epi32(2304 << 16 | 18432));
    return _mm256_add_epi16(v, _mm256_set1_epi16(9));
}

static inline __attribute__((always_inline)) void iq1mp_tile(const kl_gemm *g, int64_t r, int b,
                                                             int nb)
{
    TILE_ROWS;
    for (int64_t j = 0; j < nblk; j++) {
        const uint8_t *q = record(g, r, j, b, KL_IQ1MA_REC);
        float d;
        memcpy(&d, q + KL_IQ1MA_D, 4);
        __m256i qh[2] = {_mm256_loadu_si256((const __m256i *)q),
                         _mm256_loadu_si256((const __m256i *)(q + 32))};
        __m256i sc9 = iq1mp_scales9(q + KL_IQ1MA_IX);
        __m256i is[BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), sc9));
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            uint16_t o;
            memcpy(&o, q + KL_IQ1MA_IX + 2 * c, 2);
            __m256i row =
                _mm256_load_si256((const __m256i *)((const uint8_t *)mp_row + 8 * (size_t)o));
            __m256i u = iq1mp_u(qh, row, c), sc = _mm256_and_si256(row, _mm256_set1_epi16(0xFE));
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                is[k] = _mm256_add_epi32(is[k], _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), sc));
                __asm__("" : "+x"(is[k])); /* as the plain tile's accumulate */
            }
        }
        q8k_block_end(nb, acc, is, d, ad, j);
    }
    q8k_store(g, r, b, nb, acc);
}
TILE4_GEMM(kl_avx2_gemm_iq1_m_packed, iq1mp, KL_PR)

/* IQ1_S's and IQ1_M's packed rows of the AVX2 table (once, from kl_isa_avx2_own). */
void kl_avx2_types_iq1_packed(kl_isa *isa)
{
    tab_init();
    iq1mp_init();
    isa->types[KL_IQ1_M].pack_bytes = kl_pack_iq1_m_avx2_bytes;
    isa->types[KL_IQ1_M].pack = kl_pack_iq1_m_avx2;
    isa->types[KL_IQ1_M].gemm_packed = kl_avx2_gemm_iq1_m_packed;
    isa->types[KL_IQ1_S].pack_bytes = kl_pack_iq1_s_bytes;
    isa->types[KL_IQ1_S].pack = kl_pack_iq1_s;
    isa->types[KL_IQ1_S].gemm_packed = kl_avx2_gemm_iq1_s_packed;
}
