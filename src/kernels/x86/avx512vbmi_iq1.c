/* kernels/x86/avx512vbmi_iq1.c: IQ1_S and IQ1_M against Q8_K activations for AVX-512 CPUs
 * with VBMI (Ice Lake and later, Zen 4 and later), 64 elements a register; x86/avx512_iq1.c
 * (the 256-bit decoders of x86/avx2_iq1.h) serves AVX-512 CPUs without VBMI.
 *
 * Scaled unsigned weights. A grid entry's bytes are -1, 0, 1 (0xFF, 0, 1), so one byte lookup
 * makes them vpdpbusd's unsigned operand with the scale (and IQ1_M's shift) folded in, and the
 * rest of each element's value comes out through the activations' sums of 16 (Q8_K's bsums),
 * one vpdpwssd a block and activation row:
 *   IQ1_S: sc (8 g + shift) = 8 sc (g + 1) + sc (shift - 8): vpshufb of the raw grid bytes over
 *          a 128-bit lane table holding 8 sc, 16 sc (the lane's 16 elements share a 32-element
 *          scale; 0xFF, bit 7 set, reads 0); the second term times the chunk's bsums.
 *   IQ1_M: sc (8 g + shift) = 2 sc (8 g + shift + 9) / 2 - 9 sc, the halves 0..9 times sc at
 *          most 135: vpermb of (g & 3) | shift << 2 | s << 3 over a 64-byte table of every
 *          (s, shift, g); the block's sum is doubled, then -9 sc times the bsums added.
 * The int32 lanes hold the block's exact integer sum (|lane| < 2^21), converted to float and
 * added as in x86/avx512_iq.h's tiles (iq_block_end); the lanes differ from the 256-bit
 * kernels', so the float sums may differ from theirs in the last bits.
 *
 * Grid indices. A block's 32 11-bit indices are made in a vector (the qs bytes widened to
 * words, the qh bits moved to bits 8-10 of each word by one vpmultishiftqb) and stored a block
 * ahead: read back at once, the loads would wait for the store (x86/avx2_iq1.h). The entries
 * are plain 64-bit loads and inserts: with vpgatherqq of 8 entries (indices widened by
 * vpmovzxwq) this kernel took 17.2 ns a block at B=1 in cache against 9.4 (Zen 4; a
 * microbenchmark gave vpgatherdd of 16 2-bit codes no better a entry). Indices stored as dwords
 * (one load each, no shifts) were slower too: 10.4 ns.
 *
 * Packed IQ1_S and IQ1_M. The model runs both repacked at load into 2-bit codes
 * (kernels/pack_iq1.c): no grid lookups, 70 bytes a block instead of 50 (IQ1_S), 76 for 56
 * (IQ1_M); 8192x2048 at B=1 streamed 2.0-2.8x the weights a second of the tiles above
 * (iq1p_tile, iq1mp_tile below). */
#include "kernels/x86/avx512vbmi_iq.h"

void kl_avx512vbmi_types_iq1(kl_isa *isa);
void kl_avx512vbmi_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq1_s_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq1_m_packed(const kl_gemm *g, int64_t r0, int64_t r1);

/* IQ1_S by v = qh >> 12 (the scale s in bits 0-2, the shift's sign in bit 3): [0] 8 sc in the
 * low byte, 16 sc in the high one (sc = 2 s + 1), [1] sc (shift - 8). */
static _Alignas(64) uint16_t s_tab[2][16];
/* IQ1_M: [s << 3 | (shift < 0) << 2 | g & 3] = sc (8 g + shift + 9) / 2 */
static _Alignas(64) uint8_t m_val[64];
/* IQ1_M: -9 sc by s (entries 8-15 repeat 0-7: the index's bit 3 is another field's) */
static _Alignas(64) int16_t m_corr[16];
/* IQ1_M: vpmultishiftqb offsets that bring, for each byte of E (see iq1_m_begin), its entry's
 * shift sign to bit 2 (of the qh qword) and its scale to bits 3-5 (of the scales qword);
 * the scales' offsets of the bsums' 16 groups (to bits 0-2 of each word); spread[p]: byte i
 * of plane p takes E's byte of entry 8 p + i / 8. */
