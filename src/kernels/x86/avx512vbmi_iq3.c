/* kernels/x86/avx512vbmi_iq3.c: IQ3_XXS and IQ3_S against Q8_K activations in plane order
 * (KL_ACT_Q8_K_T4, impl.h) for AVX-512 CPUs with VBMI, GFNI and BITALG (Ice Lake and later,
 * Zen 4 and later). The tile is x86/avx512_iq.h's plane dot (IQ_PLANE_TILE); x86/avx512_iq3.c
 * serves AVX-512 CPUs without VBMI.
 *
 * Plane order. A grid entry stands for 4 consecutive elements; byte 64j + e of a T4 block is
 * element j of entry e, so plane j (64 bytes) is what element j of all 64 entries multiplies,
 * and a block's weights are 4 vectors in the activations' order, with no per-chunk spread:
 * the activations are permuted once a row by the quantizer (kl_avx512vbmi_quant_act_q8_k_t4)
 * instead of the weights once a chunk per weight row.
 *
 * Magnitudes. Each entry's code (3 bits per element, built from the grid at start) is kept as
 * two byte planes, lo (elements 0, 1) and hi (2, 3), looked up for all 64 indices at once
 * (IQ3_S: vpermt2b over 128-byte windows and blends by the index's high bits, lut512 in
 * avx512vbmi_iq.h; IQ3_XXS: vpermi2b over 128-byte windows under masks of bit 7, win256); a code
 * byte gives the magnitudes of its two fields by one vpermb each over a 64-byte table that ignores
 * the other field: 4 vpermb a block for 4 planes, where the chunk order took a vpermt2b, a vpord
 * and a vpermi2b per 64 elements.
 *
 * Signs. Entry e's 4 signs are bits 4 (e % 2)..4 (e % 2) + 3 of the block's sign byte e / 2
 * (IQ3_S stores the bytes as they stand; IQ3_XXS 7-bit fields, made bytes by a vpmultishiftqb
 * and a gf2p8affineqb that adds the parity bit). With sign bytes 4q..4q+3 in qword q (the
 * entries 8q..8q+7 of the mask's bits 8q..8q+7), one vpshufbitqmb a plane picks its 64 bits
 * into a mask register (a vpmultishiftqb and 4 vptestmb instead: 5% slower at B=1).
 *
 * Scales. A vpdpbusd lane L of any plane adds entries 4L..4L+3, elements 16L..16L+15: half of
 * sub-block L / 2, whose 4-bit scale s is 2 s + 1 for the whole lane in all 4 planes, so one
 * vpmulld a block and activation row. Its vector comes from the block's bytes in 2-3
 * operations (IQ3_XXS: the uint32 of the sub-block in both its lanes, >> 27, & 0x1E | 1; the
 * same dword vector feeds the sign fields).
 *
 * Packed form (kernels/pack_iq3.c, what the model runs; the plain tile stays for the file's
 * blocks). On Zen 5 (measured here, 8-16 independent copies of an instruction a loop) byte
 * shuffles (vpermb, vpermi2b, vpshufb, gf2p8affineqb), the mask writers (vpshufbitqmb,
 * vptestmb, vpmovb2m, vpcmpb) and vpmovzx / vpmovsx / vbroadcastss from a register share two
 * pipes at 2 a cycle; vpdpbusd, vpmulld, vpmultishiftqb, vpmaddubsw and float multiplies two
 * others, one of them a shuffle pipe too; shifts, rotates and conversions a third pair;
 * vpternlogd, vpandd, masked vpsubb, blends, vpshufd and vpunpck*bw any of four; broadcast
 * loads (vpbroadcastd / w, vbroadcastss from memory) none, two 64-byte loads a cycle. The plain
 * tile at B=1 is ~45 instructions, ~19 of them on the shuffle pair, ~12.5 cycles a block in a
 * loop from cache. The packed record puts each entry's 4 signs in a byte beside its code
 * fields, so a plane's index byte is its code byte with one bit replaced (one vpternlogd) and
 * one vpermb gives IQ3_BIAS + or - its magnitude: no sign masks, no masked subtract of the
 * activations; the bias's int32 term per lane is a load (the T4 row's c); d is a float, so d *
 * d_a is a broadcast load and a vector multiply. Per block at B=1 (IQ3_XXS): 11 shuffle-pipe
 * instructions instead of ~19, ~9.2 cycles in the loop. One thread from cache (512 rows x 2048,
 * tile and row overheads included), alternated: B=1 IQ3_XXS 3.46-3.55 -> 2.86-2.89 ns a block,
 * IQ3_S 3.95-3.98 -> 3.59-3.63 (its 512-entry code lookup, 8 vpermt2b and 6 blends, stays);
 * B=2 4.94 -> 4.10-4.15 and 5.20-5.22 -> 4.86-4.88; B=4 7.85-7.91 -> 6.25-6.33 and 7.99-8.07
 * -> 7.37-7.53; B=8 13.5-13.6 -> 12.9-13.3 and 13.9 -> 14.1-14.4 (the vpdpbusd bound). At one
 * activation row the odd planes add in a second accumulator. Tried in the loop: the signs as
 * 4 mask loads (a record of the same size, the masked subtract kept): 12.4 -> 11.4 cycles
 * (mask loads cost ~0.4 cycle each); the code lookup's windows as unmasked vpermt2b and
 * blends, or a gf2p8affineqb byte mask and vpternlogd selects: within 2%.
 *
 * One thread from cache, against the chunk-order tile (6d000e2, aad0935), alternated: B=1
 * IQ3_XXS 8.4 -> 6.2 ns a block (~30 -> ~23 cycles), IQ3_S 9.8 -> 7.6; B=4 18.4 -> 13.7 and
 * 20.4 -> 14.8; B=8 32.0 -> 25.8 and 35.3 -> 27.9. Tried: each plane's magnitudes
 * straight from the index (8 vpermi2b over 4 tables of 256, no codes): 9.4 ns; vpshufb over
 * 4-bit fields (and a shift for the high one) in place of vpermb: 6.6; two accumulators a row
 * (a shorter vpdpbusd chain): 6.45. Later, on a Zen 5, IQ3_S's windows by vpermt2b and blends
 * (lut512) in place of 4 chained masked vpermi2b: B=1 5.3-5.6 -> 4.3-4.6 ns a block, B=2 +13-15%,
 * B=4 +9-10% (IQ3_XXS keeps win256: see there). */
