/* libFuzzer target: kiln bench's SSE reader on arbitrary bytes, fed in pieces whose sizes come
 * from the input's first byte, with every event's data parsed as the load generator does. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bench/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_event(const char *d, size_t len, void *arg)
{
    size_t *total = arg;
    if (d[len] != 0) __builtin_trap(); /* data is NUL-terminated at len */
    *total += len;
    json_t *j = json_loads(d, 0, NULL);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    size_t step = (size_t)data[0] % 17 + 1, total = 0;
    kb_sse r = {0};
    for (size_t at = 1; at < size; at += step) {
        size_t n = size - at < step ? size - at : step;
        if (kb_sse_feed(&r, (const char *)data + at, n, on_event, &total)) break;
    }
    kb_sse_free(&r);
    return 0;
}
