/* kernels/x86/avx2_init.c: the AVX2+FMA table entries (filled as kernels land). */
#include "kernels/impl.h"

void kl_isa_avx2_init(kl_isa *isa)
{
    (void)isa;
}