#include "kernels/x86/avx512vbmi_iq.h"

void kl_avx512vbmi_types_iq3(kl_isa *isa);
void kl_avx512vbmi_gemm_iq3_xxs(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq3_s(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq3_xxs_packed(const kl_gemm *g, int64_t r0, int64_t r1);
void kl_avx512vbmi_gemm_iq3_s_packed(const kl_gemm *g, int64_t r0, int64_t r1);

/* Code planes: [0] elements 0-1 (fields at bits 0-2, 3-5), [1] elements 2-3 of each entry. */
static _Alignas(64) uint8_t p3xxs[2][256], p3s[2][512];
/* The magnitude of a code byte's [0] low and [1] high field. */
static _Alignas(64) uint8_t pairs3xxs[2][64], pairs3s[2][64];
/* bitsel[j]: byte e picks bit j of entry e's signs, bit 8 ((e / 2) % 4) + 4 (e % 2) + j of
 * qword e / 8 (sign byte e / 2 in byte (e / 2) % 4). ms3xxs: vpmultishiftqb offsets of
 * IQ3_XXS's 4 x 7-bit sign fields of the sub-block's uint32 (in both dwords of qword q). */
static _Alignas(64) uint8_t bitsel[4][64], ms3xxs[64];
/* dup2: dword L takes dword L / 2 (a sub-block's uint32 in its two lanes); ror3s: IQ3_S's
 * nibble of sub-block L / 2 rotated to bits 1-4 (right by 4 (L / 2) - 1, mod 32). */
static _Alignas(64) uint32_t dup2[16], ror3s[16];
/* The packed form's planes (kernels/pack_iq3.c): sw[j][x], IQ3_BIAS plus or minus the magnitude
 * of plane j in an index byte x (sel_index): the field at bits 0-2 (j even) or 3-5 (j odd), the
 * sign at bit KL_IQ3P_SGBIT(j) = 4, 0, 5, 1 (the record's sign bits). */
#define IQ3_BIAS 64
static _Alignas(64) uint8_t sw3xxs[4][64], sw3s[4][64];

static void sw_init(const uint8_t vals[64], uint8_t sw[4][64])
{
    for (int j = 0; j < 4; j++)
        for (int x = 0; x < 64; x++) {
            int v = vals[x >> 3 * (j % 2) & 7];
            sw[j][x] = (uint8_t)(IQ3_BIAS + (x >> KL_IQ3P_SGBIT(j) & 1 ? -v : v));
        }
}

static bool iq3_vbmi_init(void)
{
    if (!kl_avx512vbmi_grid_codes((const uint8_t *)kl_iq3xxs_grid, 256, 4, p3xxs[0], p3xxs[1],
                                  pairs3xxs[0]) ||
        !kl_avx512vbmi_grid_codes((const uint8_t *)kl_iq3s_grid, 512, 4, p3s[0], p3s[1],
                                  pairs3s[0]))
        return false;
    for (int b = 0; b < 64; b++) {
        pairs3xxs[1][b] = pairs3xxs[0][b >> 3], pairs3s[1][b] = pairs3s[0][b >> 3];
        for (int j = 0; j < 4; j++)
            bitsel[j][b] = (uint8_t)(8 * (b / 2 % 4) + 4 * (b % 2) + j);
        ms3xxs[b] = (uint8_t)(7 * (b % 4) + 32 * (b / 4 % 2));
        if (b < 16) dup2[b] = (uint32_t)(b / 2), ror3s[b] = (uint32_t)((4 * (b / 2) + 31) % 32);
    }
    sw_init(pairs3xxs[0], sw3xxs), sw_init(pairs3s[0], sw3s);
    return true;
}

/* IQ3_XXS's 256-entry plane by an index's low 7 bits and a mask of its bit 7: each vpermi2b
 * writes its window's bytes over the index bytes of the lanes in its mask and leaves the
 * others as they were, so disjoint masks take the place of a blend (IQ3_S 10.1 -> 9.5 ns a
 * block at B=1 in the chunk tile; but see lut256 in avx512vbmi_iq.h: IQ3_S's 4 such windows
 * a plane are slower than lut512's blends; IQ3_XXS's 2 are even with lut256's: B=1 1-5% behind,
 * B=8 1-3% ahead). */
static inline __m512i win128(__m512i r, const uint8_t *t, __mmask64 k)
{
    return _mm512_mask2_permutex2var_epi8(ld(t), r, k, ld(t + 64));
}
static inline __m512i win256(const uint8_t *t, __m512i idx, __mmask64 b7)
{
    return win128(win128(idx, t + 128, b7), t, _knot_mask64(b7));
}

/* A block decoded: the plane tile's state (x86/avx512_iq.h). */
typedef struct {
    __m256i s16; /* 0: the tile's bias term (none) */
    float d;
    __m512i m[4];     /* plane j: the magnitude of element j of each entry */
    __mmask64 neg[4]; /* plane j: the negative ones */
    __m512i sc;       /* int32 lane L: 2 s + 1 of sub-block L / 2 */
} iq3p_st;
typedef iq3p_st iq3_xxs_st;
typedef iq3p_st iq3_s_st;

/* The planes from the code bytes (lo, hi) and the signs (sign bytes 4q..4q+3 in qword q). */
static inline void iq3_planes(__m512i lo, __m512i hi, const uint8_t pairs[2][64], __m512i sq,
                              iq3p_st *st)
{
    st->m[0] = _mm512_permutexvar_epi8(lo, ld(pairs[0]));
    st->m[1] = _mm512_permutexvar_epi8(lo, ld(pairs[1]));
    st->m[2] = _mm512_permutexvar_epi8(hi, ld(pairs[0]));
    st->m[3] = _mm512_permutexvar_epi8(hi, ld(pairs[1]));
    /* written out: a loop over an array of masks went through the stack */
    st->neg[0] = _mm512_bitshuffle_epi64_mask(sq, ld(bitsel[0]));
    st->neg[1] = _mm512_bitshuffle_epi64_mask(sq, ld(bitsel[1]));
    st->neg[2] = _mm512_bitshuffle_epi64_mask(sq, ld(bitsel[2]));
    st->neg[3] = _mm512_bitshuffle_epi64_mask(sq, ld(bitsel[3]));
}

/* 2 s + 1 from a lane holding s at bits 1-4 (and other bits above and below). */
static inline __m512i odd_scale(__m512i x)
{
    return _mm512_ternarylogic_epi32(x, _mm512_set1_epi32(0x1E), _mm512_set1_epi32(1), 0xEA);
}

/* IQ3_XXS: the 64 indices, then a uint32 a sub-block: 4 x 7 sign bits, the scale in 28-31 */
static inline void iq3_xxs_begin(const kl_block_iq3_xxs *w, iq3p_st *st)
{
    __m512i idx = _mm512_loadu_si512((const void *)w->qs);
    __mmask64 b7 = _mm512_movepi8_mask(idx);
    __m512i aux = _mm512_permutexvar_epi32(
        _mm512_load_si512(dup2),
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w->qs + KL_QKK / 4))));
    __m512i sq = _mm512_gf2p8affine_epi64_epi8(_mm512_multishift_epi64_epi8(ld(ms3xxs), aux),
                                               _mm512_set1_epi64(KL_KSIGNS_AFFINE), 0);
    iq3_planes(win256(p3xxs[0], idx, b7), win256(p3xxs[1], idx, b7), pairs3xxs, sq, st);
    st->sc = odd_scale(_mm512_srli_epi32(aux, 27));
    st->s16 = _mm256_setzero_si256();
    st->d = 0.25f * _cvtsh_ss(w->d);
}

