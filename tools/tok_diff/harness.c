/* tools/tok_diff/harness.c: Kiln's ids for a JSON list of strings.
 * usage: harness VOCAB.gguf ITEMS.json [special] > ids.json */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tok/tok.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: harness VOCAB.gguf ITEMS.json [special]\n");
        return 2;
    }
    kl_err err = {0};
    gguf_file *f;
    tok *t;
    if (gguf_open(&f, argv[1], &err) || tok_load(&t, f, &err)) {
        fprintf(stderr, "harness: %s\n", err.msg);
        return 1;
    }
    json_error_t je;
    json_t *items = json_load_file(argv[2], 0, &je), *out = json_array();
    if (!items) {
        fprintf(stderr, "harness: %s: %s\n", argv[2], je.text);
        return 1;
    }
    unsigned flags = argc > 3 ? TOK_PARSE_SPECIAL : 0;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *s = json_array_get(items, i), *ids = json_array();
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        int64_t n = tok_encode(t, text, len, flags, NULL, 0);
        int32_t *buf = malloc(sizeof *buf * (size_t)(n + 1));
        tok_encode(t, text, len, flags, buf, n);
        for (int64_t k = 0; k < n; k++) json_array_append_new(ids, json_integer(buf[k]));
        free(buf);
        json_array_append_new(out, ids);
    }
    json_dumpf(out, stdout, JSON_COMPACT);
    json_decref(items);
    json_decref(out);
    tok_free(t);
    gguf_close(f);
    return 0;
}
