/* kernels/x86/avx512vbmi_iq.c: the IQ2 types against Q8_K activations in plane order for
 * AVX-512 CPUs with VBMI, GFNI and BITALG (Ice Lake and later, Zen 4 and later): IQ2_XXS,
 * IQ2_XS and IQ2_S without gathers or sign tables, by x86/avx512_iq.h's tiles over a plane
 * decoder (below); x86/avx512_iq2.c serves AVX-512 CPUs without VBMI. IQ3_XXS and IQ3_S:
 * x86/avx512vbmi_iq3.c (a plane dot over T4 activations); IQ1_S and IQ1_M:
 * x86/avx512vbmi_iq1.c.
 *
 * Grids in registers. Every grid entry is 8 bytes drawn from at most 4 magnitudes, so an entry
 * is a 16-bit code: the number of each byte's value in the sorted list of the grid's values, 2
 * bits per element (kl_avx512vbmi_grid_codes), kept as two byte planes of 256, 512 or 1024
 * bytes: the fields of the even and of the odd elements. A block looks up all its indices at
 * once: vpermt2b picks from 128 plane bytes by an index's low 7 bits, and blends by bits 7, 8
 * and 9 pick the window.
 *
 * Signs in the weights. IQ2_XXS and IQ2_XS store 7 sign bits per 8 elements, the 8th making the
 * count even: vpmultishiftqb (or a shift) brings each 7-bit field to a byte, and since the 8th
 * sign is the XOR of the 7, a gf2p8affineqb (a bit matrix over GF(2)) moves any two signs of
 * the byte, parity included, to bits 4 and 5. IQ2_S stores the sign bytes as they stand. The
 * plane dot's index bytes (below) hold two 2-bit codes and their two signs, and one vpermb
 * over a 64-byte table gives a plane's signed weights, + 64 (IQ2_BIAS) to make them unsigned
 * bytes for vpdpbusd / vpmaddubsw: the tile takes 64 times the activations' sums (bsums, one
 * vpmaddwd a row and block) back out, exactly. Against signs as a mask moved onto the
 * activations (a vptestmb a plane, then a masked vpsubb a plane and activation row), one thread
 * from cache, alternated: IQ2_XXS B=1 7.13 -> 6.52 ns a block, B=8 27.2 -> 22.9; IQ2_XS B=1
 * 10.3 -> 9.54, B=8 34.1 -> 33.3; IQ2_S B=1 13.5 -> 12.6, B=8 38.5 -> 37.1 (IQ2_XS and IQ2_S
 * at B=8 are bound by vpmaddubsw + vpdpwssd, two multiplies a plane and row).
 *
 * The plane dot (IQ2_XXS, IQ2_XS, IQ2_S). A block's activations are in T8 order (kernels/impl.h,
 * KL_ACT_Q8_K_T8; the row is in T8P, T8 over pairs of blocks, below; permuted once per matmul
 * after the Q8_K quantizer), where the 64 bytes at 64k hold element 2k of each of a block's 32
 * entries, then element 2k + 1: no weight spread per chunk. With the codes split by element parity
 * (eo2xxs, eo2xs, eo2s: the fields of elements 0, 2, 4, 6 in one byte, of 1, 3, 5, 7 in the other),
 * one vector of a block's 32 even and 32 odd codes y gives two vectors of index bytes: (y & 15) |
 * the signs of plane pairs 0 and 1, and ((y >> 4) & 15) | those of pairs 2 and 3; each pair is
 * then one vpermb.
 * IQ2_XXS (a scale per 32): vpdpbusd adds 4 entries of one sub-block per int32 lane and the
 * scale is one vpmulld per block and row; IQ2_XS and IQ2_S (a scale per 16): vpmaddubsw pairs
 * entries 2w, 2w + 1 of one 16-element group and vpdpwssd scales them. Against the chunk decoder
 * (a spread vpermt2b, a vpmultishiftqb, a vpermb, a vpshufbitqmb, a scale load and vpmaddubsw +
 * vpdpwssd per 64 elements), bench-kernels, one thread: IQ2_XXS B=1 1.24x, B=4 1.28x; IQ2_XS
 * B=1 1.07-1.38x, B=8 1.08x; IQ2_S B=1 1.13-1.33x, B=8 1.03-1.15x. The lanes add in another
 * order than the chunk tile's, so the float results differ in the last bits: the 1B IQ2_XXS
 * test file (a random model, flat logits) leaves the chunk tile's greedy tokens at the 4th, where
 * the scalar reference and AVX2 pick the plane dot's token.
 *
 * Pairs of blocks. The activations are in T8P order (T8 with plane j of two blocks in one
 * vector), so a pair's 64 entries fill the vectors that one block's 32 filled twice over (even
 * and odd elements): one lookup of 64 indices per code plane, one vpermt2b of the sign fields,
 * 4 index vectors and one scale vector serve 8 planes of two blocks, and the two blocks take
 * their scales and floats together (one vpmulld or none, one vfmadd a row). An odd last block
 * takes the one-block planes (T8 order). One thread from cache, alternated, one block at a time
 * (signs in the weights) -> pairs: IQ2_XXS B=1 6.52 -> 5.24 ns a block, B=8 22.9 -> 21.2;
 * IQ2_XS 9.54 -> 7.47, 33.3 -> 27.5-28.7; IQ2_S 12.6 -> 9.0, 37.1 -> 29.3. The code lookup of
 * IQ2_XXS's pairs writes each window over the index bytes (win256: no blend): 5.37 -> 5.24.
 *
 * At B=1 (generation) the decode bounds these kernels, not the read bandwidth: every
 * instruction of the chunk loop counts (one thread, B=1: the same ns a block from L2 as
 * streamed from DRAM). IQ2_S's 32 registers of code planes were hoisted by the compiler to
 * each weight row's start and 16 of them spilled to the stack there (~200 instructions a row
 * of 8 blocks); read through in_loop (avx512vbmi_iq.h) they are vpermt2b's memory operands:
 * one thread, alternated, 4.9-5.3 -> 4.7-5.0 ns a block at B=1, B=2 6.5 -> 6.0, B=8 15.1 ->
 * 14.1. (IQ2_XS, IQ2_XXS and IQ3_S the same way: 0 to 3% slower; IQ2_S's lookup as eight
 * vpermi2b over disjoint window masks, as IQ3_S's win512, instead of lut1024's blends: 9 ns.)
 * Where IQ2_XXS's B=1 pair goes (one thread from L2, Zen 5, ~12 cycles a block): taking out the
 * code lookup saves ~0.35 ns a block, the sign path ~0.35, the 8 vpermb ~0.07, all three 0.9;
 * the rest is the dot, scales and floats. Fewer instructions off the dot's chain do not show
 * (its sign fields by one vpmultishiftqb of the scale dwords instead of two and a vpermt2b:
 * even), nor do two vpdpbusd chains at B=1; at one activation row the tile sums the odd planes
 * in a second accumulator (a chain of 4, not 8) and IQ2_XS takes its sign fields and bit 8 from
 * the uint16s' high bytes as they stand (sgm_parhi: no shifts, one vptestmb) with the block's
 * bytes kept in registers (in_regs): bench-kernels, one thread, B=1, alternated with the parent,
 * IQ2_XS 18.3-18.9 -> 18.8-19.6 GB/s, IQ2_S 16.7-17.4 -> 17.4-18.0, IQ2_XXS even, B=2-8 even. */