/* IQ3_S: bit 8 of index 8 ib + k is bit k of qh[ib], the qh bytes a 64-bit mask as they stand */
static inline void iq3_s_begin(const kl_block_iq3_s *w, iq3p_st *st)
{
    __m512i idx = _mm512_loadu_si512((const void *)w->qs);
    __mmask64 b7 = _mm512_movepi8_mask(idx), b8;
    memcpy(&b8, w->qh, 8);
    __m512i sq = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)w->signs));
    iq3_planes(lut512(p3s[0], idx, b7, b8), lut512(p3s[1], idx, b7, b8), pairs3s, sq, st);
    uint32_t s;
    memcpy(&s, w->scales, 4);
    st->sc = odd_scale(_mm512_rorv_epi32(_mm512_set1_epi32((int)s), _mm512_load_si512(ror3s)));
    st->s16 = _mm256_setzero_si256();
    st->d = _cvtsh_ss(w->d);
}

/* The tile's hooks: plane p's magnitudes and mask (both types), the scales are st.sc. */
static inline __m512i iq3p_chunk_ms(const void *w, const iq3p_st *st, int p, __mmask64 *neg)
{
    (void)w;
    *neg = st->neg[p];
    return st->m[p];
}
static inline __m512i iq3p_chunk_sc(const void *w, const iq3p_st *st, int p)
{
    (void)w, (void)p;
    return st->sc;
}
#define iq3_xxs_chunk_ms iq3p_chunk_ms
#define iq3_xxs_chunk_sc iq3p_chunk_sc
#define iq3_s_chunk_ms   iq3p_chunk_ms
#define iq3_s_chunk_sc   iq3p_chunk_sc

