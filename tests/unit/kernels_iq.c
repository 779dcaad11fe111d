/* The IQ and TQ types decode as the format's reference does. Known decodings: 1024 blocks of
 * each type, every byte from a seeded xorshift (so every grid index, sign pattern and scale
 * field turns up; the fp16 scales are set to normal numbers), were decoded by llama.cpp's
 * ggml (dequantize_row_*, Feb 2025 tree) outside this repository; the table holds the XXH64
 * of those floats and the first 8 of them (tests/t_blocks.h makes the blocks). The same bytes
 * decoded here must give the same floats, bit for bit: the codebooks (kernels/iq_grids.c) and the
 * block layouts are right. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kernels/iq.h"
#include "t.h"
#include "t_blocks.h"

enum { NBLK = 1024 };

typedef struct {
    kl_dtype t;
    uint64_t hash; /* XXH64 (seed 0) of the NBLK blocks' floats */
    float first[8];
} known;

static const known knowns[] = {
    {KL_IQ4_NL,
     0xca0d2577379e251eull,
     {0x1.1f6b8p+1, 0x1.6824p+1, -0x1.5a4ap-1, -0x1.874e8p+1, -0x1.072ep+0, 0x1.1f6b8p+1,
      0x1.e4cep-1, 0x1.6824p+1}},
    {KL_IQ4_XS,
     0x45992fdbf636cea8ull,
     {0x1.33c9cp+6, 0x1.40198p+5, -0x1.2da1ep+7, 0x1.40198p+5, 0x1.89f8p+1, -0x1.901fep+7,
      0x1.40198p+5, 0x1.40198p+5}},
    {KL_IQ3_XXS,
     0x33ff38800534d291ull,
     {-0x1.434cp-1, -0x1.792ep+0, -0x1.0d6ap+0, 0x1.af1p-3, 0x1.434cp-1, 0x1.af1p-3, -0x1.434cp-1,
      0x1.af1p-3}},
    {KL_IQ3_S,
     0x0cad0e6a85a45ba0ull,
     {-0x1.5e92p+0, 0x1.5e92p+0, -0x1.5e92p+0, 0x1.48a8ep+4, -0x1.b6368p+2, -0x1.e208cp+3,
      0x1.1cd6ap+4, 0x1.5e92p+0}},
    {KL_TQ1_0,
     0xa5715325de6f615cull,
     {0x0p+0, 0x0p+0, 0x0p+0, 0x0p+0, 0x0p+0, 0x0p+0, 0x0p+0, 0x1.228p-5}},
    {KL_TQ2_0,
     0x0370038ec45d87c9ull,
     {0x1.69p-7, 0x1.69p-7, 0x0p+0, 0x1.69p-6, 0x1.69p-7, 0x1.69p-7, 0x1.69p-7, -0x1.69p-7}},
    {KL_IQ2_XXS,
     0x28beaf1293125224ull,
     {0x1.6e3p-2, -0x1.1e158p+0, 0x1.1e158p+0, -0x1.6e3p-2, -0x1.ec108p+0, 0x1.ec108p+0,
      -0x1.6e3p-2, 0x1.6e3p-2}},
    {KL_IQ2_XS,
     0xe3fa60ab8a0861b5ull,
     {0x1.0f38p-1, -0x1.0f38p-1, 0x1.0f38p-1, -0x1.0f38p-1, 0x1.a7c78p+0, -0x1.a7c78p+0,
      -0x1.a7c78p+0, 0x1.a7c78p+0}},
    {KL_IQ2_S,
     0x2895e8fa0c02014bull,
     {-0x1.5516p-2, 0x1.5516p-2, -0x1.0a793p+0, 0x1.ca559p+0, 0x1.5516p-2, -0x1.5516p-2,
      -0x1.0a793p+0, -0x1.ca559p+0}},
    {KL_IQ1_S,
     0x66e433c388e65961ull,
     {-0x1.9f98p-5, 0x1.6ba5p-2, -0x1.9f98p-5, 0x1.6ba5p-2, -0x1.9f98p-5, -0x1.9f98p-5, 0x1.6ba5p-2,
      -0x1.9f98p-5}},
    {KL_IQ1_M,
     0x56a5db0977fa1b4aull,
     {0x1.3198p-4, -0x1.88e8p-4, 0x1.3198p-4, 0x1.3198p-4, -0x1.88e8p-4, -0x1.88e8p-4, -0x1.88e8p-4,
      0x1.3198p-4}},
};

