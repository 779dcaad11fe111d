/* libFuzzer target: the gateway's config parser on arbitrary bytes.
 * Seeds: tests/fuzz/corpus/gwconfig/ (every field of the shape in gateway/config.h, and a minimal
 * one). */
#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_config *c;
    kl_err err;
    if (gw_config_parse(&c, (const char *)data, size, "fuzz", &err) == 0) gw_config_free(c);
    return 0;
}