static _Alignas(64) uint8_t m_ms_sh[64], m_ms_sc[64], m_ms_grp[64], m_spread[4][64];

/* The E byte of entry e (0..31): qwords 0-3 of E hold entries 0-7, 16-23, 8-15, 24-31, so that
 * qword k reads its qh bytes from qword k % 2 of the broadcast qh (16 bytes). */
static int m_pos(int e)
{
    static const int qw[4] = {0, 2, 1, 3};
    return 8 * qw[e / 8] + e % 8;
}

static void iq1_vbmi_init(void)
{
    for (int v = 0; v < 16; v++) {
        int sc = 2 * (v & 7) + 1;
        s_tab[0][v] = (uint16_t)(8 * sc | 16 * sc << 8);
        s_tab[1][v] = (uint16_t)(sc * ((v & 8) ? -9 : -7));
        m_corr[v] = (int16_t)(-9 * sc);
    }
    for (int b = 0; b < 64; b++) {
        int k = b & 3, gv = k == 1 ? 1 : k == 3 ? -1 : 0, sh = (b & 4) ? -1 : 1;
        m_val[b] = (uint8_t)((2 * (b >> 3) + 1) * (8 * gv + sh + 9) / 2);
    }
    for (int e = 0; e < 32; e++) {
        int p = m_pos(e), t = e / 2;
        /* qh byte e / 2, nibble e % 2, bit 3: bit 8 (e / 2 % 8) + 4 (e % 2) + 3 of its qword */
        m_ms_sh[p] = (uint8_t)((8 * (t % 8) + 4 * (e % 2) + 3 - 2) & 63);
        m_ms_sc[p] = (uint8_t)((16 * (t / 4) + 3 * (t % 4) - 3) & 63);
    }
    for (int b = 0; b < 64; b++) {
        int t = b / 2 % 16; /* word b / 2 of 32: group t */
        m_ms_grp[b] = (uint8_t)(16 * (t / 4) + 3 * (t % 4));
        for (int p = 0; p < 4; p++)
            m_spread[p][b] = (uint8_t)m_pos(8 * p + b / 8);
    }
}

/* The grid entries of 8 indices (two qwords of 4 words). */
static inline __m512i iq1_grid8(const uint16_t *ix)
{
    uint64_t a, b;
    memcpy(&a, ix, 8), memcpy(&b, ix + 4, 8);
    const uint64_t *G = kl_iq1s_grid;
    __m128i e0 = _mm_insert_epi64(_mm_cvtsi64_si128((long long)G[a & 0xFFFF]),
                                  (long long)G[a >> 16 & 0xFFFF], 1);
    __m128i e1 = _mm_insert_epi64(_mm_cvtsi64_si128((long long)G[a >> 32 & 0xFFFF]),
                                  (long long)G[a >> 48], 1);
    __m128i e2 = _mm_insert_epi64(_mm_cvtsi64_si128((long long)G[b & 0xFFFF]),
                                  (long long)G[b >> 16 & 0xFFFF], 1);
    __m128i e3 = _mm_insert_epi64(_mm_cvtsi64_si128((long long)G[b >> 32 & 0xFFFF]),
                                  (long long)G[b >> 48], 1);
    __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(e0), e1, 1);
    __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(e2), e3, 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* A block's 32 indices into ix: word 4 c + l is qs[4 c + l] | bits 8-10 from the 16-bit word
 * c of qh (qwords of the widened qh), at bit ms (l) of it (ms: the offsets of bytes 2 l + 1). */
