/* libFuzzer target: the strict HTTP/1.1 request framing check (net/front.c) on arbitrary
 * bytes, fed whole and split at every position given by the first byte: both must agree. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "net/front.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    size_t step = data[0] % 17 + 1;
    data++, size--;
    net_front whole, parts;
    net_front_init(&whole);
    net_front_init(&parts);
    int a = net_front_feed(&whole, data, size);
    int b = 0;
    for (size_t i = 0; i < size && !b; i += step)
        b = net_front_feed(&parts, data + i, size - i < step ? size - i : step);
    if (a != b) abort();
    return 0;
}