#include "kernels/x86/avx512vbmi_iq.h"

void kl_avx512vbmi_types_iq(kl_isa *isa);
void kl_avx512vbmi_gemm_iq2_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq2_xs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq2_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_quant_act_q8_k(const float *x, void *dst, int64_t n); /* x86/avx2_quant.c */

/* vpmultishiftqb offsets of IQ2_XXS's sign fields (per qword: the uint32 in bytes 4-7, its 4
 * fields to bytes 0-3). */
static _Alignas(64) uint8_t ms2xxs[64];
/* The plane dot's weights are w + IQ2_BIAS (|w| <= 43: unsigned bytes of at most 107; in
 * vpmaddubsw pairs at most 2 * 107 * 128 < 2^15); the tile takes IQ2_BIAS times the
 * activations' sums out through bsums. */
#define IQ2_BIAS 64
/* IQ2_S: byte b is qh[i / 4] (entry i = b % 32), bit2s its bit 8 of entry i (bit 9: the next
 * one up). */
static _Alignas(64) uint8_t qh2s[64], bit2s[64], qh2sp[64];

/* The plane dot (KL_ACT_Q8_K_T8 activations). Codes split by element parity: [0] the fields of
 * elements 0, 2, 4, 6 at bits 0, 2, 4, 6, [1] those of 1, 3, 5, 7, so that one vector of an
 * entry's even code in bytes 0-31 and its odd code in 32-63 gives planes 2k and 2k + 1 by the
 * same lookup. sw2xxs[t]: the biased signed weight (IQ2_BIAS + or - the magnitude) of an index
 * byte holding two fields at bits 0-1 and 2-3 and their signs at bits 4 and 5: [0] of the first
 * field, [1] of the second. */
static _Alignas(64) uint8_t eo2xxs[2][256], sw2xxs[2][64], eo2xs[2][512], sw2xs[2][64];
static _Alignas(64) uint8_t eo2s[2][1024], sw2s[2][64];
/* cidx: byte b holds byte 8 (i / 4) + i % 4 of the block's 64 (entry i = b % 32's, in the qword
 * of its sub-block: IQ2_XXS), cidx2 byte 2i (the low byte of its uint16: IQ2_XS). */