static inline void iq1_indices(const uint8_t *qs, const void *qh, long long ms, uint16_t *ix)
{
    __m512i lo = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)qs));
    __m512i hq = _mm512_cvtepu16_epi64(_mm_loadu_si128((const __m128i *)qh));
    __m512i hi = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(ms), hq);
    /* lo | (hi & 0x700): lo's high bytes are 0 */
    _mm512_store_si512(ix, _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi16(0x700), 0xF8));
}

typedef struct {
    float d;
    __m256i corr; /* (16) int16: the factor of each bsum */
    __m512i tab;  /* IQ1_S: 8 sc, 16 sc by chunk (words 0-7); IQ1_M: the E bytes */
} iq1v_st;

static inline void iq1_s_indices(const kl_block_iq1_s *w, uint16_t *ix)
{
    /* bits 3 l of qh[c] to byte 2 l + 1 */
    iq1_indices(w->qs, w->qh, 0x0900060003000000ll, ix);
}
static inline void iq1_s_begin(const kl_block_iq1_s *w, iq1v_st *st)
{
    __m256i v = _mm256_castsi128_si256(
        _mm_srli_epi16(_mm_loadu_si128((const __m128i *)w->qh), 12)); /* (8) s | sign << 3 */
    st->tab = _mm512_castsi256_si512(
        _mm256_permutexvar_epi16(v, _mm256_load_si256((const __m256i *)s_tab[0])));
    /* bsums 2 c, 2 c + 1 take chunk c's */
    __m256i dup = _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    st->corr = _mm256_permutexvar_epi16(_mm256_permutexvar_epi16(dup, v),
                                        _mm256_load_si256((const __m256i *)s_tab[1]));
    st->d = 0.125f * _cvtsh_ss(w->d);
}
/* Plane p's weights (elements 64 p..64 p + 63): lane L (16 elements) is chunk 2 p + L / 2's,
 * its table in bytes 0, 1. */
static inline __m512i iq1_s_weights(const iq1v_st *st, int p, __m512i grid)
{
    /* bytes 0, 1 of lane L: word 2 p + L / 2 of tab */
    const __m512i lane2 = _mm512_set_epi64(
        0x0302030203020302ll, 0x0302030203020302ll, 0x0302030203020302ll, 0x0302030203020302ll,
        0x0100010001000100ll, 0x0100010001000100ll, 0x0100010001000100ll, 0x0100010001000100ll);
    __m512i t =
        _mm512_permutexvar_epi8(_mm512_add_epi8(lane2, _mm512_set1_epi8((char)(4 * p))), st->tab);
    return _mm512_shuffle_epi8(t, grid);
}
static inline __m512i iq1_s_fin(__m512i is, __m256i bs, __m256i corr)
{
    return _mm512_dpwssd_epi32(is, _mm512_zextsi256_si512(bs), _mm512_zextsi256_si512(corr));
}

static inline void iq1_m_indices(const kl_block_iq1_m *w, uint16_t *ix)
{
    /* the nibble at 4 l of qh word c to byte 2 l + 1 */
    iq1_indices(w->qs, w->qh, 0x0C00080004000000ll, ix);
}
static inline void iq1_m_begin(const kl_block_iq1_m *w, iq1v_st *st)
{
    uint64_t sw;
    memcpy(&sw, w->scales, 8);
    __m512i sc = _mm512_set1_epi64((long long)sw);
    __m512i sh = _mm512_broadcast_i64x2(_mm_loadu_si128((const __m128i *)w->qh));
    /* E: bit 2 the shift's sign, bits 3-5 the scale (other bits: other fields) */
    st->tab = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(ld(m_ms_sh), sh),
                                        _mm512_multishift_epi64_epi8(ld(m_ms_sc), sc),
                                        _mm512_set1_epi8(4), 0xE4);
    st->corr = _mm256_permutexvar_epi16(
        _mm512_castsi512_si256(_mm512_multishift_epi64_epi8(ld(m_ms_grp), sc)),
        _mm256_load_si256((const __m256i *)m_corr));
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
}
static inline __m512i iq1_m_weights(const iq1v_st *st, int p, __m512i grid)
{
    __m512i e = _mm512_permutexvar_epi8(ld(m_spread[p]), st->tab);
    /* (g & 3) | e's bits 2-7 */
    return _mm512_permutexvar_epi8(_mm512_ternarylogic_epi32(grid, e, _mm512_set1_epi8(3), 0xE4),
                                   ld(m_val));
}
static inline __m512i iq1_m_fin(__m512i is, __m256i bs, __m256i corr)
{
    return iq1_s_fin(_mm512_add_epi32(is, is), bs, corr);
}

