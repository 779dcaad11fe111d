/* kernels/x86/avx2_iq1.c: IQ1_S and IQ1_M against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h; the plan is x86/avx512_iq1.c's, 32 elements at a time). */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq1_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq1_m(const kl_gemm *g, int64_t r0, int64_t r1);

typedef struct {
    __m256i s16;
    float d;
} iq1_st;
typedef iq1_st iq1_s_st;
typedef iq1_st iq1_m_st;

/* 8 g + shift for 4 grid entries; shift is +-1 per byte. */
static inline __m256i grid4(__m128i idx, __m256i shift)
{
    __m256i g = _mm256_i32gather_epi64((const long long *)kl_iq1s_grid, idx, 8);
    g = _mm256_add_epi8(g, g), g = _mm256_add_epi8(g, g), g = _mm256_add_epi8(g, g);
    return _mm256_add_epi8(g, shift);
}

static inline void iq1_s_begin(const kl_block_iq1_s *w, iq1_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq1_s(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(w->d);
}

static inline __m256i iq1_s_chunk32(const kl_block_iq1_s *w, const iq1_st *st, int c)
{
    (void)st;
    const uint8_t *q = w->qs + 4 * c;
    int h = w->qh[c];
    __m128i idx = _mm_setr_epi32(q[0] | (h << 8 & 0x700), q[1] | (h << 5 & 0x700),
                                 q[2] | (h << 2 & 0x700), q[3] | (h >> 1 & 0x700));
    return grid4(idx, _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
}

static inline void iq1_m_begin(const kl_block_iq1_m *w, iq1_st *st)
{
    int16_t v[16];
    kl_iq_scales_iq1_m(w, v);
    st->s16 = _mm256_loadu_si256((const __m256i *)v);
    st->d = 0.125f * _cvtsh_ss(kl_iq1_m_d(w));
}

static inline __m256i iq1_m_chunk32(const kl_block_iq1_m *w, const iq1_st *st, int c)
{
    (void)st;
    const uint8_t *q = w->qs + 4 * c;
    int h0 = w->qh[2 * c], h1 = w->qh[2 * c + 1];
    __m128i idx = _mm_setr_epi32(q[0] | (h0 << 8 & 0x700), q[1] | (h0 << 4 & 0x700),
                                 q[2] | (h1 << 8 & 0x700), q[3] | (h1 << 4 & 0x700));
    __m256i shift = _mm256_setr_epi64x(h0 & 0x08 ? -1 : 1, h0 & 0x80 ? -1 : 1, h1 & 0x08 ? -1 : 1,
                                       h1 & 0x80 ? -1 : 1);
    /* each 64-bit lane's low byte (+-1) in all its bytes */
    shift = _mm256_shuffle_epi8(shift,
                                _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8, 0,
                                                 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8));
    return grid4(idx, shift);
}

IQ2_TILE(iq1_s, kl_block_iq1_s, 0)
IQ2_GEMM(kl_avx2_gemm_iq1_s, iq1_s)
IQ2_TILE(iq1_m, kl_block_iq1_m, 0)
IQ2_GEMM(kl_avx2_gemm_iq1_m, iq1_m)