static _Alignas(64) uint8_t cidx[64], cidx2[64];
/* cidxp: IQ2_XXS's cidx over a pair of blocks (vpermt2b: entry i of the first block in byte i,
 * of the second in byte 32 + i); cidx2p IQ2_XS's cidx2 so, cidx2hp the high bytes of those
 * uint16s (bit 8 of the index at bit 0, the sign field at bits 1-7). */
static _Alignas(64) uint8_t cidxp[64], cidx2p[64], cidx2hp[64];
/* gf2p8affineqb matrices from an entry's sign field (7 bits and a parity bit: IQ2_XXS and IQ2_XS;
 * or a sign byte as it stands: IQ2_S) in bytes i and 32 + i to the sign bits of the index bytes:
 * [t] bits 4 and 5 of elements 4t and 4t + 2 (qwords 0-3) and 4t + 1 and 4t + 3 (qwords 4-7). */
static _Alignas(64) uint64_t sgm_par[2][8], sgm_byte[2][8];
/* sgm_par for a sign field at bits 1-7 (IQ2_XS's pairs: its uint16s' high bytes as they stand). */
static _Alignas(64) uint64_t sgm_parhi[2][8];
/* Byte b of vector k of a T4 / T8 block is byte [k][b] of its Q8_K qs. */
static _Alignas(64) uint8_t perm_t4[4][64], perm_t8[4][64];

/* Fills the planes of a grid of n entries of e bytes (4 or 8) and its magnitude table: codes
 * of 3 bits per element for e = 4, 2 for e = 8. False if the grid has more values than that. */
bool kl_avx512vbmi_grid_codes(const uint8_t *grid, int n, int e, uint8_t *lo, uint8_t *hi,
                              uint8_t vals[64])
{
    int bits = e == 4 ? 3 : 2, nv = 0, field = (1 << bits) - 1;
    uint8_t v[8] = {0};
    for (int i = 0; i < n * e; i++) { /* the sorted distinct values */
        int k = 0;
        while (k < nv && v[k] < grid[i])
            k++;
        if (k < nv && v[k] == grid[i]) continue;
        if (nv == 1 << bits) return false;
        for (int m = nv++; m > k; m--)
            v[m] = v[m - 1];
        v[k] = grid[i];
    }
    for (int x = 0; x < 64; x++)
        vals[x] = v[(x & field) < nv ? x & field : 0];
    for (int i = 0; i < n; i++) {
        unsigned code = 0;
        for (int j = 0; j < e; j++) {
            int k = 0;
            while (v[k] != grid[i * e + j])
                k++;
            code |= (unsigned)k << (bits * j);
        }
        lo[i] = (uint8_t)(code & ((1u << (bits * e / 2)) - 1));
        hi[i] = (uint8_t)(code >> (bits * e / 2));
    }
    return true;
}

/* The parity codes of an IQ2 grid of n entries (at most 1024): its codes of 2 bits per element
 * (kl_avx512vbmi_grid_codes, whose halves are needed only here) split by element parity
 * (ev_codes, od_codes), and the biased signed weights of an index byte (sw). False if the grid
 * has more than 4 values. */
static bool make_eo(const uint64_t *grid, int n, uint8_t *ev_codes, uint8_t *od_codes,
                    uint8_t sw[2][64])
{
    uint8_t lo[1024], hi[1024], vals[64];
    if (!kl_avx512vbmi_grid_codes((const uint8_t *)grid, n, 8, lo, hi, vals)) return false;
    for (int i = 0; i < n; i++) {
        unsigned code = lo[i] | (unsigned)hi[i] << 8, ev = 0, od = 0;
        for (int m = 0; m < 4; m++) {
            ev |= (code >> 4 * m & 3) << 2 * m;
            od |= (code >> (4 * m + 2) & 3) << 2 * m;
        }
        ev_codes[i] = (uint8_t)ev, od_codes[i] = (uint8_t)od;
    }
    for (int t = 0; t < 2; t++)
        for (int x = 0; x < 64; x++) {
            int v = vals[x >> 2 * t & 3];
            sw[t][x] = (uint8_t)(IQ2_BIAS + (x >> (4 + t) & 1 ? -v : v));
        }
    return true;
}

/* The row of gf2p8affineqb matrix bytes that puts sign j of a field at bits sh.. (bit sh + j;
 * j = 7: the parity of the field's 7 bits when par) at output bit o. */
static uint64_t sign_row(int j, int o, bool par, int sh)
{
    return (uint64_t)((j == 7 && par ? 0x7Fu : 1u << j) << sh) << 8 * (7 - o);
}

