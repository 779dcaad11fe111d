/* kernels/x86/avx512_tq.c: TQ1_0 and TQ2_0 for the AVX-512 table: the 256-bit tile of
 * x86/avx2_tq.h with AVX-512 VNNI's vpdpbusd, a chunk's products added into int32 lanes in one
 * instruction (AVX2 needs vpmaddubsw and an add). The block's activation sums come off in int32
 * (vpmaddwd of the 16 sums by 1). Exact integers throughout; the lanes are not AVX2's, so the
 * float sums may differ from the AVX2 table's in the last bits, as other types' do. */
#include "kernels/x86/avx2_tq.h"

void kl_avx512_gemm_tq1_0(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512_gemm_tq2_0(const kl_gemm *g, int64_t r0, int64_t r1);

static inline __m256i tq32_acc(__m256i s, __m256i q, __m256i a)
{
    s = _mm256_dpbusd_epi32(s, q, a);
    __asm__("" : "+v"(s)); /* keeps the accumulation in order, as in avx2_tq.c */
    return s;
}
static inline __m256i tq32_join(__m256i s, __m256i t)
{
    return _mm256_add_epi32(s, t);
}
static inline __m256i tq32_i32(__m256i s, __m256i bsum)
{
    return _mm256_sub_epi32(s, _mm256_madd_epi16(bsum, _mm256_set1_epi16(1)));
}

TQ_TILE(tq2_0, kl_block_tq2_0, tq32, 2)
TQ_GEMM(kl_avx512_gemm_tq2_0, tq2_0)
TQ_TILE(tq1_0, kl_block_tq1_0, tq32, 2)
TQ_GEMM(kl_avx512_gemm_tq1_0, tq1_0)
