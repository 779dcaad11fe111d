/* tests/t_blocks.h: random blocks of a quantized type for kernel tests of types Kiln cannot
 * write (the IQ types' quantizers need an importance matrix): every byte random, then the
 * type's fp16 scale set to a normal number of either sign, so every grid index, sign pattern
 * and sub-block scale turns up and the block decodes to finite values. */
#ifndef KILN_TESTS_T_BLOCKS_H
#define KILN_TESTS_T_BLOCKS_H
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"

/* n blocks of type t (malloc'd, the caller frees), the same bytes for the same (t, seed). */
uint8_t *t_random_blocks(kl_dtype t, size_t n, uint64_t seed);
#endif