TEST(kernels_iq_decode_matches_reference_decodings)
{
    for (size_t i = 0; i < sizeof knowns / sizeof *knowns; i++) {
        const known *k = &knowns[i];
        const kl_dtype_info *di = kl_dtype_get(k->t);
        T_ASSERT(di);
        int64_t n = (int64_t)di->block_elems * NBLK;
        uint8_t *buf = t_random_blocks(k->t, NBLK, 0x9E3779B97F4A7C15ull);
        float *y = malloc(sizeof(float) * (size_t)n);
        memset(y, 0xFF, sizeof(float) * (size_t)n);
        kl_dequantize_row(k->t, buf, y, n);
        for (int j = 0; j < 8; j++)
            if (memcmp(&y[j], &k->first[j], 4)) {
                fprintf(stderr, "# %s: y[%d] = %a, reference %a\n", di->name, j, (double)y[j],
                        (double)k->first[j]);
                T_ASSERT(0);
            }
        uint64_t h = XXH64(y, sizeof(float) * (size_t)n, 0);
        if (h != k->hash) fprintf(stderr, "# %s: hash %016llx\n", di->name, (unsigned long long)h);
        T_EQ(h, k->hash);
        free(buf), free(y);
    }
}

/* The sign table is the rule it encodes: bit 7 gives the byte an even number of set bits. */
TEST(kernels_iq_sign_table_has_even_parity)
{
    for (int i = 0; i < 128; i++) {
        T_EQ(kl_iq_ksigns[i] & 127, i);
        T_EQ(__builtin_popcount(kl_iq_ksigns[i]) % 2, 0);
    }
}

/* The VBMI decoders (x86/avx512vbmi_iq.c: grids and signs in registers) feed the same tile as
 * the AVX-512 ones (gathers, the sign table), so the two give the same bits, not just close
 * results: on random blocks (every grid index, sign pattern and scale), rows, columns and
 * batch sizes 1..16 around the tile's (8 activation rows, 16 weight rows). The plane dots
 * (activations in a plane layout) and the 512-bit IQ1 kernels (x86/avx512vbmi_iq1.c: 16 int32
 * lanes, not AVX2's 8) add the same exact integers per block in another order of lanes, so
 * their float sums may differ in the last bits: within 1e-5 of the largest result. */
TEST(kernels_iq_vbmi_matches_avx512_bits)
{
    const kl_isa *base = kl_isa_find("avx512"), *vbmi = kl_isa_find("avx512vbmi");
    if (!vbmi) t_skip("no AVX-512 VBMI and GFNI on this CPU");
    static const kl_dtype types[] = {KL_IQ3_XXS, KL_IQ3_S, KL_IQ2_XXS, KL_IQ2_XS,
                                     KL_IQ2_S,   KL_IQ1_S, KL_IQ1_M};
    static const int rows[] = {1, 17, 40}, cols[] = {256, 768, 2304};
    int differ = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        kl_dtype t = types[ti];
        if (vbmi->types[t].gemm != base->types[t].gemm) differ++;
        for (int ri = 0; ri < 3; ri++)
            for (int ci = 0; ci < 3; ci++) {
                int R = rows[ri], C = cols[ci];
                size_t rb = kl_dtype_row_bytes(t, C);
                uint8_t *W = t_random_blocks(t, rb * (size_t)R / kl_dtype_get(t)->block_bytes,
                                             0x51ED270B27A1ull + 131 * ti + 7 * ri + ci);
                float *x = malloc(sizeof(float) * (size_t)C * 16);
                float *y0 = malloc(sizeof(float) * (size_t)R * 16);
                float *y1 = malloc(sizeof(float) * (size_t)R * 16);
                void *scratch = malloc(kl_matmul_scratch(t, 16, C) + 64);
                uint64_t s = 0x9E3779B97F4A7C15ull ^ (uint64_t)(R * C);
                for (int i = 0; i < C * 16; i++) {
                    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                    x[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2.0 - 1.0);
                }
                for (int B = 1; B <= 16; B++) {
                    kl_isa_set(base);
                    kl_matmul(NULL, t, W, R, C, x, C, B, y0, R, scratch);
                    kl_isa_set(vbmi);
                    kl_matmul(NULL, t, W, R, C, x, C, B, y1, R, scratch);
                    if (vbmi->types[t].act != base->types[t].act || t == KL_IQ1_S ||
                        t == KL_IQ1_M) {
                        double scale = 0;
                        for (int i = 0; i < R * B; i++)
                            scale = fmax(scale, fabs((double)y0[i]));
                        for (int i = 0; i < R * B; i++)
                            T_NEAR(y1[i], y0[i], 1e-5 * (scale + 1));
                        continue;
                    }
                    if (memcmp(y0, y1, sizeof(float) * (size_t)R * (size_t)B))
                        fprintf(stderr, "# %s rows %d cols %d B %d differs\n",
                                kl_dtype_get(t)->name, R, C, B);
                    T_MEMEQ(y0, y1, sizeof(float) * (size_t)R * (size_t)B);
                }
                kl_isa_set(NULL);
                free(W), free(x), free(y0), free(y1), free(scratch);
            }
    }
    T_ASSERT(differ > 0); /* the table has VBMI kernels to test */
}

