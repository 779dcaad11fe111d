/* kernels/x86/avx2_tq.c: TQ1_0 and TQ2_0, AVX2 (the tile is x86/avx2_tq.h). A chunk's pair
 * sums (vpmaddubsw) add up in int16 over the block, and the activations' 16-element sums come off
 * there (|lane| <= 8 * 2 * 3 * 128 + 16 * 128 < 2^15) before one vpmaddwd. The int32 lanes are
 * those of the IQ2 tile (x86/avx2_iq.h) these kernels replaced (madd(s, 1) - madd(bsums, 1) =
 * madd(s - bsums, 1) lane by lane): the same bits. */
#include "kernels/x86/avx2_tq.h"
#include "kernels/x86/packed_prefetch.h"

void kl_avx2_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i tq16_acc(__m256i s, __m256i q, __m256i a)
{
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q, a));
    __asm__("" : "+x"(s)); /* keeps GCC from regrouping a block's adds (stack spills) */
    return s;
}
static inline __m256i tq16_init(__m256i bsum) /* the sums start at 0, bsum comes off at the end */
{
    (void)bsum;
    return _mm256_setzero_si256();
}
static inline __m256i tq16_join(__m256i s, __m256i t) /* not called: SPLIT is 0 */
{
    return _mm256_add_epi16(s, t);
}
static inline __m256i tq16_i32(__m256i s, __m256i bsum)
{
    return _mm256_madd_epi16(_mm256_sub_epi16(s, bsum), _mm256_set1_epi16(1));
}

TQ_TILE(tq2_0, kl_block_tq2_0, tq16, 0)

/* TQ2_0 at one activation row with fewer instructions (the tile is bound by them, not by the
 * read): fields 0 and 1 are masked in place (x & 0x03, 0x0C: times 1 and 4), fields 2 and 3 the
 * same after one 16-bit shift by 4 (a byte's high nibble moves down, the next byte's low nibble
 * lands in bits 4-7 and the masks drop it); the pair sums add up in two int16 sums by scale, the
 * times-4 one shifted back at the end (a multiple of 4; |sum| <= 4 * 2 * 12 * 128 < 2^15).
 * Against three scales (fields 0-2 in place, field 3 shifted and masked): one shift for two
 * fields, 7 adds and shifts a block instead of 9. The same int16 sums as the tile, so its bits.
 * Each block asks for the line KL_PF_AHEAD bytes ahead (x86/packed_prefetch.h) (rows one after
 * another in memory; a hint, it never faults past the matrix). Still bound by the vector ports
 * (31 operations a block, of which the float tail is 6; without that tail the same loop reads
 * 38-40 GB/s from L2). */
static inline __attribute__((always_inline)) void tq2_0r_tile(const kl_gemm *g, int64_t r, int b)
{
    int64_t n = g->cols, nblk = n / KL_QKK;
    const kl_block_tq2_0 *w = (const kl_block_tq2_0 *)(g->W + (size_t)r * g->w_stride);
    const uint8_t *a0 = g->act + (size_t)b * g->a_stride;
    const float *ad = kl_act_q8_k_d(a0, n);
    const int16_t *bs = kl_act_q8_k_bsums(a0, n);
    const __m256i m0 = _mm256_set1_epi8(0x03), m1 = _mm256_set1_epi8(0x0C);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < nblk; j++) {
        _mm_prefetch((const char *)&w[j] + KL_PF_AHEAD, _MM_HINT_T0);
        const __m256i *aj = (const __m256i *)(a0 + j * KL_QKK);
        __m256i s1 = _mm256_setzero_si256(), s4 = s1; /* scale 1: fields 0, 2; 4: fields 1, 3 */
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
        {
            __m256i x = _mm256_loadu_si256((const __m256i *)(w[j].qs + 32 * h));
            __m256i y = _mm256_srli_epi16(x, 4);
            __m256i p0 =
                _mm256_maddubs_epi16(_mm256_and_si256(x, m0), _mm256_loadu_si256(aj + 4 * h));
            __m256i p1 =
                _mm256_maddubs_epi16(_mm256_and_si256(x, m1), _mm256_loadu_si256(aj + 4 * h + 1));
            __m256i p2 =
                _mm256_maddubs_epi16(_mm256_and_si256(y, m0), _mm256_loadu_si256(aj + 4 * h + 2));
            __m256i p3 =
                _mm256_maddubs_epi16(_mm256_and_si256(y, m1), _mm256_loadu_si256(aj + 4 * h + 3));
            s1 = _mm256_add_epi16(s1, _mm256_add_epi16(p0, p2));
            s4 = _mm256_add_epi16(s4, _mm256_add_epi16(p1, p3));
        }
        __m256i s16 = _mm256_add_epi16(s1, _mm256_srai_epi16(s4, 2));
        __m256i i32 = tq16_i32(s16, _mm256_loadu_si256((const __m256i *)(bs + 16 * j)));
        __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)w[j].d));
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d, _mm256_set1_ps(ad[j])), acc);
    }
    g->y[(int64_t)b * g->ldy + r] = kl_avx2_hsum_ps(acc);
}
TQ2_0_GEMM(kl_avx2_gemm_tq2_0)
/* TQ1_0 packed as TQ2_0's blocks (kernels/pack_tq.c): the TQ2_0 kernel on a panel's rows, the
 * TQ1_0 tile's int32 lanes (the same chunks of 32 elements), so its bits. */
void kl_avx2_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    kl_avx2_gemm_tq2_0(&h, r0, r1);
}
TQ_TILE(tq1_0, kl_block_tq1_0, tq16, 0)
TQ_GEMM(kl_avx2_gemm_tq1_0, tq1_0)
