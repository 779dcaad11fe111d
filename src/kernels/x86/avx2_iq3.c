/* kernels/x86/avx2_iq3.c: IQ3_XXS and IQ3_S against Q8_K activations, AVX2 (the tile is
 * x86/avx2_iq.h). A chunk of 32 elements is one sub-block: 8 grid indices (8 loads of 4
 * magnitudes each) and 4 sign bytes, spread to a sign per element for the activations. */
#include "kernels/x86/avx2_iq.h"

void kl_avx2_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx2_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);

/* Both types keep a block's scales and signs where one in-lane vpshufb takes out a chunk's, and
 * step that vpshufb's controls from chunk to chunk in registers: as constants each would be a
 * load per chunk, and loads (8 indices, 8 grid entries, the activations) bound the B=1 loop. */
#define IQ3_ST                                                                                     \
    __m256i s16;   /* in both 128-bit lanes: chunk c's scale 2 s + 1 in 16-bit lane c */           \
    __m256i signs; /* chunk c's sign bytes 0, 1 at bytes 2c, 2c + 1 of the low 128-bit lane, its   \
                      bytes 2, 3 at the same places of the high lane */                            \
    __m256i sctl, gctl; /* the next chunk's vpshufb controls of s16 and signs */                   \
    float d;
typedef struct {
    IQ3_ST
} iq3_xxs_st;
typedef struct {
    IQ3_ST
    const uint16_t *idx; /* iq3_s_idx */
} iq3_s_st;
/* IQ3_S's 9-bit grid indices, read back 4 by one load (iq3_s_chunk32): per thread, as the
 * workers run tiles at once (in the state, GCC keeps them in registers and takes each out with a
 * vpextrw, shuffle operations instead of one load: 4% slower at B=1; 4 at a time by vmovq and
 * vpextrq, as fast as the loads). Two buffers, used in turn: the tile (IQ2_TILE_AHEAD) makes the
 * next block's indices while it sums this one's, so that their loads do not wait for the
 * stores (B=1 1.08x, B=4 and 8 1.1x). */
static _Thread_local _Alignas(32) uint16_t iq3_s_idx[2][KL_QKK / 4];
static _Thread_local unsigned iq3_s_turn; /* the buffer the last begin wrote */

/* signs and the controls from 8 x 4 sign bytes (dword c: chunk c's) */
static inline void iq3_signs_begin(__m256i sb, __m256i *signs, __m256i *sctl, __m256i *gctl)
{
    *signs = iq2_signs_by_chunk(sb);
    __m256i s = _mm256_set1_epi16(0x0100);
    __m256i g = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
                                 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __asm__("" : "+x"(s), "+x"(g)); /* stepped in registers, not folded into constants */
    *sctl = s, *gctl = g;
}

/* The next chunk's scales (s16, sctl) or signs (signs, gctl), the control stepped to the next:
 * the tile asks for chunks 0..7 in order, once each. */
static inline __m256i iq3_step(__m256i v, __m256i *ctl)
{
    __m256i r = _mm256_shuffle_epi8(v, *ctl);
    *ctl = _mm256_add_epi8(*ctl, _mm256_set1_epi8(2));
    __asm__("" : "+x"(*ctl));
    return r;
}

/* 8 grid entries of 4 bytes: vmovd and 3 vpinsrd a half (no unpacks: shuffles bound too). */
static inline __m256i iq3_grid8(const uint32_t *grid, unsigned i0, unsigned i1, unsigned i2,
                                unsigned i3, unsigned i4, unsigned i5, unsigned i6, unsigned i7)
{
    __m128i lo = _mm_loadu_si32(grid + i0), hi = _mm_loadu_si32(grid + i4);
    lo = _mm_insert_epi32(lo, (int)grid[i1], 1), hi = _mm_insert_epi32(hi, (int)grid[i5], 1);
    lo = _mm_insert_epi32(lo, (int)grid[i2], 2), hi = _mm_insert_epi32(hi, (int)grid[i6], 2);
    lo = _mm_insert_epi32(lo, (int)grid[i3], 3), hi = _mm_insert_epi32(hi, (int)grid[i7], 3);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq3_xxs_st *st)
{
    /* sub-block ib's word: 4 x 7 sign bits, the scale in bits 28-31 */
    __m256i a = _mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 4));
    __m256i s = _mm256_or_si256(_mm256_srli_epi32(a, 27), _mm256_set1_epi32(1)); /* 2 s + 1 */
    s = _mm256_packus_epi32(s, s); /* 128-bit lane h: chunks 4h..4h+3, twice */
    st->s16 = _mm256_permute4x64_epi64(s, _MM_SHUFFLE(2, 0, 2, 0));
    st->d = 0.25f * _cvtsh_ss(w->d);
    iq3_signs_begin(iq2_ksigns32(iq2_fields7(a)), &st->signs, &st->sctl, &st->gctl);
}

static inline __m256i iq3_xxs_chunk_scales(iq3_xxs_st *st, int c)
{
    (void)c;
    return iq3_step(st->s16, &st->sctl);
}