/* Blocks ahead whose indices are in memory: 3 (a ring of 4) measured ~10% faster at B=1 than
 * 1, in cache (the loads of a block's indices wait less for their store). */
#define IQ1V_AHEAD 3

/* The tile: weight row r x activation rows [b, b + nb), nb <= IQ_BT; per block, plane p's
 * (elements 64 p..64 p + 63) scaled weights vpdpbusd each row's activations, then FIN adds the
 * bsums' term. A row's instructions are the same whatever nb (batch invariance). */
#define IQ1V_TILE(PFX, BLOCK)                                                                      \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        IQ_TILE_ROWS(BLOCK);                                                                       \
        _Alignas(64) uint16_t ix[IQ1V_AHEAD + 1][KL_QKK / 8];                                      \
        for (int64_t j = 0; j < IQ1V_AHEAD && j < nblk; j++)                                       \
            PFX##_indices(&w[j], ix[j]);                                                           \
        for (int64_t j = 0; j < nblk; j++) {                                                       \
            iq1v_st st;                                                                            \
            _mm_prefetch((const char *)&w[j] + IQ_PF, _MM_HINT_T0);                                \
            if (j + IQ1V_AHEAD < nblk)                                                             \
                PFX##_indices(&w[j + IQ1V_AHEAD], ix[(j + IQ1V_AHEAD) & IQ1V_AHEAD]);              \
            __asm__("" : "+m"(ix)); /* read back from memory */                                    \
            PFX##_begin(&w[j], &st);                                                               \
            __m512i is[IQ_BT];                                                                     \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_setzero_si512();   \
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)                                    \
            {                                                                                      \
                __m512i u = PFX##_weights(&st, p, iq1_grid8(ix[j & IQ1V_AHEAD] + 8 * p));          \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_dpbusd_epi32(  \
                    is[k], u, _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p));                    \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                           \
                PFX##_fin(is[k], _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), st.corr);  \
            iq_block_end(nb, acc, is, st.d, ad, j);                                                \
        }                                                                                          \
        iq_store(g, r, b, nb, acc);                                                                \
    }

IQ1V_TILE(iq1_s, kl_block_iq1_s)
IQ_GEMM(kl_avx512vbmi_gemm_iq1_s, iq1_s)
IQ1V_TILE(iq1_m, kl_block_iq1_m)
IQ_GEMM(kl_avx512vbmi_gemm_iq1_m, iq1_m)

/* IQ1_S packed into 2-bit codes (kernels/pack_iq1.c): per block, the scale table T (one
 * vpermb) and per plane p of 64 weights one GF2 affine of the record's 64 code bytes, one
 * vpermb of T and the dot. The affine moves plane p's code to bits 0-1 (bytes 0-31, elements
 * of the 32 with scale 2 p) or 2-3 (bytes 32-63, scale 2 p + 1: a qword's matrix is its own)
 * and sets bits 4-5 to p; T there holds 8 sc c for the code c (0..2) of that 32's scale sc:
 * T[16 p + c] of scale 2 p, T[16 p + 4 c] of scale 2 p + 1 (byte c of s_tab[0]'s word,
 * entries with c = 0 zero). The int32 lanes are the 512-bit tile's above, and so are its
 * bits. */
static _Alignas(64) uint8_t p_tix[64];
static uint64_t p_tmask;
/* vpmultishiftqb offsets: word w's low byte from bit 4 (w / 2) of the broadcast nibbles
 * (bits 4-7 hold the next nibble: vpermw reads bits 0-3) */