static bool iq_vbmi_init(void)
{
    if (!make_eo(kl_iq2xxs_grid, 256, eo2xxs[0], eo2xxs[1], sw2xxs) ||
        !make_eo(kl_iq2xs_grid, 512, eo2xs[0], eo2xs[1], sw2xs) ||
        !make_eo(kl_iq2s_grid, 1024, eo2s[0], eo2s[1], sw2s))
        return false;
    for (int t = 0; t < 2; t++)
        for (int q = 0; q < 8; q++) {
            int j = 4 * t + q / 4; /* qwords 4-7: the odd elements */
            sgm_par[t][q] = sign_row(j, 4, true, 0) | sign_row(j + 2, 5, true, 0);
            sgm_parhi[t][q] = sign_row(j, 4, true, 1) | sign_row(j + 2, 5, true, 1);
            sgm_byte[t][q] = sign_row(j, 4, false, 0) | sign_row(j + 2, 5, false, 0);
        }
    for (int b = 0; b < 64; b++) {
        cidx[b] = (uint8_t)(8 * (b % 32 / 4) + b % 4), cidx2[b] = (uint8_t)(2 * (b % 32));
        cidxp[b] = (uint8_t)(cidx[b] + 64 * (b / 32)),
        cidx2p[b] = (uint8_t)(cidx2[b] + 64 * (b / 32)), cidx2hp[b] = (uint8_t)(cidx2p[b] + 1);
        qh2sp[b] = (uint8_t)(b % 32 / 4 + 8 * (b / 32));
        for (int k = 0; k < 4; k++) {
            perm_t4[k][b] = (uint8_t)kl_act_t4_src(64 * k + b);
            perm_t8[k][b] = (uint8_t)kl_act_t8_src(64 * k + b);
        }
        int j = b % 8;
        qh2s[b] = (uint8_t)(b % 32 / 4);
        bit2s[b] = (uint8_t)(1 << (2 * (b % 4)));
        ms2xxs[b] = (uint8_t)(32 + 7 * (j % 4));
    }
    return true;
}

/* lut256 by two vpermi2b that write their window's bytes over the index bytes of the lanes in
 * their mask (bit 7 set, then clear): no blend. */
static inline __m512i win256(const uint8_t *t, __m512i idx, __mmask64 b7)
{
    __m512i r = _mm512_mask2_permutex2var_epi8(ld(t + 128), idx, b7, ld(t + 192));
    return _mm512_mask2_permutex2var_epi8(ld(t), r, _knot_mask64(b7), ld(t + 64));
}

/* The same for 10-bit indices, bit 9 in b9. */
static inline __m512i lut1024(const uint8_t *t, __m512i idx, __mmask64 b7, __mmask64 b8,
                              __mmask64 b9)
{
    return _mm512_mask_blend_epi8(b9, lut512(t, idx, b7, b8), lut512(t + 512, idx, b7, b8));
}

/* The plane dot's per-block state: v[t], the index bytes of plane pairs 2t and 2t + 1 (entry i
 * in bytes i and 32 + i: the fields of elements 4t and 4t + 2 at bits 0-3 of byte i, of 4t + 1
 * and 4t + 3 of byte 32 + i, their signs at bits 4 and 5); sc, the integer scale of each int32
 * lane of vpdpbusd (IQ2_XXS: lanes l and l + 8, sub-block l % 8) or int16 pair sum (IQ2_XS,
 * IQ2_S); s16, the scale of each 16 elements (IQ2_XXS: 1, its lanes take sc at the end), for
 * the tile's bias term; d, the float factor. */
typedef struct {
    __m256i s16;
    float d;
    __m512i v[2], sc;
} plane_st;

/* The index bytes from the codes y (even codes in bytes 0-31, odd ones in 32-63) and the
 * entries' sign fields f (bytes i and 32 + i) by the matrices m (sgm_par or sgm_byte): codes
 * and signs of each plane pair in the 6 bits that vpermb reads. */
static inline __attribute__((always_inline)) void plane_index(plane_st *st, __m512i y, __m512i f,
                                                              const uint64_t m[2][8])
{
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i s0 = _mm512_gf2p8affine_epi64_epi8(f, _mm512_load_si512(m[0]), 0);
    __m512i s1 = _mm512_gf2p8affine_epi64_epi8(f, _mm512_load_si512(m[1]), 0);
    st->v[0] = _mm512_ternarylogic_epi32(y, low4, s0, 0xEA); /* (y & 15) | s0 */
    st->v[1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(y, 4), low4, s1, 0xEA);
}

/* IQ2_XXS: qword ib of the block is sub-block ib: 4 indices, then 4 x 7 sign bits and the
 * scale in bits 60-63 */
