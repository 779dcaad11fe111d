/* model/arch.h: the architecture table (model/arch.c) and the tensor list each architecture
 * binds (load.c) and writes (make.c). Inside model/ only. */
#ifndef KILN_MODEL_ARCH_H
#define KILN_MODEL_ARCH_H
#include "gguf/gguf.h"
#include "model/internal.h"

/* "llama, qwen2, ...": every name model_arch_find knows, for messages. */
const char *model_arch_names(void);
/* Whether layer l of a model with a sliding window uses it (a->swa_period). */
bool model_arch_swa_layer(const model_arch *a, int l);

/* One tensor of a model: 2-D (cols = ne[0], rows = ne[1]) bound to *mat, 3-D (experts =
 * ne[2] > 0: a stack of matrices) bound to mat[0..experts), or 1-D (rows 0) to *vec; norm: a
 * norm's weight (make writes ones). Slots are NULL when listed without a model. */
typedef struct model_tensor {
    char name[GGUF_MAX_NAME];
    int64_t cols, rows, experts;
    bool norm;
    bool optional; /* a file may lack it (DeepSeek-V3's exp_probs_b); make writes it when the
                      routing uses it */
    bool split;    /* a stack of experts stored the older way, one 2-D tensor per expert
                      (model_expert_name): set by the loader when it binds one so */
    model_w *mat;
    const float **vec;
} model_tensor;

/* Lists the tensors every layer and the output have for architecture a and the shapes in hp
 * (the token embedding, output.weight and RoPE factors are the loader's own) into out, which
 * holds model_arch_max_tensors(hp); returns their count. m: where they bind, or NULL. */
int model_arch_tensors(const model_arch *a, const model_hparams *hp, model *m, model_tensor *out);
int model_arch_max_tensors(const model_hparams *hp);

/* The name of expert e's own 2-D tensor in the older layout of the stack named stack (Mixtral
 * files converted before mid-2024; llama.cpp's LLM_TENSOR_FFN_*_EXP): blk.N.ffn_gate_exps.weight
 * -> blk.N.ffn_gate.E.weight, into out (GGUF_MAX_NAME bytes). */
void model_expert_name(const char *stack, int64_t e, char *out);
#endif