IQ_PLANE_TILE(iq3_xxs, kl_block_iq3_xxs)
IQ_GEMM(kl_avx512vbmi_gemm_iq3_xxs, iq3_xxs)
IQ_PLANE_TILE(iq3_s, kl_block_iq3_s)
IQ_GEMM(kl_avx512vbmi_gemm_iq3_s, iq3_s)

/* The packed form (kernels/pack_iq3.c): per block the code lookup as above, then each plane's
 * index byte is the entry's code byte with one bit replaced by the plane's sign (one vpternlogd
 * a plane, from the record's sign bytes: the second 32 entries' are 2 bits up, shifted down by
 * a masked vpsrlw), and one vpermb of it gives IQ3_BIAS + or - the magnitude: no sign masks and
 * no masked subtract of the activations. The bias comes out exactly through the activations'
 * sums: a vpdpbusd lane of the 4 planes adds 16 elements 16 L .., so the accumulator starts at
 * -IQ3_BIAS bsums[L] (the T4 row's c, written by the quantizer: a load) and holds the plain
 * tile's integer before its vpmulld; the float steps are the plain tile's (d * d_a as a vector
 * from the record's float d: the same product), so the packed form gives the same bits. */
typedef struct {
    __m512i x[4]; /* plane j's index bytes (sw3xxs / sw3s[j]) */
    __m512i sc;   /* int32 lane L: 2 s + 1 of sub-block L / 2 */
    float d;
} iq3k_st;

