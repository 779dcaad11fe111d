/* kernels/x86/avx512_init.c: the AVX-512 table entries (filled as kernels land). */
#include "kernels/impl.h"

void kl_isa_avx512_init(kl_isa *isa)
{
    (void)isa;
}