static inline __attribute__((always_inline)) void iq2_xxs_begin(const kl_block_iq2_xxs *w,
                                                                plane_st *st)
{
    __m512i x = _mm512_loadu_si512((const void *)w->qs);
    __m512i z = _mm512_permutexvar_epi8(ld(cidx), x); /* entry i's index in bytes i, 32 + i */
    __mmask64 b7 = _mm512_movepi8_mask(z);
    __m512i y = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, lut256(eo2xxs[0], z, b7),
                                       lut256(eo2xxs[1], z, b7));
    plane_index(st, y,
                _mm512_permutexvar_epi8(ld(cidx), _mm512_multishift_epi64_epi8(ld(ms2xxs), x)),
                sgm_par);
    /* the high dword of sub-block s's qword, >> 27: 2 sc + a sign bit; | 1: 2 sc + 1 */
    const __m512i hi32 = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 15, 13, 11, 9, 7, 5, 3, 1);
    st->sc = _mm512_or_si512(_mm512_srli_epi32(_mm512_permutexvar_epi32(hi32, x), 27),
                             _mm512_set1_epi32(1));
    st->s16 = _mm256_set1_epi16(1);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

/* IQ2_XS and IQ2_S: 2 s + 1 of nibble w of the 8 scale bytes in word w (s16) and w % 16 (sc). */
static inline void nibble_words(const uint8_t scales[8], plane_st *st)
{
    uint64_t sc;
    memcpy(&sc, scales, 8);
    __m128i nib =
        _mm_multishift_epi64_epi8(_mm_set_epi64x(0x3C3834302C282420ll, 0x1C1814100C080400ll),
                                  _mm_set1_epi64x((long long)sc)); /* nibble i: byte i */
    nib = _mm_or_si128(_mm_and_si128(_mm_add_epi8(nib, nib), _mm_set1_epi8(30)), _mm_set1_epi8(1));
    st->s16 = _mm256_cvtepu8_epi16(nib);
    st->sc = _mm512_broadcast_i64x4(st->s16);
}

/* IQ2_XS: per 8 elements a uint16, a 9-bit index and 7 sign bits above it; sc holds the scale
 * of each int16 pair sum (entries 2w, 2w + 1 of a plane, words w and w + 16: nibble w % 16 of
 * scales[], 16 elements each). */
static inline __attribute__((always_inline)) void iq2_xs_begin(const kl_block_iq2_xs *w,
                                                               plane_st *st)
{
    __m512i x = _mm512_loadu_si512((const void *)w->qs);
    __m512i z = _mm512_permutexvar_epi8(ld(cidx2), x); /* entry i's index bits 0-7: i, 32 + i */
    __mmask64 b8 = _mm512_test_epi16_mask(x, _mm512_set1_epi16(0x100)); /* bit i: its bit 8 */
    __mmask64 b7 = _mm512_movepi8_mask(z);
    b8 = _mm512_kunpackd(b8, b8);
    __m512i y = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, lut512(eo2xs[0], z, b7, b8),
                                       lut512(eo2xs[1], z, b7, b8));
    plane_index(st, y, _mm512_permutexvar_epi8(ld(cidx2), _mm512_srli_epi16(x, 9)), sgm_par);
    nibble_words(w->scales, st);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

/* IQ2_S: 32 index bytes and 32 sign bytes in entry order, bits 8-9 of entry i's index in qh;
 * scales as IQ2_XS's. */
static inline __attribute__((always_inline)) void iq2_s_begin(const kl_block_iq2_s *w, plane_st *st)
{
    __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w->qs));
    __m512i qh = _mm512_permutexvar_epi8(
        ld(qh2s), _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)w->qh)));
    __mmask64 b7 = _mm512_movepi8_mask(z), b8 = _mm512_test_epi8_mask(qh, ld(bit2s));
    __mmask64 b9 = _mm512_test_epi8_mask(qh, _mm512_add_epi8(ld(bit2s), ld(bit2s)));
    __m512i y = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, lut1024(eo2s[0], z, b7, b8, b9),
                                       lut1024(eo2s[1], z, b7, b8, b9));
    plane_index(st, y,
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 8))),
                sgm_byte);
    nibble_words(w->scales, st);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

/* Permutes each block's qs of a Q8_K row in place: byte b of vector k takes byte perm[k][b]. */
static void permute_q8_k(void *row, int64_t n, const uint8_t perm[4][64])
{
    uint8_t *q = row;
    for (int64_t i = 0; i < n / KL_QKK; i++, q += KL_QKK) {
        __m512i a0 = _mm512_loadu_si512(q), a1 = _mm512_loadu_si512(q + 64), o[4];
        __m512i a2 = _mm512_loadu_si512(q + 128), a3 = _mm512_loadu_si512(q + 192);
        for (int k = 0; k < 4; k++) {
            __m512i ix = ld(perm[k]);
            o[k] = _mm512_mask_blend_epi8(_mm512_movepi8_mask(ix),
                                          _mm512_permutex2var_epi8(a0, ix, a1),
                                          _mm512_permutex2var_epi8(a2, ix, a3));
        }
        for (int k = 0; k < 4; k++)
            _mm512_storeu_si512((void *)(q + 64 * k), o[k]);
    }
}