static _Alignas(32) uint8_t p_ms[32];

static void iq1p_init(void)
{
    for (int p = 0; p < 4; p++)
        for (int c = 1; c <= 2; c++) {
            p_tix[16 * p + c] = (uint8_t)(4 * (2 * p) + c - 1); /* byte c - 1 of word 4 p */
            p_tix[16 * p + 4 * c] = (uint8_t)(4 * (2 * p + 1) + c - 1);
            p_tmask |= 1ull << (16 * p + c) | 1ull << (16 * p + 4 * c);
        }
    for (int w = 0; w < 16; w++)
        p_ms[2 * w] = (uint8_t)(4 * (w / 2));
}

/* Plane p's T indices from the code bytes q (p a constant once unrolled). */
static inline __attribute__((always_inline)) __m512i iq1p_index(__m512i q, int p)
{
    /* rows of output bits 0, 1 (bytes 7, 6) or 2, 3 (bytes 5, 4): input bits 2 p, 2 p + 1 */
    const long long lo = (long long)((1ull << (2 * p)) << 56 | (1ull << (2 * p + 1)) << 48),
                    hi = (long long)((1ull << (2 * p)) << 40 | (1ull << (2 * p + 1)) << 32);
    const __m512i A = _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo);
    switch (p) {
    case 0:
        return _mm512_gf2p8affine_epi64_epi8(q, A, 0x00);
    case 1:
        return _mm512_gf2p8affine_epi64_epi8(q, A, 0x10);
    case 2:
        return _mm512_gf2p8affine_epi64_epi8(q, A, 0x20);
    default:
        return _mm512_gf2p8affine_epi64_epi8(q, A, 0x30);
    }
}

static inline __attribute__((always_inline)) void iq1p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    int64_t nblk = g->cols / KL_QKK;
    const uint8_t *w =
        g->W + (size_t)(r / 16) * g->w_stride + (size_t)(r % 16) * (size_t)nblk * KL_IQ1P_REC;
    const int8_t *aq[IQ_BT];
    const float *ad[IQ_BT];
    const int16_t *bs[IQ_BT];
    __m512 acc[IQ_BT];
    iq_rows(g, b, nb, aq, ad, bs, acc);
    const __m512i tix = ld(p_tix);
    const __m256i ms = _mm256_load_si256((const __m256i *)p_ms),
                  st0 = _mm256_load_si256((const __m256i *)s_tab[0]),
                  st1 = _mm256_load_si256((const __m256i *)s_tab[1]);
    const __mmask64 tm = p_tmask;
    for (int64_t j = 0; j < nblk; j++, w += KL_IQ1P_REC) {
        _mm_prefetch((const char *)w + IQ_PF, _MM_HINT_T0);
        uint32_t sn;
        uint16_t dh;
        memcpy(&sn, w + KL_IQ1P_S, 4), memcpy(&dh, w + KL_IQ1P_D, 2);
        __m256i v = _mm256_multishift_epi64_epi8(ms, _mm256_set1_epi32((int)sn));
        __m512i T = _mm512_maskz_permutexvar_epi8(
            tm, tix, _mm512_castsi256_si512(_mm256_permutexvar_epi16(v, st0)));
        __m256i corr = _mm256_permutexvar_epi16(v, st1);
        __m512i q = _mm512_loadu_si512((const void *)w);
        __m512i is[IQ_BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
        {
            __m512i u = _mm512_permutexvar_epi8(iq1p_index(q, p), T);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
                _mm512_dpbusd_epi32(is[k], u, _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p));
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
            iq1_s_fin(is[k], _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), corr);
        iq_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    iq_store(g, r, b, nb, acc);
}
IQ_GEMM(kl_avx512vbmi_gemm_iq1_s_packed, iq1p)

