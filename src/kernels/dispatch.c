/* kernels/dispatch.c: builds the per-ISA tables once (scalar, then avx2 over it, then avx512
 * over that, then avx512vbmi over that) and picks the best one this CPU runs, or the one
 * KILN_SIMD names. avx512vbmi is AVX-512 plus VBMI, GFNI and BITALG (Ice Lake, Zen 4 and
 * later): the same table but for the IQ types whose decode those make cheap
 * (x86/avx512vbmi_iq.c, avx512vbmi_iq3.c). */
#include <cpuid.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/iq.h"

/* F16C from cpuid leaf 1 (clang 14's __builtin_cpu_supports does not know "f16c"). */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static kl_isa isa_scalar, isa_avx2, isa_avx512, isa_avx512vbmi;
static const kl_isa *isa_default;
static _Atomic(const kl_isa *) isa_current;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fill_scalar(kl_isa *t)
{
    memset(t, 0, sizeof *t);
    t->name = "scalar";
    t->types[KL_F32] = (kl_type_ops){.act = KL_F32, .quant_act = NULL, .gemm = kl_ref_gemm_f32};
    t->types[KL_F16] = (kl_type_ops){.act = KL_F32, .quant_act = NULL, .gemm = kl_ref_gemm_f16};
    t->types[KL_BF16] = (kl_type_ops){.act = KL_F32, .quant_act = NULL, .gemm = kl_ref_gemm_bf16};
    t->types[KL_Q8_0] =
        (kl_type_ops){.act = KL_Q8_0, .quant_act = kl_ref_quant_act_q8_0, .gemm = kl_ref_gemm_q8_0};
    t->types[KL_Q4_0] =
        (kl_type_ops){.act = KL_Q8_0, .quant_act = kl_ref_quant_act_q8_0, .gemm = kl_ref_gemm_q4_0};
    t->types[KL_Q4_K] =
        (kl_type_ops){.act = KL_Q8_K, .quant_act = kl_ref_quant_act_q8_k, .gemm = kl_ref_gemm_q4_k};
    t->types[KL_Q5_K] =
        (kl_type_ops){.act = KL_Q8_K, .quant_act = kl_ref_quant_act_q8_k, .gemm = kl_ref_gemm_q5_k};
    t->types[KL_Q6_K] =
        (kl_type_ops){.act = KL_Q8_K, .quant_act = kl_ref_quant_act_q8_k, .gemm = kl_ref_gemm_q6_k};
    kl_ref_types_base(t);
    kl_ref_types_legacy(t);
    kl_ref_types_q2k_q3k(t);
    kl_ref_types_iq4(t);
    kl_ref_types_iq(t);
    t->vec = (kl_vec_ops){kl_ref_dot,
                          kl_ref_axpy,
                          kl_ref_rmsnorm,
                          kl_ref_softmax,
                          kl_ref_swiglu,
                          kl_ref_dot_f16,
                          kl_ref_axpy_f16,
                          kl_ref_attn_scores,
                          kl_ref_attn_pv,
                          kl_ref_attn_scores_f16,
                          kl_ref_attn_pv_f16,
                          kl_ref_attn_pv_rows,
                          kl_ref_attn_pv_rows_f16,
                          kl_ref_attn_scores_rows,
                          kl_ref_attn_scores_rows_f16,
                          kl_ref_softmax_part};
    t->lora = (kl_lora_ops){kl_ref_lora_shrink, kl_ref_lora_expand};
}

static bool cpu_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

static bool cpu_avx512(void)
{
    __builtin_cpu_init();
    return cpu_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("bmi2"); /* every AVX-512 CPU has it (x86/avx512_iq1.c's pdep) */
}

/* AVX512_VBMI, GFNI and AVX512_BITALG from cpuid leaf 7 (the OS's saving of the AVX-512
 * state is in cpu_avx512's checks). */
static bool cpu_avx512vbmi(void)
{
    unsigned a, b, c, d;
    return cpu_avx512() && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & bit_AVX512VBMI) &&
           (c & bit_GFNI) && (c & bit_AVX512BITALG);
}

/* What this CPU runs, probed once by build(). */
static bool has_avx2, has_avx512, has_avx512vbmi;

/* The table of this name if this CPU runs it, else NULL. */
static const kl_isa *runnable(const char *name)
{
    if (!strcmp(name, "scalar")) return &isa_scalar;
    if (!strcmp(name, "avx2")) return has_avx2 ? &isa_avx2 : NULL;
    if (!strcmp(name, "avx512")) return has_avx512 ? &isa_avx512 : NULL;
    if (!strcmp(name, "avx512vbmi")) return has_avx512vbmi ? &isa_avx512vbmi : NULL;
    return NULL;
}

static void build(void)
{
    has_avx2 = cpu_avx2(), has_avx512 = cpu_avx512(), has_avx512vbmi = cpu_avx512vbmi();
    /* Each table's init is compiled for its ISA (GCC vectorizes the pointer stores, and the
     * VBMI one builds its decode planes with AVX-512 and BMI2), so it runs only on a CPU that
     * has that ISA; elsewhere the table stays a copy of the one below, which no one picks. */
    fill_scalar(&isa_scalar);
    isa_avx2 = isa_scalar;
    isa_avx2.name = "avx2";
    if (has_avx2) kl_isa_avx2_init(&isa_avx2);
    isa_avx512 = isa_avx2;
    isa_avx512.name = "avx512";
    /* after the copy: packed forms of AVX2's bits or layout, which the tables above don't take */
    if (has_avx2) kl_isa_avx2_own(&isa_avx2);
    if (has_avx512) kl_isa_avx512_init(&isa_avx512);
    isa_avx512vbmi = isa_avx512;
    isa_avx512vbmi.name = "avx512vbmi";
    if (has_avx512vbmi) {
        kl_avx512vbmi_types_iq(&isa_avx512vbmi);
        kl_avx512vbmi_types_iq2_packed(&isa_avx512vbmi);
        kl_avx512vbmi_types_iq3(&isa_avx512vbmi);
        kl_avx512vbmi_types_iq1(&isa_avx512vbmi);
    }
    isa_default = has_avx512vbmi ? &isa_avx512vbmi
                  : has_avx512   ? &isa_avx512
                  : has_avx2     ? &isa_avx2
                                 : &isa_scalar;
    const char *want = getenv("KILN_SIMD");
    const kl_isa *t = want && *want ? runnable(want) : NULL;
    if (t) isa_default = t; /* an unknown or unsupported name keeps the best one */
    atomic_store(&isa_current, isa_default);
}

/* Returns the ISA table in use (built on first call). */
const kl_isa *kl_isa_get(void)
{
    pthread_once(&once, build);
    return atomic_load_explicit(&isa_current, memory_order_relaxed);
}

/* Returns the named table if this CPU runs it, else NULL. */
const kl_isa *kl_isa_find(const char *name)
{
    pthread_once(&once, build);
    return runnable(name);
}

/* Makes later calls use isa; NULL restores the default pick. */
void kl_isa_set(const kl_isa *isa)
{
    pthread_once(&once, build);
    atomic_store(&isa_current, isa ? isa : isa_default);
}
