/* kernels/x86/avx2_iq2_packed.c: IQ2_XXS, IQ2_XS and IQ2_S packed into planes (kernels/pack_iq2.c
 * has the layout) against Q8_K activations, AVX2: one tile for the three types.
 *
 * The plain tile (x86/avx2_iq2.c over x86/avx2_iq.h) with the grid lookups gone. Per 32-element
 * chunk c: its magnitudes are one vpshufb of a 2-bit-pair nibble (a half's low nibbles hold
 * planes 4 h, 4 h + 1, its high ones 4 h + 2, 4 h + 3; one table takes a nibble's low pair,
 * another its high one); its signs are the sign plane shifted left 7 - c (bit c of each byte to
 * the top) and or 1 (never 0, for vpsignb); its scales a 32-byte row of a 256-row table by the
 * record's scale byte. The activations take the signs, vpmaddubsw and vpmaddwd add them up as
 * the plain tile does, in the same order, so the int32 lanes and float steps are the plain
 * kernel's: packed or not, AVX2 gives the same bits. */
#include <immintrin.h>
#include <string.h>

#include "kernels/iq.h"
#include "kernels/x86/avx2_q8k_rows.h"
#include "kernels/x86/packed_prefetch.h"
#include "kernels/x86/tile4_gemm.h"

void kl_avx2_gemm_iq2_packed(const kl_gemm *g, int64_t r0, int64_t r1);

#define BT 4 /* activation rows per tile */

/* Row x: 2 s + 1 of x's low nibble in int16 lanes 0-7 (a chunk's first 16 elements), of its
 * high nibble in lanes 8-15 */
static _Alignas(32) int16_t sc_words[256][16];

static void tab_init(void)
{
    for (int x = 0; x < 256; x++)
        for (int i = 0; i < 16; i++)
            sc_words[x][i] = (int16_t)(2 * (x >> (i < 8 ? 0 : 4) & 0xF) + 1);
}

/* The magnitude of index i (8, 25, 43; 3 unused) for a nibble's low pair (lo) and high pair */
#define IQ2P_LO 8, 25, 43, 0, 8, 25, 43, 0, 8, 25, 43, 0, 8, 25, 43, 0
#define IQ2P_HI 8, 8, 8, 8, 25, 25, 25, 25, 43, 43, 43, 43, 0, 0, 0, 0

static inline __attribute__((always_inline)) void iq2p_tile(const kl_gemm *g, int64_t r, int b,
                                                            int nb)
{
    const uint8_t *w = g->W + (size_t)r * (g->w_stride / KL_PR); /* a panel: 16 rows in turn */
    const int8_t *aq[BT];
    const float *ad[BT];
    __m256 acc[BT];
    q8k_rows(g, b, nb, aq, ad, NULL, acc);
    const __m256i lo = _mm256_setr_epi8(IQ2P_LO, IQ2P_LO), hi = _mm256_setr_epi8(IQ2P_HI, IQ2P_HI);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t j = 0; j < g->cols / KL_QKK; j++) {
        const uint8_t *q = w + (size_t)j * KL_IQ2P_REC;
        const __m256i sg = _mm256_loadu_si256((const __m256i *)(q + KL_IQ2P_SG));
        if (b == 0) /* a record spans two lines or three: its first byte's, 64 on */
            kl_pf_share(q, KL_IQ2P_REC, 0, 1);
        uint64_t s;
        uint16_t dh;
        memcpy(&s, q + KL_IQ2P_S, 8), memcpy(&dh, q + KL_IQ2P_D, 2);
        __m256i nib[4]; /* half h's low nibbles, high nibbles */
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
        {
            __m256i x = _mm256_loadu_si256((const __m256i *)(q + 32 * h));
            nib[2 * h] = _mm256_and_si256(x, m4);
            nib[2 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        }
        __m256i is[BT];
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++)
        {
            __m256i m = _mm256_shuffle_epi8(c % 2 ? hi : lo, nib[c / 2]);
            __m256i sn = _mm256_or_si256(_mm256_slli_epi16(sg, 7 - c), one);
            __m256i sc = _mm256_load_si256((const __m256i *)sc_words[s >> (8 * c) & 0xFF]);
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)
            {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq[k] + j * KL_QKK + 32 * c));
                is[k] = _mm256_add_epi32(
                    is[k], _mm256_madd_epi16(_mm256_maddubs_epi16(m, _mm256_sign_epi8(a, sn)), sc));
                __asm__("" : "+x"(is[k])); /* keeps GCC from regrouping the adds */
            }
        }
        q8k_block_end(nb, acc, is, 0.125f * _cvtsh_ss(dh), ad, j);
    }
    q8k_store(g, r, b, nb, acc);
}
TILE4_GEMM(kl_avx2_gemm_iq2_packed, iq2p, KL_PR)

/* The IQ2 types' packed rows of the AVX2 table (once, from kl_isa_avx2_own). */
void kl_avx2_types_iq2_packed(kl_isa *isa)
{
    tab_init();
    static const kl_dtype types[] = {KL_IQ2_XXS, KL_IQ2_XS, KL_IQ2_S};
    for (int i = 0; i < 3; i++) {
        isa->types[types[i]].pack_bytes = kl_pack_iq2_bytes;
        isa->types[types[i]].pack = kl_pack_iq2;
        isa->types[types[i]].gemm_packed = kl_avx2_gemm_iq2_packed;
    }
}