/* IQ1_M packed (kernels/pack_iq1.c: the code bytes, codes k = g + 2 in 1..3, the shift signs
 * and scales beside): per block two tables of 16-byte lanes, T0 for planes 0, 1 and T1 for
 * planes 2, 3, and per plane p one GF2 affine of the code bytes, one vpshufb of T(p / 2) and
 * the dot. Lane L of plane p is one scale's 16 elements (4 p + L) and its two qwords two shift
 * signs' 8 (8 p + 2 L, + 1). The affine maps a qword's 2-bit code into a 2-dimensional
 * subspace of the 4-bit lane index, one of 5 that share only 0 ({1, 2, 3} {4, 8, 12}
 * {5, 10, 15} {6, 11, 13} {7, 9, 14}), by the plane's parity and the qword's, so one lane table
 * holds the weights of two planes' 4 sign groups (the codes are never 0, so never collide):
 * m_val's sc (8 g + shift + 9) / 2, built by vpermb from E, the block's sign and scale bytes,
 * and the IQ1_M tile's fin. The int32 lanes are that tile's, and so are its bits. */
static _Alignas(64) uint64_t mp_aff[4][8]; /* plane p's affine matrix, by qword */
/* per table byte 16 L + v: the sign group of each table (0: planes 0, 1), the code k (0 for
 * the indices no code maps to) */
static _Alignas(64) uint8_t mp_grp[2][64], mp_k[64];
/* [k | sign << 2 | s << 3] = sc (4 (k - 1) + (sign ? 0 : 1)), 0 for k = 0 */
static _Alignas(64) uint8_t mp_val[64];
/* vpmultishiftqb offsets: E byte G's sign (bit G of sh) to bit 2 and its scale (bits
 * 3 (G / 2).. of sd) to bits 3-5; the scale of the bsums' 16 groups to bits 0-2 of each word */
static _Alignas(64) uint8_t mp_ms_sh[64], mp_ms_sc[64], mp_ms_grp[32];

static void iq1mp_init(void)
{
    static const int sub[2][2][2] = {{{1, 2}, {4, 8}}, {{5, 10}, {6, 11}}}; /* [p % 2][qword % 2] */
    for (int p = 0; p < 4; p++)
        for (int q = 0; q < 8; q++) {
            uint64_t A = 0;
            for (int i = 0; i < 4; i++) /* output bit i: row byte 7 - i, input bits 2 p, 2 p + 1 */
                A |= (uint64_t)((sub[p % 2][q % 2][0] >> i & 1) << (2 * p) |
                                (sub[p % 2][q % 2][1] >> i & 1) << (2 * p + 1))
                     << (8 * (7 - i));
            mp_aff[p][q] = A;
        }
    for (int L = 0; L < 4; L++)
        for (int j = 0; j < 2; j++)
            for (int par = 0; par < 2; par++)
                for (int k = 1; k <= 3; k++) {
                    int v = (k & 1 ? sub[j][par][0] : 0) ^ (k & 2 ? sub[j][par][1] : 0);
                    mp_k[16 * L + v] = (uint8_t)k;
                    for (int X = 0; X < 2; X++)
                        mp_grp[X][16 * L + v] = (uint8_t)(8 * (2 * X + j) + 2 * L + par);
                }
    for (int b = 0; b < 64; b++) {
        int k = b & 3, h = !(b & 4), sc = 2 * (b >> 3) + 1;
        mp_val[b] = (uint8_t)(k ? sc * (4 * (k - 1) + h) : 0);
    }
    for (int G = 0; G < 32; G++) {
        mp_ms_sh[G] = (uint8_t)((G - 2) & 63);
        mp_ms_sc[G] = (uint8_t)((3 * (G / 2) - 3) & 63);
    }
    for (int t = 0; t < 16; t++)
        mp_ms_grp[2 * t] = (uint8_t)(3 * t);
}

