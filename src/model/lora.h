/* model/lora.h: LoRA adapters on a bound model, as llama.cpp writes them in GGUF
 * (general.type = adapter, adapter.type = lora, adapter.lora.alpha; for a base weight W of
 * shape (rows, cols) the pair "<W's name>.lora_a" of shape (rank, cols) and ".lora_b" of
 * shape (rows, rank), any of F32 F16 BF16 Q8_0). An adapted projection computes
 * y = x W^T + scale (x A^T) B^T with scale = alpha / rank (1 when alpha is 0), times the
 * user's scale: llama.cpp's convention.
 *
 * Any subset of the attention and FFN projections of any layer, and the output head when the
 * model has its own, can be adapted. A model_batch names each sequence's adapter; the forward
 * pass runs each projection's base matmul once over the whole batch, then each adapter's
 * update over just its own rows (kernels/lora.c). */
#ifndef KILN_MODEL_LORA_H
#define KILN_MODEL_LORA_H
#include "model/model.h"

typedef struct model_lora model_lora; /* opaque */

typedef struct model_lora_info {
    int rank;     /* the largest pair's */
    float alpha;  /* adapter.lora.alpha (0: scale 1) */
    float scale;  /* the user's (a stack: 1, its parts have their own) */
    int n_pairs;  /* adapted projections (a stack: its parts' pairs) */
    size_t bytes; /* weights held (F16); a stack: its parts' */
    uint64_t id;  /* identity of the weights and scales: the prefix cache's salt */
} model_lora_info;

/* Reads adapter f for base model m: checks the metadata, pairs every .lora_a with its
 * .lora_b, checks each pair against m's tensor of that name (present, adaptable, shapes,
 * rank at most m's max_lora_rank, finite values) and copies the weights (A as F16, B
 * transposed as F16): f may be closed afterwards; m must outlive the adapter. scale
 * multiplies alpha / rank. Returns 0 and sets *out, or a negative KL_E* code with
 * "<path>: <what is wrong>" (naming the tensor) in err and nothing allocated. */
int model_lora_load(model_lora **out, const model *m, const gguf_file *f, float scale, kl_err *err);
/* A stack of adapters on one sequence, as llama.cpp applies several adapters set on one
 * context: each adapted projection adds parts[0]'s update, then parts[1]'s, and so on, in
 * order. Borrows parts (n >= 1, each loaded for the same model, none itself a stack): they
 * must outlive the stack. Returns 0 and sets *out, or KL_EINVAL / KL_ENOMEM with the reason
 * in err and nothing allocated. */
int model_lora_stack(model_lora **out, model_lora *const *parts, int n, kl_err *err);
void model_lora_free(model_lora *a); /* NULL is fine; the model may be gone already; a stack
                                        frees only itself */
const model_lora_info *model_lora_info_of(const model_lora *a);
/* The model a was loaded for. */
const model *model_lora_model(const model_lora *a);
#endif