/* The plane layouts' quantizers: AVX2's Q8_K (the reference's bytes), then the permutation (T4:
 * and c, -64 bsums). */
void kl_avx512vbmi_quant_act_q8_k_t4(const float *x, void *dst, int64_t n)
{
    kl_avx2_quant_act_q8_k(x, dst, n);
    permute_q8_k(dst, n, perm_t4);
    const int16_t *bs = kl_act_q8_k_bsums(dst, n);
    int32_t *c = (int32_t *)kl_act_q8_k_t4_c(dst, n);
    for (int64_t i = 0; i < n / 16; i += 16) { /* -64 bsums */
        __m512i b = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(bs + i)));
        _mm512_storeu_si512(c + i,
                            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(b, 6)));
    }
}
static void quant_act_q8_k_t8(const float *x, void *dst, int64_t n)
{
    kl_avx2_quant_act_q8_k(x, dst, n);
    permute_q8_k(dst, n, perm_t8);
}
/* T8P: T8, then in each pair of blocks vector j takes plane j (32 bytes) of both (T8's vector
 * k holds planes 2k and 2k + 1 of one block). */
void kl_avx512vbmi_quant_act_q8_k_t8p(const float *x, void *dst, int64_t n)
{
    quant_act_q8_k_t8(x, dst, n);
    uint8_t *q = dst;
    for (int64_t i = 0; i + 1 < n / KL_QKK; i += 2, q += 2 * KL_QKK) {
        __m512i a[8];
        for (int k = 0; k < 8; k++)
            a[k] = _mm512_loadu_si512(q + 64 * k);
        for (int k = 0; k < 4; k++) {
            _mm512_storeu_si512(q + 128 * k, _mm512_shuffle_i64x2(a[k], a[4 + k], 0x44));
            _mm512_storeu_si512(q + 128 * k + 64, _mm512_shuffle_i64x2(a[k], a[4 + k], 0xEE));
        }
    }
}

/* The IQ2 types two blocks at a time (T8P activations): a pair's 64 entries fill every vector,
 * so the code lookup, the sign fields, the index bytes and the scales are made once for both
 * blocks and each of the 8 planes is one vpermb, then one vpdpbusd (IQ2_XXS) or vpmaddubsw +
 * vpdpwssd (IQ2_XS, IQ2_S) a row. v[m]: the index bytes of planes 4 (m / 2) + m % 2 (table
 * [0]) and that + 2 ([1]): even codes in v[0] and v[2], odd ones in v[1] and v[3]; sc: the
 * first block's scales in lanes 0-7 (IQ2_XXS, per sub-block) or words 0-15 (per 16 elements),
 * the second's above; m16: -IQ2_BIAS times the scale of each 16 elements, for the bias term
 * (IQ2_XXS: -IQ2_BIAS, its lanes take sc at the end); d: the blocks' factors in lanes 0, 1. */
/* Vectors the compiler is to keep in registers: without this it reloads a block's bytes as the
 * memory operand of each instruction that takes them (64 bytes a time, most across two cache
 * lines). */
#define in_regs(a, b) __asm__("" : "+v"(a), "+v"(b))

typedef struct {
    __m512i v[4], sc, m16;
    __m128 d;
} pair_st;

/* The index bytes of a pair from its codes y (even, odd) and sign fields f (both blocks' entries
 * in order), by the sign matrices m (sgm_par or sgm_byte: their qwords 0 and 4). */
static inline __attribute__((always_inline)) void pair_index(pair_st *st, const __m512i y[2],
                                                             __m512i f, const uint64_t m[2][8])
{
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
    {
        __m512i c = i < 2 ? y[i] : _mm512_srli_epi16(y[i - 2], 4);
        __m512i sg = _mm512_gf2p8affine_epi64_epi8(
            f, _mm512_set1_epi64((long long)m[i / 2][4 * (i % 2)]), 0);
        st->v[i] = _mm512_ternarylogic_epi32(c, low4, sg, 0xEA);
    }
}

/* The two blocks' factors and, from their 16-element scales (IQ2_XS, IQ2_S), sc and m16. */
static inline void pair_d(pair_st *st, float d0, float d1)
{
    st->d = _mm_set_ps(0, 0, 0.125f * d1, 0.125f * d0);
}
static inline void pair_scales(pair_st *st, const uint8_t s0[8], const uint8_t s1[8])
{
    plane_st a, b;
    nibble_words(s0, &a), nibble_words(s1, &b);
    st->sc = _mm512_inserti64x4(_mm512_castsi256_si512(a.s16), b.s16, 1);
    st->m16 = _mm512_mullo_epi16(st->sc, _mm512_set1_epi16(-IQ2_BIAS));
}

