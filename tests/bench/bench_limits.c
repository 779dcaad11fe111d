/* tests/bench/bench_limits.c: the machine's limits, measured in the benchmark's own run so that
 * every figure is a fraction of what this machine did that minute (machines of one kind read
 * 32 to 84 GB/s; one machine's read moves between runs). Read bandwidth: a sum over 512 MiB
 * (16x a 32 MiB L3), each worker its own slice. Dot peaks: independent accumulator chains of vfmadd
 * (FP32), vdpbf16ps (BF16) and vpdpbusd (INT8; AVX2 without VNNI: vpmaddubsw + vpmaddwd +
 * vpaddd, the kernels' own sequence), compiled for their ISA by target attributes and run only
 * where the CPU has it. The same method as ../shared/perf/limits.c, written for this binary. */
#include "bench_limits.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

#define READ_BYTES ((size_t)512 << 20)
#define DOT_ITERS  (1 << 20)
#define CHAINS     12 /* enough independent chains to hide 4-5 cycle latencies at 2 a cycle */

typedef struct read_job {
    const uint64_t *buf;
    size_t words;
    uint64_t sums[64];
} read_job;

/* 256-bit loads with four add chains: a core's loads, not its adds, are what is measured. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t words)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= words; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    return (uint64_t)_mm256_extract_epi64(s0, 0);
}

static void read_slice(void *ctx, int ith, int nth)
{
    read_job *j = ctx;
    size_t lo = j->words * (size_t)ith / (size_t)nth / 16 * 16,
           hi = j->words * (size_t)(ith + 1) / (size_t)nth / 16 * 16;
    uint64_t s = 0;
    if (__builtin_cpu_supports("avx2"))
        s = read_avx2(j->buf + lo, hi - lo);
    else
        for (size_t i = lo; i < hi; i++)
            s += j->buf[i];
    j->sums[ith & 63] = s; /* kept, so the loads are not dropped */
}

double bench_read_gbs(kl_workers *w)
{
    static uint64_t *buf;
    if (!buf) {
        buf = aligned_alloc(64, READ_BYTES);
        if (!buf) return 0;
        memset(buf, 1, READ_BYTES); /* faulted in once, outside the timing */
    }
    read_job j = {buf, READ_BYTES / 8, {0}};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = kl_now_s();
        kl_workers_run(w, read_slice, &j);
        double dt = kl_now_s() - t0;
        if (dt < best) best = dt;
    }
    return (double)READ_BYTES / best / 1e9;
}

/* Each peak kernel returns operations done (2 per multiply-add) and keeps its result live. */
__attribute__((target("avx512f,avx512vnni"))) static double int8_avx512(volatile int *sink)
{
    __m512i acc[CHAINS], a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm512_setzero_si512();
    for (int i = 0; i < DOT_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] =
            _mm512_dpbusd_epi32(acc[c], a, b);
        __asm__("" : "+v"(a)); /* one opaque operand: the loop is not folded */
    }
    for (int c = 1; c < CHAINS; c++)
        acc[0] = _mm512_add_epi32(acc[0], acc[c]);
    *sink = _mm512_reduce_add_epi32(acc[0]);
    return 2.0 * 64 * CHAINS * DOT_ITERS;
}

__attribute__((target("avx2"))) static double int8_avx2(volatile int *sink)
{
    __m256i acc[CHAINS], a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5),
                         one = _mm256_set1_epi16(1);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm256_setzero_si256();
    for (int i = 0; i < DOT_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] =
            _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), one));
        __asm__("" : "+v"(a));
    }
    for (int c = 1; c < CHAINS; c++)
        acc[0] = _mm256_add_epi32(acc[0], acc[c]);
    *sink = _mm256_extract_epi32(acc[0], 0);
    return 2.0 * 32 * CHAINS * DOT_ITERS;
}

__attribute__((target("avx512f"))) static double fp32_avx512(volatile int *sink)
{
    __m512 acc[CHAINS], a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm512_setzero_ps();
    for (int i = 0; i < DOT_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] =
            _mm512_fmadd_ps(a, b, acc[c]);
        __asm__("" : "+v"(a));
    }
    for (int c = 1; c < CHAINS; c++)
        acc[0] = _mm512_add_ps(acc[0], acc[c]);
    *sink = (int)_mm512_reduce_add_ps(acc[0]);
    return 2.0 * 16 * CHAINS * DOT_ITERS;
}

__attribute__((target("avx512f,avx512bf16"))) static double bf16_avx512(volatile int *sink)
{
    __m512 acc[CHAINS];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f80);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm512_setzero_ps();
    for (int i = 0; i < DOT_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] =
            _mm512_dpbf16_ps(acc[c], a, b);
        __asm__("" : "+v"(a));
    }
    for (int c = 1; c < CHAINS; c++)
        acc[0] = _mm512_add_ps(acc[0], acc[c]);
    *sink = (int)_mm512_reduce_add_ps(acc[0]);
    return 2.0 * 32 * CHAINS * DOT_ITERS;
}

__attribute__((target("avx2,fma"))) static double fp32_avx2(volatile int *sink)
{
    __m256 acc[CHAINS], a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm256_setzero_ps();
    for (int i = 0; i < DOT_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int c = 0; c < CHAINS; c++) acc[c] =
            _mm256_fmadd_ps(a, b, acc[c]);
        __asm__("" : "+v"(a));
    }
    for (int c = 1; c < CHAINS; c++)
        acc[0] = _mm256_add_ps(acc[0], acc[c]);
    *sink = (int)_mm256_cvtss_f32(acc[0]);
    return 2.0 * 8 * CHAINS * DOT_ITERS;
}

enum { FP32, BF16, INT8 };
typedef struct peak_job {
    int kind;
    double ops[64];
    volatile int sink[64];
} peak_job;

static void peak_slice(void *ctx, int ith, int nth)
{
    (void)nth;
    peak_job *j = ctx;
    volatile int *sink = &j->sink[ith & 63];
    bool avx512 = __builtin_cpu_supports("avx512f");
    double ops = 0;
    if (j->kind == INT8)
        ops = avx512 && __builtin_cpu_supports("avx512vnni") ? int8_avx512(sink) : int8_avx2(sink);
    else if (j->kind == BF16)
        ops = avx512 && __builtin_cpu_supports("avx512bf16") ? bf16_avx512(sink) : 0;
    else
        ops = avx512 ? fp32_avx512(sink) : fp32_avx2(sink);
    j->ops[ith & 63] = ops;
}

/* 0 where the CPU lacks the instructions (BF16 without AVX512_BF16: the kernels convert). */
static double peak(kl_workers *w, int kind)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    peak_job j = {.kind = kind};
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = kl_now_s();
        kl_workers_run(w, peak_slice, &j);
        double dt = kl_now_s() - t0;
        if (dt < best) best = dt;
    }
    return j.ops[0] * kl_workers_count(w) / best / 1e9;
}

bench_limits bench_limits_measure(kl_workers *w)
{
    return (bench_limits){bench_read_gbs(w), peak(w, FP32), peak(w, BF16), peak(w, INT8)};
}
