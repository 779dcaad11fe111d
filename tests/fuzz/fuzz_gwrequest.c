/* libFuzzer target: the gateway's request-body parsing (both endpoints) on arbitrary bytes.
 * Seeds: tests/fuzz/corpus/gwrequest/ (chat and completion bodies). */
#include <stddef.h>
#include <stdint.h>

#include "gateway/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int chat = 0; chat < 2; chat++) {
        gw_request_info r;
        kl_err err;
        if (gw_request_parse(&r, (const char *)data, size, chat, &err) == 0)
            gw_request_info_free(&r);
    }
    return 0;
}
