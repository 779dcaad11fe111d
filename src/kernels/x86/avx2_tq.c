/* kernels/x86/avx2_tq.c: TQ1_0 and TQ2_0, AVX2 (the tile is x86/avx2_tq.h). A chunk's pair
 * sums (vpmaddubsw) add up in int16 over the block, and the activations' 16-element sums come off
 * there (|lane| <= 8 * 2 * 3 * 128 + 16 * 128 < 2^15) before one vpmaddwd. The int32 lanes are
 * those of the IQ2 tile (x86/avx2_iq.h) these kernels replaced (madd(s, 1) - madd(bsums, 1) =
 * madd(s - bsums, 1) lane by lane): the same bits. */
#include "kernels/x86/avx2_tq.h"

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
TQ_GEMM(kl_avx2_gemm_tq2_0, tq2_0)
/* TQ1_0 packed as TQ2_0's blocks (kernels/pack_tq.c): the TQ2_0 kernel on a panel's rows, the
 * TQ1_0 tile's int32 lanes (the same chunks of 32 elements), so its bits. */
void kl_avx2_gemm_tq1_0_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_tq1_0_packed_rows(g);
    kl_avx2_gemm_tq2_0(&h, r0, r1);
}
TQ_TILE(tq1_0, kl_block_tq1_0, tq16, 0)
TQ_GEMM(kl_avx2_gemm_tq1_0, tq1_0)
