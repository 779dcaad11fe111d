/* libFuzzer target: the gateway's reader of replica /metrics text on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "gateway/scrape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_scrape s;
    gw_scrape_parse((const char *)data, size, &s);
    return 0;
}
