/* SIMD dot and axpy (AVX2 and AVX-512) against the scalar reference at every length 0..100. */
#include <math.h>

#include "kernels/impl.h"
#include "t.h"

TEST(kernels_vec_dot_axpy_match_reference)
{
    float a[100], b[100], y1[100], y2[100];
    for (int i = 0; i < 100; i++)
        a[i] = sinf((float)i), b[i] = cosf((float)i * 0.7f);
    int tested = 0;
    for (const char *const *nm = (const char *const[]){"avx2", "avx512", NULL}; *nm; nm++) {
        const kl_isa *isa = kl_isa_find(*nm);
        if (!isa) continue;
        tested++;
        for (int n = 0; n <= 100; n++) {
            double ref = 0;
            for (int i = 0; i < n; i++)
                ref += (double)a[i] * (double)b[i];
            T_NEAR(isa->vec.dot(a, b, n), ref, 1e-4);
            for (int i = 0; i < 100; i++)
                y1[i] = y2[i] = (float)i;
            isa->vec.axpy(y1, 0.5f, a, n);
            kl_ref_axpy(y2, 0.5f, a, n);
            for (int i = 0; i < 100; i++)
                T_NEAR(y1[i], y2[i], 1e-6); /* also: nothing past n touched */
        }
    }
    if (!tested) t_skip("no AVX2 on this CPU");
}

static void attention_match_reference(const kl_isa *isa);

/* Attention's inner loops (AVX2 and AVX-512) against the scalar reference: head sizes that are and
 * are not multiples of 16 (tails), 1..20 keys, strided key rows; and batch invariance: a row's
 * scores and outputs are the same bits whether computed alone or within a longer run. */
TEST(kernels_vec_attention_match_reference)
{
    int tested = 0;
    for (const char *const *nm = (const char *const[]){"avx2", "avx512", NULL}; *nm; nm++) {
        const kl_isa *isa = kl_isa_find(*nm);
        if (!isa) continue;
        tested++;
        attention_match_reference(isa);
    }
    if (!tested) t_skip("no AVX2 on this CPU");
}

static void attention_match_reference(const kl_isa *isa)
{
    static const int hds[] = {3, 8, 40, 64, 72, 80, 100, 128, 130, 256};
    enum { NK = 40, LD = 300 }; /* runs of 16 keys are summed together: 1, 2 runs + tails */
    static float q[LD], k[NK * LD], o1[LD], o2[LD], s1[NK], s2[NK], one[NK];
    for (int i = 0; i < NK * LD; i++)
        k[i] = sinf((float)i * 0.37f);
    for (int i = 0; i < LD; i++)
        q[i] = cosf((float)i * 0.11f);
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        int hd = hds[h];
        for (int nk = 1; nk <= NK; nk++) {
            isa->vec.attn_scores(q, k, LD, nk, hd, 0.125f, s1);
            kl_ref_attn_scores(q, k, LD, nk, hd, 0.125f, s2);
            for (int j = 0; j < nk; j++)
                T_NEAR(s1[j], s2[j], 1e-4);
            for (int j = 0; j < nk; j++) { /* each key alone: the same bits */
                isa->vec.attn_scores(q, k + (size_t)j * LD, LD, 1, hd, 0.125f, one);
                T_ASSERT(one[0] == s1[j]);
            }
            for (int i = 0; i < LD; i++)
                o1[i] = o2[i] = (float)i * 0.01f;
            isa->vec.attn_pv(o1, s1, k, LD, nk, hd);
            kl_ref_attn_pv(o2, s1, k, LD, nk, hd);
            for (int i = 0; i < LD; i++)
                T_NEAR(o1[i], o2[i], 1e-4); /* nothing past hd touched */
        }
        /* the same keys in two calls give the bits of one call (invariance across chunks) */
        for (int i = 0; i < LD; i++)
            o1[i] = o2[i] = 0.f;
        isa->vec.attn_pv(o1, s1, k, LD, NK, hd);
        isa->vec.attn_pv(o2, s1, k, LD, 7, hd);
        isa->vec.attn_pv(o2, s1 + 7, k + 7 * LD, LD, NK - 7, hd);
        for (int i = 0; i < hd; i++)
            T_ASSERT(o1[i] == o2[i]);
    }
}

/* Attention over F16 rows read in place gives the bits of the F32 kernels over the same rows
 * converted first, for every ISA (the forward pass uses either, by tile size; a token's
 * result must not depend on which). */