static inline __m256i iq3_xxs_chunk32(const kl_block_iq3_xxs *w, iq3_xxs_st *st, int c, __m256i *sg)
{
    const uint8_t *q = w->qs + 8 * c;
    *sg = iq2_sign_of_bits(iq3_step(st->signs, &st->gctl));
    return iq3_grid8(kl_iq3xxs_grid, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]);
}

/* All 64 indices of the block at once, 16 in 16-bit lanes per step: bit k of qh[c] is the
 * ninth bit of index 8c + k. The scales: byte c / 2 of the 4 in 16-bit lane c, its nibble
 * c % 2 taken by a multiply (by 16 in the even lanes) and a mask. */
static inline void iq3_s_begin(const kl_block_iq3_s *w, iq3_s_st *st)
{
    __m256i sc = _mm256_shuffle_epi8(
        _mm256_castps_si256(_mm256_broadcast_ss((const float *)w->scales)),
        _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1, 0, -1, 0, -1, 1,
                         -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1));
    sc = _mm256_and_si256(_mm256_mullo_epi16(sc, _mm256_setr_epi16(16, 1, 16, 1, 16, 1, 16, 1, 16,
                                                                   1, 16, 1, 16, 1, 16, 1)),
                          _mm256_set1_epi16(0xF0));
    st->s16 = _mm256_or_si256(_mm256_srli_epi16(sc, 3), _mm256_set1_epi16(1)); /* 2 s + 1 */
    st->d = _cvtsh_ss(w->d);
    iq3_signs_begin(_mm256_loadu_si256((const __m256i *)w->signs), &st->signs, &st->sctl,
                    &st->gctl);
    /* word k of step i: 256 where bit k % 8 of qh[2i + k / 8] is set */
    __m256i qh = _mm256_castpd_si256(_mm256_broadcast_sd((const double *)w->qh));
    const __m256i bit = _mm256_setr_epi8(0, 1, 0, 2, 0, 4, 0, 8, 0, 16, 0, 32, 0, 64, 0, -128, 0, 1,
                                         0, 2, 0, 4, 0, 8, 0, 16, 0, 32, 0, 64, 0, -128);
    uint16_t *idx = iq3_s_idx[iq3_s_turn ^= 1];
    __asm__("" : "+r"(idx)); /* one base register, not 64 addresses */
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
    {
        __m256i hb = _mm256_shuffle_epi8(
            qh, _mm256_setr_epi8(-1, 2 * i, -1, 2 * i, -1, 2 * i, -1, 2 * i, -1, 2 * i, -1, 2 * i,
                                 -1, 2 * i, -1, 2 * i, -1, 2 * i + 1, -1, 2 * i + 1, -1, 2 * i + 1,
                                 -1, 2 * i + 1, -1, 2 * i + 1, -1, 2 * i + 1, -1, 2 * i + 1, -1,
                                 2 * i + 1));
        hb = _mm256_min_epu8(_mm256_and_si256(hb, bit), _mm256_set1_epi8(1));
        __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w->qs + 16 * i)));
        _mm256_store_si256((__m256i *)(idx + 16 * i), _mm256_or_si256(lo, hb));
    }
    __asm__("" : "+m"(*(uint16_t(*)[KL_QKK / 4]) idx)); /* read back from memory */
    st->idx = idx;
}

static inline __m256i iq3_s_chunk_scales(iq3_s_st *st, int c)
{
    (void)c;
    return iq3_step(st->s16, &st->sctl);
}

/* A chunk's 8 indices come by two 64-bit loads, split by shifts: loads bound the B=1 loop
 * (taking out the sign or scale operations gains nothing, loading half the grid entries
 * 1.27x), and 8 loads a chunk fewer for 18 shifts and moves are 1.16x. The empty asm keeps
 * GCC from turning the shifts back into 16-bit loads. */
static inline __m256i iq3_s_chunk32(const kl_block_iq3_s *w, iq3_s_st *st, int c, __m256i *sg)
{
    (void)w;
    uint64_t a, b;
    memcpy(&a, st->idx + 8 * c, 8), memcpy(&b, st->idx + 8 * c + 4, 8);
    __asm__("" : "+r"(a), "+r"(b));
    *sg = iq2_sign_of_bits(iq3_step(st->signs, &st->gctl));
    return iq3_grid8(kl_iq3s_grid, (uint16_t)a, (uint16_t)(a >> 16), (uint16_t)(a >> 32),
                     (unsigned)(a >> 48), (uint16_t)b, (uint16_t)(b >> 16), (uint16_t)(b >> 32),
                     (unsigned)(b >> 48));
}

/* IQ3_XXS's begin a block ahead (IQ2_TILE_AHEAD): its sign chain (fields, parity, spread)
 * then overlaps the block before it. Zen 4, the gemm called on 256 x 2048 random blocks in
 * cache, one thread, best of 40, alternated: B=1 14.4 -> 13.0 ns a block, B=4 23.5 -> 19.2
 * (an earlier 0.93x at B=1 was measured on the shared machine's streamed bench). */
IQ2_TILE_AHEAD(iq3_xxs, kl_block_iq3_xxs, 1)
IQ2_GEMM(kl_avx2_gemm_iq3_xxs, iq3_xxs)
IQ2_TILE_AHEAD(iq3_s, kl_block_iq3_s, 1)
IQ2_GEMM(kl_avx2_gemm_iq3_s, iq3_s)
