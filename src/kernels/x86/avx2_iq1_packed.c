/* kernels/x86/avx2_iq1_packed.c: IQ1_S and IQ1_M packed into 2-bit codes (kernels/pack_iq1.c
 * has the layouts, the ones x86/avx512vbmi_iq1.c reads) against Q8_K activations, AVX2. IQ1_M's
 * tile is below its IQ1_S's.
 *
 * IQ1_S: the tile is the plain AVX2 one's (x86/avx2_iq1.h, IQ1_S_TILE with SUM16) with the grid
 * lookups gone: a 32-byte half of a record's codes holds elements 64 p + i (i 0..31 or
 * 32..63) of the four planes p, so each plane's half is one chunk of 32 elements in the
 * activations' order, and g's sign bytes for vpsignb are the chunk's code bits masked, less
 * 1 there (code g + 1 = 0, 1, 2 gives negative, 0, positive: two byte operations, no shift).
 * The chunk's scale sc = 2 s + 1 comes in every byte from a table by s; the pair sums of
 * sc g a add up in int16 over the block, the shifts through the activations' bsums, and the
 * block ends as that tile's does. So the int32 lanes and the float steps are the plain
 * kernel's: packed or not, AVX2 gives the same bits (within 1e-5 of the reference, as the
 * plain kernel).
 *
 * Measured on Zen 5 (256 x 2048 in L2, ns a block, one activation row): this 4.3, the plain
 * kernel 8.9; a dot with the reference's float steps (its bits: the 8 blocks' integers summed
 * across lanes together, then added in order) 4.6 at B=1 but 0.94x this at B=2-8; here the
 * scale broadcast by vpshufb of the block's scales 5.3 (vpshufb, vpmaddubsw and vpmaddwd share
 * two pipes: 4 of each take 4.1 cycles), its table by scalar shifts of each nibble 4.5. */
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/packed_prefetch.h"
#include "kernels/x86/tile4_gemm.h"

void kl_avx2_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m_packed(const kl_gemm *g, int64_t r0, int64_t r1);

#define BT 4  /* activation rows per tile */
#define PR 16 /* rows per panel (pack_iq1.c) */

/* Per nibble n of the record's s (scale s in bits 0-2, the shift's sign in bit 3): sc shift,
 * +-(2 s + 1) */
static const _Alignas(16) int8_t ss_tab[16] = {1,  3,  5,  7,  9,  11,  13,  15,
                                               -1, -3, -5, -7, -9, -11, -13, -15};
/* sc = 2 s + 1 in all 32 bytes, by s */
static _Alignas(32) uint8_t sc_bytes[8][32];

/* The 32 bytes at byte off of a table of 32-byte rows (the row picked by scalar shifts and
 * masks of a record's bits, no vector shuffle) */
static inline __attribute__((always_inline)) __m256i tab_row(const void *tab, uint64_t off)
{
    return _mm256_load_si256((const __m256i *)((const uint8_t *)tab + off));
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
        g->W + (size_t)(r / PR) * g->w_stride + ((size_t)(r % PR) * nblk + (size_t)j) * rec;
    if (b == 0) kl_pf_share(q, rec, 0, 1);
    return q;
}

static void tab_init(void)
{
    for (int s = 0; s < 8; s++)
        memset(sc_bytes[s], 2 * s + 1, 32);
}

/* sc shift of the block's 16 sixteens as int16, from its nibbles sn (the plain tile's ss) */
static inline __attribute__((always_inline)) __m256i iq1p_shifts(uint32_t sn)
{
    /* the nibbles' bytes: 0, 2, 4, 6 in bytes 0-3, 1, 3, 5, 7 in bytes 4-7 */
    uint64_t x = (uint64_t)(sn & 0x0F0F0F0Fu) | (uint64_t)(sn >> 4 & 0x0F0F0F0Fu) << 32;
    __m128i n16 = _mm_shuffle_epi8(_mm_cvtsi64_si128((long long)x),
                                   _mm_setr_epi8(0, 0, 4, 4, 1, 1, 5, 5, 2, 2, 6, 6, 3, 3, 7, 7));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(_mm_load_si128((const __m128i *)ss_tab), n16));
}