static inline void iq3k_index(__m512i lo, __m512i hi, const uint8_t *rec, iq3k_st *st)
{
    __m512i sg = _mm512_mask_srli_epi16(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(rec + KL_IQ3P_SG))),
        (__mmask32)0xFFFF0000u, _mm512_loadu_si512((const void *)(rec + KL_IQ3P_SG - 32)), 2);
    /* (c & field) | (sg & ~field): bit-select by a constant */
    st->x[0] = _mm512_ternarylogic_epi32(_mm512_set1_epi8(1 << KL_IQ3P_SGBIT(0)), sg, lo, 0xCA);
    st->x[1] = _mm512_ternarylogic_epi32(_mm512_set1_epi8(1 << KL_IQ3P_SGBIT(1)), sg, lo, 0xCA);
    st->x[2] = _mm512_ternarylogic_epi32(_mm512_set1_epi8(1 << KL_IQ3P_SGBIT(2)), sg, hi, 0xCA);
    st->x[3] = _mm512_ternarylogic_epi32(_mm512_set1_epi8(1 << KL_IQ3P_SGBIT(3)), sg, hi, 0xCA);
    uint32_t s;
    memcpy(&s, rec + KL_IQ3P_S, 4);
    st->sc = odd_scale(_mm512_rorv_epi32(_mm512_set1_epi32((int)s), _mm512_load_si512(ror3s)));
    memcpy(&st->d, rec + KL_IQ3P_D, 4);
}

static inline void iq3xk_begin(const uint8_t *rec, iq3k_st *st)
{
    __m512i idx = _mm512_loadu_si512((const void *)rec);
    __mmask64 b7 = _mm512_movepi8_mask(idx);
    iq3k_index(win256(p3xxs[0], idx, b7), win256(p3xxs[1], idx, b7), rec, st);
}

static inline void iq3sk_begin(const uint8_t *rec, iq3k_st *st)
{
    __m512i idx = _mm512_loadu_si512((const void *)rec);
    __mmask64 b7 = _mm512_movepi8_mask(idx), b8;
    memcpy(&b8, rec + KL_IQ3P_QH, 8);
    iq3k_index(lut512(p3s[0], idx, b7, b8), lut512(p3s[1], idx, b7, b8), rec, st);
}