static inline __attribute__((always_inline)) void iq2_xxs_pair(const kl_block_iq2_xxs *w,
                                                               pair_st *st)
{
    __m512i xa = _mm512_loadu_si512((const void *)w[0].qs);
    __m512i xb = _mm512_loadu_si512((const void *)w[1].qs);
    __m512i z = _mm512_permutex2var_epi8(xa, ld(cidxp), xb);
    __mmask64 b7 = _mm512_movepi8_mask(z);
    const __m512i y[2] = {win256(eo2xxs[0], z, b7), win256(eo2xxs[1], z, b7)};
    pair_index(st, y,
               _mm512_permutex2var_epi8(_mm512_multishift_epi64_epi8(ld(ms2xxs), xa), ld(cidxp),
                                        _mm512_multishift_epi64_epi8(ld(ms2xxs), xb)),
               sgm_par);
    const __m512i hi32 =
        _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    st->sc = _mm512_or_si512(_mm512_srli_epi32(_mm512_permutex2var_epi32(xa, hi32, xb), 27),
                             _mm512_set1_epi32(1));
    st->m16 = _mm512_set1_epi16(-IQ2_BIAS);
    pair_d(st, _cvtsh_ss(w[0].d), _cvtsh_ss(w[1].d));
}

static inline __attribute__((always_inline)) void iq2_xs_pair(const kl_block_iq2_xs *w, pair_st *st)
{
    __m512i xa = _mm512_loadu_si512((const void *)w[0].qs);
    __m512i xb = _mm512_loadu_si512((const void *)w[1].qs);
    in_regs(xa, xb);
    __m512i z = _mm512_permutex2var_epi8(xa, ld(cidx2p), xb);
    __m512i h = _mm512_permutex2var_epi8(xa, ld(cidx2hp), xb); /* bit 8, then the sign field */
    __mmask64 b8 = _mm512_test_epi8_mask(h, _mm512_set1_epi8(1));
    __mmask64 b7 = _mm512_movepi8_mask(z);
    const __m512i y[2] = {lut512(eo2xs[0], z, b7, b8), lut512(eo2xs[1], z, b7, b8)};
    pair_index(st, y, h, sgm_parhi);
    pair_scales(st, w[0].scales, w[1].scales);
    pair_d(st, _cvtsh_ss(w[0].d), _cvtsh_ss(w[1].d));
}

static inline __attribute__((always_inline)) void iq2_s_pair(const kl_block_iq2_s *w, pair_st *st)
{
    __m512i z =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[0].qs)),
                           _mm256_loadu_si256((const __m256i *)w[1].qs), 1);
    uint64_t h0, h1;
    memcpy(&h0, w[0].qh, 8), memcpy(&h1, w[1].qh, 8);
    __m512i qh = _mm512_permutexvar_epi8(
        ld(qh2sp), _mm512_castsi128_si512(_mm_set_epi64x((long long)h1, (long long)h0)));
    __mmask64 b7 = _mm512_movepi8_mask(z), b8 = _mm512_test_epi8_mask(qh, ld(bit2s));
    __mmask64 b9 = _mm512_test_epi8_mask(qh, _mm512_add_epi8(ld(bit2s), ld(bit2s)));
    const uint8_t(*t)[1024] = in_loop(eo2s);
    const __m512i y[2] = {lut1024(t[0], z, b7, b8, b9), lut1024(t[1], z, b7, b8, b9)};
    pair_index(st, y,
               _mm512_inserti64x4(_mm512_castsi256_si512(
                                      _mm256_loadu_si256((const __m256i *)(w[0].qs + KL_QKK / 8))),
                                  _mm256_loadu_si256((const __m256i *)(w[1].qs + KL_QKK / 8)), 1),
               sgm_byte);
    pair_scales(st, w[0].scales, w[1].scales);
    pair_d(st, _cvtsh_ss(w[0].d), _cvtsh_ss(w[1].d));
}

/* The IQ2 tile: pairs of blocks, then an odd last block by its one-block planes (T8 order).
 * Per pair and row: the bias term from the pair's 32 bsums by m16 (one vpmaddwd; IQ2_XXS: lane
 * l gets sub-block l % 8 of block l / 8, as sc), 8 planes by ACC (x86/avx512_iq.h: IQ_PLANE_ACC
 * or IQ_CHUNK_ACC; at one row the odd planes into a second accumulator, added after: two chains
 * of 4), FIN (IQ_PLANE_FIN: one vpmulld; IQ_CHUNK_FIN: none) and one vfmadd with both blocks'
 * d * d_a. */
