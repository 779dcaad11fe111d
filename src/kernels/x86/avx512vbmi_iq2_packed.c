/* kernels/x86/avx512vbmi_iq2_packed.c: IQ2_XS and IQ2_S packed (kernels/pack_iq2.c,
 * kl_pack_iq2_t8p: 2-bit magnitude indices and sign bits in the lanes of T8P activations)
 * against those activations, AVX-512 VBMI.
 *
 * Why: x86/avx512vbmi_iq.c decodes the file's blocks at ~4-4.5 ns a block at B=1 (grid lookups
 * by vpermt2b over 512 or 1024 bytes of code planes, the sign fields through gf2p8affineqb),
 * well under the read bandwidth; here a plane is one vpermb of its magnitude fields (+ IQ2_BIAS),
 * one mask load and one masked vpsubb for its signs (128 - (64 + m) = 64 - m), so the tile is
 * bound by the multiplies and the read, at 106 bytes a block instead of 74 (IQ2_XS) or 82
 * (IQ2_S). The planes' bytes, the scale words and the float steps are those of avx512vbmi_iq.c's
 * pair tile, in the same order: packed or not, the VBMI table gives the same bits.
 * Measured on the shared Zen 5 (2.6 GHz, busy), one thread, B=1: from L2/L3 (a 1024- to
 * 4096-row matrix, the decode alone) IQ2_XS 3.8-3.9 -> 2.6-2.9 ns a block, IQ2_S 4.65 -> 2.63;
 * bench-kernels 8192x2048 streamed, GB/s of the file, alternated in one run: IQ2_XS t1 18.3-18.8
 * -> 20.1-20.3, t2 13.0 -> 14.0; IQ2_S t1 17.1-17.4 -> 21.3-22.9, t2 12.5-13.7 -> 14.9-15.7
 * (read 28-38 GB/s then: the form's 1.43x / 1.29x bytes are what bound it). IQ2_XXS packed so
 * decodes in 2.47 ns against 2.85 but reads 1.61x the bytes: it stays on the file's blocks. */
#include "kernels/x86/avx512vbmi_iq.h"

void kl_avx512vbmi_types_iq2_packed(kl_isa *isa);
void kl_avx512vbmi_gemm_iq2_packed(const kl_gemm *g, int64_t r0, int64_t r1);

#define IQ2_BIAS 64 /* as avx512vbmi_iq.c's: the tile takes it out through bsums */

/* mag[f][x]: IQ2_BIAS + the magnitude (8, 25, 43) of field f (bits 2 f, 2 f + 1) of byte x. */
static _Alignas(64) uint8_t mag[3][64];

static void tab_init(void)
{
    static const uint8_t v[4] = {8, 25, 43, 0};
    for (int f = 0; f < 3; f++)
        for (int x = 0; x < 64; x++)
            mag[f][x] = (uint8_t)(IQ2_BIAS + v[x >> 2 * f & 3]);
}

/* Vector v's biased signed weights from its magnitude bytes m (fields of vectors v - v % 4..)
 * and its sign qword. */
static inline __attribute__((always_inline)) __m512i plane(__m512i m, const uint8_t *sg, int v)
{
    __m512i x = v % 4 == 3 ? _mm512_srli_epi16(m, 6) : m;
    __m512i q = _mm512_permutexvar_epi8(x, ld(mag[v % 4 == 3 ? 0 : v % 4]));
    uint64_t s;
    memcpy(&s, sg + 8 * v, 8);
    return _mm512_mask_sub_epi8(q, (__mmask64)s, _mm512_set1_epi8((char)(2 * IQ2_BIAS)), q);
}

/* 2 s + 1 of the 16 scale nibbles of each of n blocks at s, one a byte (n = 1: in the low 16
 * bytes). */
static inline __m256i nibbles(const uint8_t *s, int n)
{
    long long s0, s1;
    memcpy(&s0, s, 8), memcpy(&s1, s + 8 * (n - 1), 8);
    const __m256i ms = _mm256_set_epi64x(0x3C3834302C282420ll, 0x1C1814100C080400ll,
                                         0x3C3834302C282420ll, 0x1C1814100C080400ll);
    __m256i nib = _mm256_multishift_epi64_epi8(ms, _mm256_set_epi64x(s1, s1, s0, s0));
    return _mm256_ternarylogic_epi32(_mm256_add_epi8(nib, nib), _mm256_set1_epi8(30),
                                     _mm256_set1_epi8(1), 0xEA); /* (2 nib & 30) | 1 */
}