/* Chunk c = 2 p + h (plane p, half h of the codes qh): g's sign bytes and its scale's bytes,
 * the table's row at byte 32 s, from sn5 = sn << 5 */
static inline __attribute__((always_inline)) __m256i iq1p_signs(const __m256i *qh, int c)
{
    const int p = c / 2;
    return _mm256_sub_epi8(_mm256_and_si256(qh[c % 2], _mm256_set1_epi8((char)(3 << (2 * p)))),
                           _mm256_set1_epi8((char)(1 << (2 * p))));
}
static inline __attribute__((always_inline)) __m256i iq1p_scale(uint64_t sn5, int c)
{
    return tab_row(sc_bytes, sn5 >> (4 * c) & 0xE0);
}

static inline __attribute__((always_inline)) void iq1p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    TILE_ROWS;
    for (int64_t j = 0; j < nblk; j++) {
        const uint8_t *q = record(g, r, j, b, KL_IQ1P_REC);
        uint32_t sn;
        uint16_t dh;
        memcpy(&sn, q + KL_IQ1P_S, 4), memcpy(&dh, q + KL_IQ1P_D, 2);
        const uint64_t sn5 = (uint64_t)sn << 5;
        __m256i ss = iq1p_shifts(sn);
        __m256i qh[2] = {_mm256_loadu_si256((const __m256i *)q),
                         _mm256_loadu_si256((const __m256i *)(q + 32))};
        __m256i is[BT], i8[BT]; /* the shift sums; the chunks' pair sums */
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
        {
            is[k] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), ss);
            i8[k] = _mm256_setzero_si256();
        }
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            __m256i gs = iq1p_signs(qh, c), sc = iq1p_scale(sn5, c);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                i8[k] = _mm256_add_epi16(i8[k], _mm256_maddubs_epi16(sc, _mm256_sign_epi8(a, gs)));
                __asm__("" : "+x"(i8[k])); /* keeps GCC from regrouping the adds */
            }
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
            _mm256_add_epi32(is[k], _mm256_madd_epi16(i8[k], _mm256_set1_epi16(8)));
        q8k_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    q8k_store(g, r, b, nb, acc);
}
TILE4_GEMM(kl_avx2_gemm_iq1_s_packed, iq1p, PR)

/* IQ1_M packed (the same code bytes, codes k = g + 2 in 1..3, the shift signs and scales
 * beside). The plain AVX2 tile's (x86/avx2_iq.h with iq1_m_chunk32) weights w = 8 g + shift as
 * bytes, |w| by the activations with w's signs, pair sums times the chunk's two scales by
 * vpmaddwd, with no grid lookups and no shuffles: chunk c's 8 k is its plane's code bits moved
 * to bits 3-4 and masked, w that plus shift - 16, a row of a table by the chunk's nibble of
 * sh; its scales a row of a table by its 6 bits of sd (scalar shifts and masks pick both rows).
 * The int32 lanes are the plain tile's (elements 4 i..4 i + 3 of each chunk in lane i), so are
 * the float steps, so the bits: packed or not, AVX2 gives the same. (A split as IQ1_S's, 8 g
 * on the activations' signs times sc in int16, needs a second vpmaddubsw a chunk for the
 * shifts, which are per 8 elements and so not the bsums' 16; sc |w| in the unsigned operand,
 * up to 135, can saturate vpmaddubsw's pair sums.) */
/* shift - 16 in each byte (-15, or -17 for elements 8 l..8 l + 7 where bit l is set), by a
 * chunk's nibble of sh */
static _Alignas(32) int8_t mp_shift[16][32];
/* 2 s + 1 as int16 of the chunk's two sixteens, x & 7's in words 0-7 and x >> 3's in 8-15, by
 * a chunk's 6 bits x of sd */