TEST(kernels_vec_attention_f16_same_bits_as_converted)
{
    static const int hds[] = {8, 40, 64, 72, 128, 130, 256};
    enum { NK = 20, LD = 300 };
    static float q[LD], k[NK * LD], o1[LD], o2[LD], s1[NK], s2[NK];
    static uint16_t kh[NK * LD];
    for (int i = 0; i < NK * LD; i++)
        kh[i] = kl_fp32_to_fp16(sinf((float)i * 0.37f) * 3.f);
    for (int i = 0; i < NK * LD; i++)
        k[i] = kl_fp16_to_fp32(kh[i]);
    for (int i = 0; i < LD; i++)
        q[i] = cosf((float)i * 0.11f);
    for (const char *const *n = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *n; n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa) continue;
        for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
            for (int nk = 1; nk <= NK; nk += 6) {
                int hd = hds[h];
                isa->vec.attn_scores(q, k, LD, nk, hd, 0.125f, s1);
                isa->vec.attn_scores_f16(q, kh, LD, nk, hd, 0.125f, s2);
                T_MEMEQ(s1, s2, sizeof(float) * (size_t)nk);
                for (int i = 0; i < LD; i++)
                    o1[i] = o2[i] = (float)i * 0.01f;
                isa->vec.attn_pv(o1, s1, k, LD, nk, hd);
                isa->vec.attn_pv_f16(o2, s1, kh, LD, nk, hd);
                T_MEMEQ(o1, o2, sizeof o1);
            }
    }
}

/* Several rows at once (kl_attn_pv_rows) give the bits of one row at a time, for every ISA,
 * row counts 1..9 (groups of 4 or 2 and the rest), head sizes with tails, F32 and F16 values. */
TEST(kernels_vec_attention_pv_rows_same_bits_as_one_row)
{
    static const int hds[] = {8, 40, 64, 72, 128, 130, 256};
    enum { NK = 19, LD = 300, NR = 9, LDP = 23 };
    static float v[NK * LD], p[NR * LDP], o1[NR * LD], o2[NR * LD];
    static uint16_t vh[NK * LD];
    for (int i = 0; i < NK * LD; i++)
        vh[i] = kl_fp32_to_fp16(sinf((float)i * 0.37f) * 3.f);
    for (int i = 0; i < NK * LD; i++)
        v[i] = kl_fp16_to_fp32(vh[i]);
    for (int i = 0; i < NR * LDP; i++)
        p[i] = cosf((float)i * 0.29f);
    for (const char *const *n = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *n; n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa) continue;
        for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
            for (int nr = 1; nr <= NR; nr++)
                for (int nk = 1; nk <= NK; nk += 9) {
                    int hd = hds[h];
                    for (int f16 = 0; f16 < 2; f16++) {
                        for (int i = 0; i < NR * LD; i++)
                            o1[i] = o2[i] = (float)i * 0.01f;
                        if (f16)
                            isa->vec.attn_pv_rows_f16(o1, LD, p, LDP, nr, vh, LD, nk, hd);
                        else
                            isa->vec.attn_pv_rows(o1, LD, p, LDP, nr, v, LD, nk, hd);
                        for (int r = 0; r < nr; r++)
                            isa->vec.attn_pv(o2 + r * LD, p + r * LDP, v, LD, nk, hd);
                        T_MEMEQ(o1, o2, sizeof o1); /* and rows past nr untouched */
                    }
                }
    }
}

/* Scores of several query rows at once (GQA's heads of one KV head) give the bits of one row
 * at a time, for every ISA: row counts 1..9 (groups of 4 and the rest), key counts with and
 * without a tail of fewer than 4, head sizes with tails, F32 and F16 keys. */
TEST(kernels_vec_attention_scores_rows_same_bits_as_one_row)
{
    static const int hds[] = {8, 40, 64, 72, 128, 130, 256};
    enum { NK = 23, LD = 300, NR = 9, LDS = 29 };
    static float k[NK * LD], q[NR * LD], s1[NR * LDS], s2[NR * LDS];
    static uint16_t kh[NK * LD];
    for (int i = 0; i < NK * LD; i++)
        kh[i] = kl_fp32_to_fp16(sinf((float)i * 0.37f) * 3.f);
    for (int i = 0; i < NK * LD; i++)
        k[i] = kl_fp16_to_fp32(kh[i]);
    for (int i = 0; i < NR * LD; i++)
        q[i] = cosf((float)i * 0.11f);
    for (const char *const *n = (const char *const[]){"scalar", "avx2", "avx512", NULL}; *n; n++) {
        const kl_isa *isa = kl_isa_find(*n);
        if (!isa) continue;
        for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
            for (int nr = 1; nr <= NR; nr++)
                for (int nk = 1; nk <= NK; nk += 3) {
                    int hd = hds[h];
                    for (int f16 = 0; f16 < 2; f16++) {
                        for (int i = 0; i < NR * LDS; i++)
                            s1[i] = s2[i] = -1.f;
                        if (f16)
                            isa->vec.attn_scores_rows_f16(q, LD, nr, kh, LD, nk, hd, 0.125f, s1,
                                                          LDS);
                        else
                            isa->vec.attn_scores_rows(q, LD, nr, k, LD, nk, hd, 0.125f, s1, LDS);
                        for (int r = 0; r < nr; r++)
                            isa->vec.attn_scores(q + r * LD, k, LD, nk, hd, 0.125f, s2 + r * LDS);
                        T_MEMEQ(s1, s2, sizeof s1); /* and nothing else written */
                    }
                }
    }
}
