/* tests/fuzz/fuzz_jinja.c: random templates through the Jinja interpreter. The input is the
 * template source (its first byte also picks add_generation_prompt and the conversation);
 * whatever parses is rendered under small limits. Checks: no crash, no leak, no hang (the
 * step, memory, output and depth limits), and a successful render returns exactly out_len
 * bytes with a NUL after them. Seed corpus idea: the built-in templates (chat_builtin.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const jinja_msg conv[] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello <think>x</think> \xc3\xa9"},
    {"assistant", "<think>\nr\n</think>\n\nHi"},
    {"user", "2+2?"},
    {"tool", "{\"a\": 1}"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    kl_err err = {0};
    jinja_tmpl *t = NULL;
    if (jinja_parse(&t, (const char *)data, size, "fuzz", &err)) return 0;
    unsigned sel = size ? data[0] : 0;
    jinja_limits lim = jinja_default_limits;
    lim.max_steps = 200000;
    lim.max_mem = (size_t)8 << 20;
    lim.max_out = (size_t)1 << 20;
    json_t *vars =
        (sel & 4) ? json_pack("{s:b,s:[{s:s}]}", "enable_thinking", 0, "tools", "type", "function")
                  : NULL;
    jinja_input in = {.msgs = conv + ((sel >> 1) & 1),
                      .n_msgs = (int)(sel % 5),
                      .add_generation_prompt = sel & 1,
                      .bos_token = "<s>",
                      .eos_token = "</s>",
                      .vars = vars,
                      .now = 1700000000};
    if (in.n_msgs > 4) in.n_msgs = 4;
    char *out = NULL;
    size_t n = 0;
    bool raised;
    if (jinja_render(t, &in, &lim, &out, &n, &raised, &err) == 0) {
        if (out[n] != 0 || n > lim.max_out) abort();
        free(out);
    } else if (!err.msg[0]) {
        abort(); /* every failure says why */
    }
    json_decref(vars);
    jinja_free(t);
    return 0;
}
