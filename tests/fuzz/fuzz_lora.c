/* tests/fuzz/fuzz_lora.c: arbitrary bytes as a LoRA adapter (gguf_open_mem, then
 * model_lora_load against a small llama model made once at start): every file is either
 * refused with a message or loaded and freed; ASan catches any read outside the input and
 * any leak. Seeds: tests/fuzz/corpus/lora/ (adapters from kiln model make-lora for a
 * --dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 48 --vocab 259 model). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "model/lora.h"
#include "model/make.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gguf_file *base_file;
static model *base;

/* The base model: made in a temporary file, mapped and bound once for every input. */
static void make_base(void)
{
    char path[] = "/tmp/kiln-fuzz-lora-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    model_make_opts o;
    model_make_defaults(&o);
    o.dim = 32, o.layers = 1, o.heads = 2, o.kv_heads = 1, o.ffn = 48, o.vocab = 259;
    kl_err err = {0};
    model_opts mo = {.max_batch_tokens = 4, .max_lora_rank = 16, .no_repack = true};
    if (model_make(&o, path, &err) || gguf_open(&base_file, path, &err) ||
        model_load(&base, base_file, &mo, &err)) {
        fprintf(stderr, "fuzz_lora: %s\n", err.msg);
        abort();
    }
    unlink(path); /* the mapping stays */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base) make_base();
    gguf_file *f;
    kl_err err = {0};
    if (gguf_open_mem(&f, data, size, "fuzz", &err)) return 0;
    model_lora *a = NULL;
    if (!model_lora_load(&a, base, f, 1.f, &err)) {
        const model_lora_info *info = model_lora_info_of(a);
        if (info->rank < 1 || info->rank > 16 || info->n_pairs < 1) abort();
    }
    model_lora_free(a);
    gguf_close(f);
    return 0;
}