static inline __attribute__((always_inline)) void iq1mp_tile(const kl_gemm *g, int64_t r, int b,
                                                             int nb)
{
    int64_t nblk = g->cols / KL_QKK;
    const uint8_t *w =
        g->W + (size_t)(r / 16) * g->w_stride + (size_t)(r % 16) * (size_t)nblk * KL_IQ1MP_REC;
    const int8_t *aq[IQ_BT];
    const float *ad[IQ_BT];
    const int16_t *bs[IQ_BT];
    __m512 acc[IQ_BT];
    iq_rows(g, b, nb, aq, ad, bs, acc);
    const __m256i ms_grp = _mm256_load_si256((const __m256i *)mp_ms_grp),
                  corr_s = _mm256_load_si256((const __m256i *)m_corr);
    for (int64_t j = 0; j < nblk; j++, w += KL_IQ1MP_REC) {
        _mm_prefetch((const char *)w + IQ_PF, _MM_HINT_T0);
        /* sh with sd's low half above it (the offsets read bits 0-31), sd; broadcast loads */
        long long sh, sd;
        uint16_t dh;
        memcpy(&sh, w + KL_IQ1MP_SH, 8), memcpy(&sd, w + KL_IQ1MP_SD, 8);
        memcpy(&dh, w + KL_IQ1MP_SD + 6, 2);
        __m512i bsd = _mm512_set1_epi64(sd);
        /* E: byte G (0..31) the sign of group G in bit 2, its scale in bits 3-5 */
        __m512i E = _mm512_ternarylogic_epi32(
            _mm512_multishift_epi64_epi8(ld(mp_ms_sh), _mm512_set1_epi64(sh)),
            _mm512_multishift_epi64_epi8(ld(mp_ms_sc), bsd), _mm512_set1_epi8(4), 0xE4);
        __m512i T[2];
        for (int X = 0; X < 2; X++) /* mp_val by k | E's bits 2-5 */
            T[X] = _mm512_permutexvar_epi8(
                _mm512_ternarylogic_epi32(ld(mp_k), _mm512_permutexvar_epi8(ld(mp_grp[X]), E),
                                          _mm512_set1_epi8(3), 0xE4),
                ld(mp_val));
        __m256i corr = _mm256_permutexvar_epi16(
            _mm256_multishift_epi64_epi8(ms_grp, _mm512_castsi512_si256(bsd)), corr_s);
        __m512i q = _mm512_loadu_si512((const void *)w);
        __m512i is[IQ_BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
        {
            __m512i u = _mm512_shuffle_epi8(
                T[p / 2], _mm512_gf2p8affine_epi64_epi8(q, _mm512_load_si512(mp_aff[p]), 0));
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
                _mm512_dpbusd_epi32(is[k], u, _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p));
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
            iq1_m_fin(is[k], _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), corr);
        iq_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    iq_store(g, r, b, nb, acc);
}
IQ_GEMM(kl_avx512vbmi_gemm_iq1_m_packed, iq1mp)

/* The rows of this file over the AVX-512 VBMI table (called once, from dispatch.c's build). */
void kl_avx512vbmi_types_iq1(kl_isa *isa)
{
    iq1_vbmi_init();
    iq1p_init();
    iq1mp_init();
    isa->types[KL_IQ1_S].gemm = kl_avx512vbmi_gemm_iq1_s;
    isa->types[KL_IQ1_S].pack_bytes = kl_pack_iq1_s_bytes;
    isa->types[KL_IQ1_S].pack = kl_pack_iq1_s;
    isa->types[KL_IQ1_S].gemm_packed = kl_avx512vbmi_gemm_iq1_s_packed;
    isa->types[KL_IQ1_M].gemm = kl_avx512vbmi_gemm_iq1_m;
    isa->types[KL_IQ1_M].pack_bytes = kl_pack_iq1_m_bytes;
    isa->types[KL_IQ1_M].pack = kl_pack_iq1_m;
    isa->types[KL_IQ1_M].gemm_packed = kl_avx512vbmi_gemm_iq1_m_packed;
}