#define IQ2_PAIR_TILE(PFX, BLOCK, SW, ACC, FIN)                                                    \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        IQ_TILE_ROWS(BLOCK);                                                                       \
        int64_t j = 0;                                                                             \
        __m512i is[IQ_BT];                                                                         \
        const __m512i dsel = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);     \
        for (; j + 1 < nblk; j += 2) {                                                             \
            pair_st st;                                                                            \
            _mm_prefetch((const char *)&w[j] + IQ_PF, _MM_HINT_T0);                                \
            _mm_prefetch((const char *)&w[j + 1] + IQ_PF, _MM_HINT_T0);                            \
            PFX##_pair(&w[j], &st);                                                                \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                           \
                _mm512_madd_epi16(_mm512_loadu_si512(bs[k] + 16 * j), st.m16);                     \
            __m512i odd = _mm512_setzero_si512();                                                  \
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)                                    \
            {                                                                                      \
                __m512i q = _mm512_permutexvar_epi8(st.v[2 * (p / 4) + p % 2], ld(SW[p / 2 % 2])); \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m512i a = _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p);                   \
                    if (nb == 1 && p % 2)                                                          \
                        odd = ACC(odd, q, a, st.sc);                                               \
                    else                                                                           \
                        is[k] = ACC(is[k], q, a, st.sc);                                           \
                }                                                                                  \
            }                                                                                      \
            if (nb == 1) is[0] = _mm512_add_epi32(is[0], odd);                                     \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                                   \
            {                                                                                      \
                __m128 dd =                                                                        \
                    _mm_mul_ps(st.d, _mm_castpd_ps(_mm_load_sd((const double *)(ad[k] + j))));     \
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(FIN(is[k], st)),                       \
                                         _mm512_permutexvar_ps(dsel, _mm512_castps128_ps512(dd)),  \
                                         acc[k]);                                                  \
            }                                                                                      \
        }                                                                                          \
        if (j < nblk) {                                                                            \
            plane_st st;                                                                           \
            PFX##_begin(&w[j], &st);                                                               \
            __m256i m16 = _mm256_mullo_epi16(st.s16, _mm256_set1_epi16(-IQ2_BIAS));                \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_zextsi256_si512(   \
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), m16));    \
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)                                    \
            {                                                                                      \
                __m512i q = _mm512_permutexvar_epi8(st.v[p / 2], ld(SW[p % 2]));                   \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                       \
                    ACC(is[k], q, _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p), st.sc);         \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = FIN(is[k], st);           \
            iq_block_end(nb, acc, is, st.d, ad, j);                                                \
        }                                                                                          \
        iq_store(g, r, b, nb, acc);                                                                \
    }

/* IQ2_XXS (a scale per 32): vpdpbusd, then one vpmulld a block or pair; IQ2_XS and IQ2_S (a
 * scale per 16): vpmaddubsw pairs and vpdpwssd by st.sc's words, the chunk tile's dot. */
IQ2_PAIR_TILE(iq2_xxs, kl_block_iq2_xxs, sw2xxs, IQ_PLANE_ACC, IQ_PLANE_FIN)
IQ_GEMM(kl_avx512vbmi_gemm_iq2_xxs, iq2_xxs)
IQ2_PAIR_TILE(iq2_xs, kl_block_iq2_xs, sw2xs, IQ_CHUNK_ACC, IQ_CHUNK_FIN)
IQ_GEMM(kl_avx512vbmi_gemm_iq2_xs, iq2_xs)
IQ2_PAIR_TILE(iq2_s, kl_block_iq2_s, sw2s, IQ_CHUNK_ACC, IQ_CHUNK_FIN)
IQ_GEMM(kl_avx512vbmi_gemm_iq2_s, iq2_s)

/* The rows of this file over the AVX-512 table (called once, from dispatch.c's build). */
void kl_avx512vbmi_types_iq(kl_isa *isa)
{
    if (!iq_vbmi_init()) return; /* a grid of more values than a code holds: keep AVX-512's */
    iq_plane_ops(&isa->types[KL_IQ2_XXS], KL_ACT_Q8_K_T8P, kl_avx512vbmi_quant_act_q8_k_t8p,
                 kl_avx512vbmi_gemm_iq2_xxs);
    iq_plane_ops(&isa->types[KL_IQ2_XS], KL_ACT_Q8_K_T8P, kl_avx512vbmi_quant_act_q8_k_t8p,
                 kl_avx512vbmi_gemm_iq2_xs);
    iq_plane_ops(&isa->types[KL_IQ2_S], KL_ACT_Q8_K_T8P, kl_avx512vbmi_quant_act_q8_k_t8p,
                 kl_avx512vbmi_gemm_iq2_s);
}