/* A packed type's test case: R x C random blocks of the file's type (every byte value), their
 * packed form, B random activation rows (x, kept for the SIMD matmuls) and their Q8_K rows;
 * y0 and y1 hold R x B results. */
typedef struct packed_case {
    uint8_t *W, *P, *act;
    float *x, *y0, *y1;
} packed_case;
typedef size_t (*pack_bytes_fn)(kl_dtype t, int64_t rows, int64_t cols);
typedef void (*pack_fn)(kl_dtype t, const void *W, int64_t rows, int64_t cols, int64_t p0,
                        int64_t p1, void *dst);

/* Makes the case and checks that the reference dot over the packed form (packed_ref) gives the
 * file reference's (ref) bits: the packer keeps every weight and scale. */
static packed_case packed_case_check(kl_dtype t, pack_bytes_fn bytes, pack_fn pack, kl_gemm_fn ref,
                                     kl_gemm_fn packed_ref, int R, int C, int B, uint64_t seed)
{
    packed_case pc;
    size_t rb = kl_dtype_row_bytes(t, C), ab = kl_act_row_bytes(KL_Q8_K, C);
    pc.W = t_random_blocks(t, rb * (size_t)R / kl_dtype_get(t)->block_bytes, seed);
    pc.P = malloc(bytes(t, R, C));
    pack(t, pc.W, R, C, 0, (R + 15) / 16, pc.P);
    pc.x = malloc(sizeof(float) * (size_t)C * B);
    pc.act = malloc(ab * (size_t)B);
    uint64_t s = 0x2545F4914F6CDD1Dull ^ (uint64_t)(R * C);
    for (int i = 0; i < C * B; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        pc.x[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
    for (int b = 0; b < B; b++)
        kl_ref_quant_act_q8_k(pc.x + (size_t)b * C, pc.act + ab * (size_t)b, C);
    pc.y0 = malloc(sizeof(float) * (size_t)R * B);
    pc.y1 = malloc(sizeof(float) * (size_t)R * B);
    kl_gemm g = {.W = pc.W,
                 .w_stride = rb,
                 .cols = C,
                 .act = pc.act,
                 .a_stride = ab,
                 .B = B,
                 .y = pc.y0,
                 .ldy = R,
                 .rows = R};
    ref(&g, 0, R);
    g.W = pc.P, g.w_stride = bytes(t, 16, C), g.y = pc.y1;
    packed_ref(&g, 0, R);
    T_MEMEQ(pc.y0, pc.y1, sizeof(float) * (size_t)R * B);
    return pc;
}

static void packed_case_free(packed_case *pc)
{
    free(pc->W), free(pc->P), free(pc->act), free(pc->x), free(pc->y0), free(pc->y1);
}

/* Each SIMD table with a packed matmul of t in pack's form: its packed matmul over pc.P gives
 * the bits of its own matmul over the file's blocks pc.W, at each batch bs[0..nbs) (bs[0] the
 * largest). Returns the number of tables checked. */
static int packed_simd_check(kl_dtype t, pack_fn pack, packed_case *pc, int R, int C, const int *bs,
                             int nbs)
{
    int simd = 0;
    kl_gemm_fn last = NULL;
    float *y0 = pc->y0, *y1 = pc->y1;
    void *scratch = malloc(kl_matmul_scratch(t, bs[0], C) + 64);
    for (const char *const *n = (const char *const[]){"avx2", "avx512", "avx512vbmi", NULL}; *n;
         n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa || !isa->types[t].gemm_packed || isa->types[t].gemm_packed == last ||
            isa->types[t].pack != pack)
            continue;
        last = isa->types[t].gemm_packed, simd++;
        kl_isa_set(isa);
        for (int k = 0; k < nbs; k++) {
            int B = bs[k];
            kl_matmul(NULL, t, pc->W, R, C, pc->x, C, B, y0, R, scratch);
            memset(y1, 0xFF, sizeof(float) * (size_t)R * (size_t)B);
            kl_matmul_packed(NULL, t, pc->P, R, C, pc->x, C, B, y1, R, scratch);
            if (memcmp(y0, y1, sizeof(float) * (size_t)R * (size_t)B))
                fprintf(stderr, "# %s rows %d cols %d B %d differs\n", *n, R, C, B);
            T_MEMEQ(y0, y1, sizeof(float) * (size_t)R * (size_t)B);
        }
        kl_isa_set(NULL);
    }
    free(scratch);
    return simd;
}

/* IQ1_S's and IQ1_M's packed forms (kernels/pack_iq1.c, 2-bit codes) and the IQ2 types'
 * (kernels/pack_iq2.c, magnitude and sign planes): the scalar dot over it gives the file
 * reference's bits, on random blocks (every grid index, sign, scale and shift sign) and rows that
 * end mid-panel, one to nine blocks a row; so the packer keeps every weight, scale and d. Each SIMD
 * table's packed matmul (x86/avx2_iq1_packed.c, avx2_iq2_packed.c: the plain AVX2 tiles' int32
 * lanes and float steps; x86/avx512vbmi_iq1.c: its 512-bit tile's) gives the bits of the table's
 * matmul over the file's blocks, at every tile height (AVX2 1-4 activation rows, VBMI 1-8), 9
 * and 19. kernels_gemm checks it against the reference on more shapes. */
TEST(kernels_iq_iq1_iq2_packed_matches_bits)
{
    static const int rows[] = {1, 15, 17, 33, 70}, cols[] = {256, 768, 2048, 2304},
                     bs[] = {19, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const struct {
        kl_dtype t;
        pack_bytes_fn bytes;
        pack_fn pack;
        kl_gemm_fn ref, packed_ref;
    } types[] = {
        {KL_IQ1_S, kl_pack_iq1_s_bytes, kl_pack_iq1_s, kl_ref_gemm_iq1_s, kl_ref_gemm_iq1_s_packed},
        {KL_IQ1_M, kl_pack_iq1_m_bytes, kl_pack_iq1_m, kl_ref_gemm_iq1_m, kl_ref_gemm_iq1_m_packed},
        {KL_IQ2_XXS, kl_pack_iq2_bytes, kl_pack_iq2, kl_ref_gemm_iq2_xxs, kl_ref_gemm_iq2_packed},
        {KL_IQ2_XS, kl_pack_iq2_bytes, kl_pack_iq2, kl_ref_gemm_iq2_xs, kl_ref_gemm_iq2_packed},
        {KL_IQ2_S, kl_pack_iq2_bytes, kl_pack_iq2, kl_ref_gemm_iq2_s, kl_ref_gemm_iq2_packed},
    };
    for (int ti = 0; ti < 5; ti++)
        for (int i = 0; i < 5 * 4; i++) { /* every rows x cols */
            int R = rows[i / 4], C = cols[i % 4];
            packed_case pc = packed_case_check(types[ti].t, types[ti].bytes, types[ti].pack,
                                               types[ti].ref, types[ti].packed_ref, R, C, bs[0],
                                               0x1D1AC0DEull + 97 * (uint64_t)ti + (uint64_t)i);
            packed_simd_check(types[ti].t, types[ti].pack, &pc, R, C, bs,
                              10); /* none on a CPU without AVX2 */
            packed_case_free(&pc);
        }
}

/* IQ1_M's AVX2 record (kernels/pack_iq1.c's kl_pack_iq1_m_avx2: the code bytes, each chunk's
 * scale row offset and shift bits, d / 8 as a float): its scalar dot gives the file reference's
 * bits, and the AVX2 table's packed matmul over it (x86/avx2_iq1_packed.c) the bits of its matmul
 * over the file's blocks, at every tile height, 9 and 19, on random blocks (every grid index,
 * scale, shift sign and d, NaN and infinity among them) and rows of one to nine blocks that end
 * mid-panel. */
TEST(kernels_iq_iq1_m_avx2_packed_matches_bits)
{
    static const int rows[] = {1, 15, 17, 33, 70}, cols[] = {256, 768, 2048, 2304},
                     bs[] = {19, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    int simd = 0;
    for (int i = 0; i < 5 * 4; i++) {
        int R = rows[i / 4], C = cols[i % 4];
        packed_case pc = packed_case_check(KL_IQ1_M, kl_pack_iq1_m_avx2_bytes, kl_pack_iq1_m_avx2,
                                           kl_ref_gemm_iq1_m, kl_ref_gemm_iq1_m_avx2_packed, R, C,
                                           bs[0], 0xA1C0DEull + (uint64_t)i);
        simd += packed_simd_check(KL_IQ1_M, kl_pack_iq1_m_avx2, &pc, R, C, bs, 10);
        packed_case_free(&pc);
    }
    if (!simd) t_skip("no AVX2 on this CPU");
}

/* The IQ2 types' VBMI form (kernels/pack_iq2.c's kl_pack_iq2_t8p: the same bits in the lanes of
 * T8P activations): the VBMI table's packed matmul gives the bits of its matmul over the file's
 * blocks (x86/avx512vbmi_iq.c's pair tile), at every tile height, 9 and 19, on rows of one to
 * nine blocks (pairs and a lone last block) that end mid-panel. */
TEST(kernels_iq_iq2_t8p_packed_matches_bits)
{
    static const int rows[] = {1, 15, 17, 33, 70}, cols[] = {256, 768, 2048, 2304},
                     bs[] = {19, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const kl_dtype types[] = {KL_IQ2_XXS, KL_IQ2_XS, KL_IQ2_S};
    static const kl_gemm_fn refs[] = {kl_ref_gemm_iq2_xxs, kl_ref_gemm_iq2_xs, kl_ref_gemm_iq2_s};
    int simd = 0;
    for (int ti = 0; ti < 3; ti++)
        for (int i = 0; i < 5 * 4; i++) {
            int R = rows[i / 4], C = cols[i % 4];
            packed_case pc = packed_case_check(types[ti], kl_pack_iq2_bytes, kl_pack_iq2, refs[ti],
                                               kl_ref_gemm_iq2_packed, R, C, bs[0],
                                               0x7A8B1Eull + 31 * (uint64_t)ti + (uint64_t)i);
            kl_pack_iq2_t8p(types[ti], pc.W, R, C, 0, (R + 15) / 16, pc.P);
            simd += packed_simd_check(types[ti], kl_pack_iq2_t8p, &pc, R, C, bs, 10);
            packed_case_free(&pc);
        }
    if (!simd) t_skip("no VBMI on this CPU");
}

/* The VBMI form's bytes by its definition (kernels/pack_iq2.c's layout comment), from the
 * file decoder's integers: T8P vector v, lane l of a pair (T8 of a lone last block) holds the
 * activation byte kl_act_t8p_src(64 v + l) (kl_act_t8_src) multiplies. */
static void t8p_ref_row(kl_dtype t, const uint8_t *W, int nblk, uint8_t *o)
{
    kl_iq_decode_fn decode = t == KL_IQ2_XXS  ? kl_iq_decode_iq2_xxs
                             : t == KL_IQ2_XS ? kl_iq_decode_iq2_xs
                                              : kl_iq_decode_iq2_s;
    size_t bb = kl_dtype_get(t)->block_bytes;
    for (int j = 0; j < nblk; j += 2, o += 2 * KL_IQ2P_REC) {
        int n = nblk - j < 2 ? 1 : 2, nv = 4 * n;
        kl_iq_dec dec[2];
        memset(o, 0, (size_t)n * KL_IQ2P_REC);
        for (int h = 0; h < n; h++) {
            decode(W + (size_t)(j + h) * bb, &dec[h]);
            for (int c = 0; c < 8; c++)
                o[24 * nv + 8 * h + c] =
                    (uint8_t)((dec[h].sc[2 * c] - 1) / 2 | (dec[h].sc[2 * c + 1] - 1) / 2 << 4);
            memcpy(o + 24 * nv + 8 * n + 2 * h, W + (size_t)(j + h) * bb, 2);
        }
        for (int p = 0; p < 64 * nv; p++) {
            int v = p / 64, l = p % 64, src = n == 2 ? kl_act_t8p_src(p) : kl_act_t8_src(p);
            int q = dec[src / 256].q[src % 256], a = q < 0 ? -q : q;
            o[64 * (v / 4) + l] |= (uint8_t)(((a > 8) + (a > 25)) << (2 * (v % 4)));
            o[16 * nv + 8 * v + l / 8] |= (uint8_t)((q < 0) << (l % 8));
        }
    }
}

/* kl_pack_iq2_t8p writes those bytes (it works on whole grid entries and bit transposes, not
 * per weight) on random blocks, rows of one to nine blocks (pairs and a lone last block) that
 * end mid-panel, and zero rows past the end; on any CPU. Its magnitude index is a grid byte's
 * bits 4-5, so every byte of the three grids is 8, 25 or 43. */
TEST(kernels_iq_iq2_t8p_matches_layout)
{
    static const struct {
        const uint64_t *g;
        int n;
    } grids[] = {{kl_iq2xxs_grid, 256}, {kl_iq2xs_grid, 512}, {kl_iq2s_grid, 1024}};
    for (int gi = 0; gi < 3; gi++)
        for (int i = 0; i < 8 * grids[gi].n; i++) {
            int a = (int)(grids[gi].g[i / 8] >> (8 * (i % 8)) & 0xFF);
            T_ASSERT(a == 8 || a == 25 || a == 43);
        }
    static const kl_dtype types[] = {KL_IQ2_XXS, KL_IQ2_XS, KL_IQ2_S};
    static const int rows[] = {1, 17, 40};
    for (int ti = 0; ti < 3; ti++)
        for (int ri = 0; ri < 3; ri++)
            for (int nblk = 1; nblk <= 9; nblk++) {
                kl_dtype t = types[ti];
                int R = rows[ri], C = nblk * KL_QKK, P = (R + 15) / 16;
                size_t rb = kl_dtype_row_bytes(t, C), ob = (size_t)nblk * KL_IQ2P_REC,
                       n = kl_pack_iq2_bytes(t, R, C);
                uint8_t *W = t_random_blocks(t, (size_t)(R * nblk),
                                             0x78BAC0DEull + 131 * (uint64_t)ti +
                                                 17 * (uint64_t)ri + (uint64_t)nblk),
                        *want = calloc(n, 1), *got = malloc(n);
                for (int r = 0; r < R; r++)
                    t8p_ref_row(t, W + (size_t)r * rb, nblk, want + r * ob);
                memset(got, 0xA5, n);
                kl_pack_iq2_t8p(t, W, R, C, 0, P, got);
                T_MEMEQ(want, got, n);
                free(W), free(want), free(got);
            }
}

/* TQ1_0's packed form (kernels/pack_tq.c, TQ2_0's blocks): its scalar dot gives the file
 * reference's bits, and each SIMD table's packed matmul (its TQ2_0 kernel) gives the bits of
 * its own TQ1_0 kernel on the file's blocks, at one row, the trit-free tile's three and the
 * decoded tile's six; random blocks (every byte value), rows that end mid-panel. */
TEST(kernels_iq_tq1_0_packed_matches_bits)
{
    static const int rows[] = {1, 15, 17, 33}, cols[] = {256, 768, 2304}, bs[] = {6, 1, 3};
    int simd = 0;
    for (int ri = 0; ri < 4; ri++)
        for (int ci = 0; ci < 3; ci++) {
            packed_case pc =
                packed_case_check(KL_TQ1_0, kl_pack_tq1_0_bytes, kl_pack_tq1_0, kl_ref_gemm_tq1_0,
                                  kl_ref_gemm_tq1_0_packed, rows[ri], cols[ci], bs[0],
                                  0x7E1AC0DEull + 17 * (uint64_t)ri + (uint64_t)ci);
            simd += packed_simd_check(KL_TQ1_0, kl_pack_tq1_0, &pc, rows[ri], cols[ci], bs, 3);
            packed_case_free(&pc);
        }
    if (!simd) t_skip("no packed TQ1_0 on this CPU");
}
