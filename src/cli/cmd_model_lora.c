/* cli/cmd_model_lora.c: `kiln model make-lora --base FILE --out FILE [options]`. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "model/make.h"

enum { O_BASE = CLI_LONG, O_OUT, O_RANK, O_ALPHA, O_TARGETS, O_TYPE, O_SEED, O_STD };

static const cli_opt opts[] = {
    {O_BASE, "base", "FILE", "the base model the adapter is for (required)"},
    {O_OUT, "out", "FILE", "the adapter file to write (required)"},
    {O_RANK, "rank", "R", "rank of every pair (default 16)"},
    {O_ALPHA, "alpha", "A",
     "adapter.lora.alpha: the update is scaled by alpha / rank (default 16)"},
    {O_TARGETS, "targets", "LIST",
     "comma-separated projections to adapt in every layer: q k v o gate up down, and output "
     "(default q,k,v,o,gate,up,down)"},
    {O_TYPE, "type", "TYPE", "f32, f16, bf16 or q8_0 (rank a multiple of 32; default f32)"},
    {O_SEED, "seed", "S", "random seed; the same seed gives the same bytes (default 42)"},
    {O_STD, "std", "X", "standard deviation of A and B (default 0.02)"},
    {0},
};

static const cli_cmd cmd = {
    "model make-lora", "--base FILE --out FILE [options]",
    "Writes a LoRA adapter with random weights for the base model, in llama.cpp's layout\n"
    "(general.type = adapter; <tensor>.lora_a / .lora_b pairs), so llama.cpp loads it too.\n",
    opts, NULL};

int cmd_model_make_lora(int argc, char **argv)
{
    model_make_lora_opts o;
    model_make_lora_defaults(&o);
    const char *out = NULL;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *v;
    for (int k; (k = cli_args_next(&a, &v)) != CLI_END;) {
        bool ok = true;
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&cmd, "unexpected argument '%s'", v);
        case O_BASE:
            o.base_path = v;
            break;
        case O_OUT:
            out = v;
            break;
        case O_RANK:
            ok = cli_int("--rank", v, 1, 4096, &o.rank);
            break;
        case O_ALPHA:
            ok = cli_float("--alpha", v, &o.alpha);
            break;
        case O_TARGETS:
            o.targets = v;
            break;
        case O_STD:
            ok = cli_float("--std", v, &o.std);
            break;
        case O_SEED:
            ok = cli_seed(v, &o.seed);
            break;
        case O_TYPE:
            ok = cli_dtype(v, &o.type);
            break;
        }
        if (!ok) return 2;
    }
    if (!out || !o.base_path)
        return cli_usage_error(&cmd, "--base FILE and --out FILE are required");
    kl_err err = {0};
    if (model_make_lora(&o, out, &err)) return cli_fail(&err);
    return 0;
}