/* The tile: pairs of blocks (T8P), then an odd last one (T8); per pair and row as
 * avx512vbmi_iq.c's IQ2_PAIR_TILE for IQ2_XS and IQ2_S: the bias term by one vpmaddwd, 8 planes
 * by vpmaddubsw and vpdpwssd by the scale words (at one row the odd ones into a second
 * accumulator), one vfmadd with both blocks' d * d_a. */
static inline __attribute__((always_inline)) void iq2p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    int64_t nblk = g->cols / KL_QKK;
    const uint8_t *w =
        g->W + (size_t)(r / KL_PR) * g->w_stride + (size_t)(r % KL_PR) * (size_t)nblk * KL_IQ2P_REC;
    const int8_t *aq[IQ_BT];
    const float *ad[IQ_BT];
    const int16_t *bs[IQ_BT];
    __m512 acc[IQ_BT];
    iq_rows(g, b, nb, aq, ad, bs, acc);
    __m512i is[IQ_BT];
    const __m512i dsel = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    int64_t j = 0;
    for (; j + 1 < nblk; j += 2, w += 2 * KL_IQ2P_REC) {
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
            _mm_prefetch((const char *)w + IQ_PF + 64 * i, _MM_HINT_T0);
        __m512i m0 = _mm512_loadu_si512((const void *)w);
        __m512i m1 = _mm512_loadu_si512((const void *)(w + 64));
        __asm__("" : "+v"(m0), "+v"(m1)); /* in registers: not reloaded (across lines) a plane */
        const uint8_t *sg = w + 128;
        __m512i sc = _mm512_cvtepu8_epi16(nibbles(w + 192, 2));
        __m512i m16 = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sc, 6));
        uint32_t dh;
        memcpy(&dh, w + 208, 4);
        __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dh)), _mm_set1_ps(0.125f));
        d = _mm_blend_ps(d, _mm_setzero_ps(), 0xC);
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =
            _mm512_madd_epi16(_mm512_loadu_si512(bs[k] + 16 * j), m16);
        __m512i odd = _mm512_setzero_si512();
        _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++)
        {
            __m512i q = plane(p < 4 ? m0 : m1, sg, p);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m512i a = _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p);
                __m512i *t = nb == 1 && p % 2 ? &odd : &is[k];
                *t = _mm512_dpwssd_epi32(*t, _mm512_maddubs_epi16(q, a), sc);
            }
        }
        if (nb == 1) is[0] = _mm512_add_epi32(is[0], odd);
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
        {
            __m128 dd = _mm_mul_ps(d, _mm_castpd_ps(_mm_load_sd((const double *)(ad[k] + j))));
            acc[k] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[k]),
                                _mm512_permutexvar_ps(dsel, _mm512_castps128_ps512(dd)), acc[k]);
        }
    }
    if (j < nblk) { /* 106 bytes: m at 0, sg at 64, s at 96, d at 104 */
        __m512i m = _mm512_loadu_si512((const void *)w);
        __m256i s16 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(nibbles(w + 96, 1)));
        __m512i sc = _mm512_broadcast_i64x4(s16);
        __m256i m16 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 6));
        uint16_t dh;
        memcpy(&dh, w + 104, 2);
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm512_zextsi256_si512(
            _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j)), m16));
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
        {
            __m512i q = plane(m, w + 64, p);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m512i a = _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p);
                is[k] = _mm512_dpwssd_epi32(is[k], _mm512_maddubs_epi16(q, a), sc);
            }
        }
        iq_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    iq_store(g, r, b, nb, acc);
}

IQ_GEMM(kl_avx512vbmi_gemm_iq2_packed, iq2p)

/* The packed rows of this file over the VBMI table, after avx512vbmi_iq.c's (once, from
 * dispatch.c's build): the activations stay that file's T8P. */
void kl_avx512vbmi_types_iq2_packed(kl_isa *isa)
{
    tab_init();
    static const kl_dtype types[] = {KL_IQ2_XS, KL_IQ2_S};
    for (int i = 0; i < 2; i++) {
        kl_type_ops *o = &isa->types[types[i]];
        if (o->act != KL_ACT_Q8_K_T8P) continue; /* avx512vbmi_iq.c's init declined */
        o->pack_bytes = kl_pack_iq2_bytes;
        o->pack = kl_pack_iq2_t8p;
        o->gemm_packed = kl_avx512vbmi_gemm_iq2_packed;
    }
}
