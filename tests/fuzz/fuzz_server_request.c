/* libFuzzer target: the server's request-body parsing (completions, chat, embeddings: every
 * field, structured-output and tool fields included) on arbitrary bytes, and for a request
 * with tools the parsing of a model's output for calls. The input is a body, then optionally
 * a 0 byte and an output text: the output comes from the model, which the client steers. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data, *zero = memchr(data, 0, size);
    size_t blen = zero ? (size_t)(zero - body) : size;
    const char *out = zero ? zero + 1 : "";
    size_t olen = zero ? size - blen - 1 : 0;
    for (int kind = SRV_COMPLETIONS; kind <= SRV_EMBEDDINGS; kind++) {
        srv_req r;
        net_error e;
        if (srv_req_parse(&r, (srv_kind)kind, body, blen, 512, &e)) continue;
        if (r.tools) {
            for (int cut = 0; cut < 2; cut++) { /* a whole answer, and one max_tokens cut */
                size_t content = 0;
                json_decref(srv_tools_parse(&r, out, olen, cut, &content));
            }
            bool holding = false; /* as a stream calls it: the output growing, sent kept */
            size_t sent = 0;
            for (size_t n = 0; n <= olen && !holding; n += 1 + n / 4) {
                size_t safe = srv_tools_hold(&r, out, n, sent, &holding);
                if (safe > sent) sent = safe;
            }
        }
        srv_req_free(&r);
    }
    return 0;
}