/* The tile over the packed rows (kl_packed_rows: one row's records after another's). */
#define IQ3K_TILE(PFX, REC, SW)                                                                    \
    static inline                                                                                  \
        __attribute__((always_inline)) void PFX##_tile(const kl_gemm *g, int64_t r, int b, int nb) \
    {                                                                                              \
        int64_t nblk = g->cols / KL_QKK;                                                           \
        const uint8_t *w = g->W + (size_t)r * g->w_stride;                                         \
        const int8_t *aq[IQ_BT];                                                                   \
        const float *ad[IQ_BT];                                                                    \
        __m512 acc[IQ_BT];                                                                         \
        const int32_t *cs[IQ_BT];                                                                  \
        iq_rows(g, b, nb, aq, ad, NULL, acc);                                                      \
        _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) cs[k] =                               \
            kl_act_q8_k_t4_c(g->act + (size_t)(b + k) * g->a_stride, g->cols);                     \
        for (int64_t j = 0; j < nblk; j++, w += (REC)) {                                           \
            iq3k_st st;                                                                            \
            _mm_prefetch((const char *)w + IQ_PF, _MM_HINT_T0);                                    \
            _mm_prefetch((const char *)w + IQ_PF + 64, _MM_HINT_T0);                               \
            PFX##_begin(w, &st);                                                                   \
            __m512i is[IQ_BT], odd = _mm512_setzero_si512();                                       \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) is[k] =                           \
                _mm512_loadu_si512(cs[k] + 16 * j); /* -IQ3_BIAS bsums */                          \
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)                                    \
            {                                                                                      \
                __m512i q = _mm512_permutexvar_epi8(st.x[p], ld(SW[p]));                           \
                _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++)                               \
                {                                                                                  \
                    __m512i a = _mm512_loadu_si512(aq[k] + j * KL_QKK + 64 * p);                   \
                    if (nb == 1 && p % 2) /* one row: two chains of 2 */                           \
                        odd = _mm512_dpbusd_epi32(odd, q, a);                                      \
                    else                                                                           \
                        is[k] = _mm512_dpbusd_epi32(is[k], q, a);                                  \
                }                                                                                  \
            }                                                                                      \
            if (nb == 1) is[0] = _mm512_add_epi32(is[0], odd);                                     \
            /* d * d_a as a vector: a broadcast load and a multiply, not a scalar multiply and a   \
             * shuffle (the same product) */                                                       \
            __m512 dv = _mm512_set1_ps(st.d);                                                      \
            __asm__("" : "+v"(dv));                                                                \
            _Pragma("GCC unroll 8") for (int k = 0; k < nb; k++) acc[k] =                          \
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(is[k], st.sc)),              \
                                _mm512_mul_ps(dv, _mm512_set1_ps(ad[k][j])), acc[k]);              \
        }                                                                                          \
        iq_store(g, r, b, nb, acc);                                                                \
    }
_Static_assert(IQ3_BIAS == 64, "the bias term: kl_act_q8_k_t4_c (impl.h)");
static void gemm_iq3xk_rows(const kl_gemm *g, int64_t r0, int64_t r1);
static void gemm_iq3sk_rows(const kl_gemm *g, int64_t r0, int64_t r1);
IQ3K_TILE(iq3xk, KL_IQ3P_XXS_REC, sw3xxs)
IQ_GEMM(gemm_iq3xk_rows, iq3xk)
IQ3K_TILE(iq3sk, KL_IQ3P_S_REC, sw3s)
IQ_GEMM(gemm_iq3sk_rows, iq3sk)

void kl_avx512vbmi_gemm_iq3_xxs_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    gemm_iq3xk_rows(&h, r0, r1);
}
void kl_avx512vbmi_gemm_iq3_s_packed(const kl_gemm *g, int64_t r0, int64_t r1)
{
    kl_gemm h = kl_packed_rows(g);
    gemm_iq3sk_rows(&h, r0, r1);
}

/* The rows of this file over the AVX-512 VBMI table (called once, from dispatch.c's build). */
void kl_avx512vbmi_types_iq3(kl_isa *isa)
{
    if (!iq3_vbmi_init()) return; /* a grid of more values than a code holds: keep AVX-512's */
    iq_plane_ops(&isa->types[KL_IQ3_XXS], KL_ACT_Q8_K_T4, kl_avx512vbmi_quant_act_q8_k_t4,
                 kl_avx512vbmi_gemm_iq3_xxs);
    iq_plane_ops(&isa->types[KL_IQ3_S], KL_ACT_Q8_K_T4, kl_avx512vbmi_quant_act_q8_k_t4,
                 kl_avx512vbmi_gemm_iq3_s);
    /* and the packed form (kernels/pack_iq3.c), over the same activations */
    kl_type_ops *x = &isa->types[KL_IQ3_XXS], *s = &isa->types[KL_IQ3_S];
    x->pack_bytes = s->pack_bytes = kl_pack_iq3_bytes;
    x->pack = s->pack = kl_pack_iq3;
    x->gemm_packed = kl_avx512vbmi_gemm_iq3_xxs_packed;
    s->gemm_packed = kl_avx512vbmi_gemm_iq3_s_packed;
}