static _Alignas(32) int16_t mp_scale[64][16];

static void iq1mp_init(void)
{
    for (int n = 0; n < 16; n++)
        for (int i = 0; i < 32; i++)
            mp_shift[n][i] = (int8_t)(n >> (i / 8) & 1 ? -17 : -15);
    for (int x = 0; x < 64; x++)
        for (int i = 0; i < 16; i++)
            mp_scale[x][i] = (int16_t)(2 * (i < 8 ? x & 7 : x >> 3) + 1);
}

/* Chunk c = 2 p + h's w = 8 g + shift: plane p's codes k (bits 2 p, 2 p + 1 of the half qh[h])
 * as 8 k, plus the row of mp_shift at byte sh5 >> 4 c & 0x1E0 (sh5 = sh << 5) */
static inline __attribute__((always_inline)) __m256i iq1mp_w(const __m256i *qh, uint64_t sh5, int c)
{
    const int p = c / 2;
    __m256i x = qh[c % 2];
    x = p == 0   ? _mm256_slli_epi16(x, 3)
        : p == 1 ? _mm256_add_epi8(x, x)
                 : _mm256_srli_epi16(x, 2 * p - 3);
    return _mm256_add_epi8(_mm256_and_si256(x, _mm256_set1_epi8(0x18)),
                           tab_row(mp_shift, sh5 >> (4 * c) & 0x1E0));
}

static inline __attribute__((always_inline)) void iq1mp_tile(const kl_gemm *g, int64_t r, int b,
                                                             int nb)
{
    TILE_ROWS; /* bs unused: the shifts are in the weights */
    (void)bs;
    for (int64_t j = 0; j < nblk; j++) {
        const uint8_t *q = record(g, r, j, b, KL_IQ1MP_REC);
        uint32_t sh;
        uint64_t sd;
        uint16_t dh;
        memcpy(&sh, q + KL_IQ1MP_SH, 4), memcpy(&sd, q + KL_IQ1MP_SD, 8);
        memcpy(&dh, q + KL_IQ1MP_SD + 6, 2); /* sd's bits 48-63 */
        const uint64_t sh5 = (uint64_t)sh << 5, sd5 = sd << 5;
        __m256i qh[2] = {_mm256_loadu_si256((const __m256i *)q),
                         _mm256_loadu_si256((const __m256i *)(q + 32))};
        __m256i is[BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            __m256i wq = iq1mp_w(qh, sh5, c), sc = tab_row(mp_scale, sd5 >> (6 * c) & 0x7E0);
            __m256i uq = _mm256_sign_epi8(wq, wq);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                is[k] = _mm256_add_epi32(
                    is[k],
                    _mm256_madd_epi16(_mm256_maddubs_epi16(uq, _mm256_sign_epi8(a, wq)), sc));
                __asm__("" : "+x"(is[k])); /* as the plain tile's accumulate */
            }
        }
        q8k_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    q8k_store(g, r, b, nb, acc);
}
TILE4_GEMM(kl_avx2_gemm_iq1_m_packed, iq1mp, PR)

/* IQ1_S's and IQ1_M's packed rows of the AVX2 table (once, from kl_isa_avx2_own). */
void kl_avx2_types_iq1_packed(kl_isa *isa)
{
    tab_init();
    iq1mp_init();
    isa->types[KL_IQ1_M].pack_bytes = kl_pack_iq1_m_bytes;
    isa->types[KL_IQ1_M].pack = kl_pack_iq1_m;
    isa->types[KL_IQ1_M].gemm_packed = kl_avx2_gemm_iq1_m_packed;
    isa->types[KL_IQ1_S].pack_bytes = kl_pack_iq1_s_bytes;
    isa->types[KL_IQ1_S].pack = kl_pack_iq1_s;
    isa->types[KL_IQ1_S].gemm_packed = kl_avx2_gemm_iq1_s_packed;
}
