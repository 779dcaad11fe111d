/* kernels/x86/avx2_iq2_packed.c: IQ2_XXS, IQ2_XS and IQ2_S packed into nibble codes
 * (kernels/pack_iq2.c has the layout) against Q8_K activations, AVX2: one tile for the three
 * types.
 *
 * (kl_pack_iq2_nib: the VBMI table keeps the planes' form, kl_pack_iq2_t8p.) A weight g (+-8, +-25,
 * +-43) becomes u = g + 64 (21..107) in one vpshufb of its code, 32 weights at a time (the high
 * nibbles after one vpsrlw), and u is vpmaddubsw's unsigned operand against the activations a
 * themselves: no sign operations. A pair of products is at most 2 * 107 * 128 = 27392, no
 * saturation; vpmaddwd by the scales 2 s + 1 and an add per 32 weights, as the plain tile. The
 * offset comes out once a block: 64 (2 s_t + 1) against the 16-element sums bs_t, one vpmaddwd, so
 * the block's integer is the file's, sum_t (2 s_t + 1) (dot_t(u, a) - 64 bs_t) = sum_t (2 s_t + 1)
 * dot_t(g, a) and it is reduced to one int32 and added in the reference's float steps, (float)isum
 * * (d * d_a) a block, in order: the scalar reference's bits (ref_iq.c), not the plain AVX2 tile's
 * (x86/avx2_iq2.c keeps per-lane float sums). About 4.5 vector operations per 32 weights
 * (the planes of 3 bits a weight before took ~7.75: a vpshufb, a shift, an or and a vpsignb).
 * Measured on a machine loaded ~6x over (load average 13 on 2 cores, read 10-14 GB/s), so
 * take these as lower bounds: bench-kernels 1 thread B=1 8192x2048, GB/s of the file,
 * alternating with the planes' binary: IQ2_XXS 13.9-14.0 against 13.2-13.4, IQ2_XS
 * 14.6-15.5 against 14.0-14.5, IQ2_S 16.0-16.3 against 14.8-16.2; a cached 8192x2048 loop,
 * 4.6-4.8 ns a block, of which ~0.35 the per-block reduction and float step and ~0.4 the
 * offset's (the 16-byte scale table shuffled per chunk instead of sc_words: 5.4 ns, the
 * shuffle ports). 1B IQ2_XS decode, 2 threads: 62.8-62.9 tokens per CPU-second against
 * 56.1-58.6, max RSS 799 MB against 687 (the codes' 32 bytes a block more). */
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/packed_prefetch.h"
#include "kernels/x86/tile4_gemm.h"

void kl_avx2_gemm_iq2_packed(const kl_gemm *g, int64_t r0, int64_t r1);

#define BT 4  /* activation rows per tile */
#define PR 16 /* rows per panel (pack_iq2.c) */

/* Row x: 2 s + 1 of x's low nibble in int16 lanes 0-7 (a chunk's first 16 elements), of its
 * high nibble in lanes 8-15 */
static _Alignas(32) int16_t sc_words[256][16];

static void tab_init(void)
{
    for (int x = 0; x < 256; x++)
        for (int i = 0; i < 16; i++)
            sc_words[x][i] = (int16_t)(2 * (x >> (i < 8 ? 0 : 4) & 0xF) + 1);
}

/* g + 64 of code m | n << 2 (m: 8, 25, 43; n: negative); codes 3, 7 and 8-15 never occur */
#define IQ2P_U 72, 89, 107, 0, 56, 39, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0

/* 64 (2 s_t + 1) of the block's 16 scales in t order, from its scale bytes s (pack_iq2.c) */
static inline __attribute__((always_inline)) __m256i offset_scales(uint64_t s)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i x = _mm_cvtsi64_si128((long long)s);
    __m128i t = _mm_unpacklo_epi8(_mm_and_si128(x, m4), _mm_and_si128(_mm_srli_epi16(x, 4), m4));
    return _mm256_or_si256(_mm256_slli_epi16(_mm256_cvtepu8_epi16(t), 7), _mm256_set1_epi16(64));
}

static inline __attribute__((always_inline)) void iq2p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    const uint8_t *w = g->W + (size_t)r * (g->w_stride / PR); /* a panel: 16 rows in turn */
    const int8_t *aq[BT];
    const float *ad[BT];
    const int16_t *bs[BT];
    __m256 unused[BT];
    q8k_rows(g, b, nb, aq, ad, bs, unused);
    float out[BT] = {0.0f, 0.0f, 0.0f, 0.0f};
    const __m256i tu = _mm256_setr_epi8(IQ2P_U, IQ2P_U);
    for (int64_t j = 0; j < g->cols / KL_QKK; j++) {
        const uint8_t *q = w + (size_t)j * KL_IQ2N_REC;
        if (b == 0) /* a record spans three lines or four: its first byte's, 64 on */
            kl_pf_share(q, KL_IQ2N_REC, 0, 1);
        uint64_t s;
        uint16_t dh;
        memcpy(&s, q + KL_IQ2N_S, 8), memcpy(&dh, q + KL_IQ2N_D, 2);
        __m256i u[8];
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)
        {
            __m256i x = _mm256_loadu_si256((const __m256i *)(q + 32 * h));
            u[2 * h] = _mm256_shuffle_epi8(tu, x);
            u[2 * h + 1] = _mm256_shuffle_epi8(tu, _mm256_srli_epi16(x, 4));
        }
        const __m256i os = offset_scales(s);
        __m256i is[BT];
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) is[k] = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_madd_epi16(os, _mm256_loadu_si256((const __m256i *)(bs[k] + 16 * j))));
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            __m256i sc = _mm256_load_si256((const __m256i *)sc_words[s >> (8 * c) & 0xFF]);
            _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                is[k] =
                    _mm256_add_epi32(is[k], _mm256_madd_epi16(_mm256_maddubs_epi16(u[c], a), sc));
            }
        }
        const float d = 0.125f * _cvtsh_ss(dh); /* kl_iq_dec's d (ref_iq2.c) */
        _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) out[k] +=
            (float)kl_avx2_hsum_epi32(is[k]) * (d * ad[k][j]);
    }
    _Pragma("GCC unroll 4") for (int k = 0; k < nb; k++) g->y[(int64_t)(b + k) * g->ldy + r] =
        out[k];
}
TILE4_GEMM(kl_avx2_gemm_iq2_packed, iq2p, PR)

/* The IQ2 types' packed rows of the AVX2 table (once, from kl_isa_avx2_own). */
void kl_avx2_types_iq2_packed(kl_isa *isa)
{
    tab_init();
    static const kl_dtype types[] = {KL_IQ2_XXS, KL_IQ2_XS, KL_IQ2_S};
    for (int i = 0; i < 3; i++) {
        isa->types[types[i]].pack_bytes = kl_pack_iq2_nib_bytes;
        isa->types[types[i]].pack = kl_pack_iq2_nib;
        isa->types[types[i]].gemm_packed = kl_avx2_gemm_iq2_packed;
    }
}
