/* cli/cmd_model.c: `kiln model inspect|make|quantize|convert-llama2c`. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"

static int inspect(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: kiln model inspect FILE\n");
        return 2;
    }
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, argv[1], &err)) return cli_fail(&err);
    printf("%s: GGUF v%u, %" PRId64 " metadata, %" PRId64 " tensors\n", argv[1], gguf_version(f),
           gguf_n_kv(f), gguf_n_tensors(f));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        printf("%s\n", t->name);
    }
    gguf_close(f);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "inspect")) return inspect(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_model_bench(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "bench-engine")) return cmd_engine_bench(argc - 1, argv + 1);
    fprintf(stderr, "usage: kiln model inspect FILE\n");
    return 2;
}
