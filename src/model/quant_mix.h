/* model/quant_mix.h: the quantization mixes of `kiln model quantize` (llama-quantize's
 * names and per-tensor rules, model/quant_mix.c). */
#ifndef KILN_MODEL_QUANT_MIX_H
#define KILN_MODEL_QUANT_MIX_H
#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"
#include "gguf/gguf.h"

typedef struct qmix {
    const char *name;   /* "q4_k_m" */
    uint32_t file_type; /* llama.cpp's llama_ftype, written as general.file_type */
    kl_dtype type;      /* the mix's main type */
} qmix;

/* The mix called name (case-insensitive; q3_k, q4_k, q5_k mean their _m mixes), or NULL. */
const qmix *qmix_find(const char *name);
/* The names qmix_find knows, for messages. */
const char *qmix_names(void);

/* The rules' state over one file: counts, then counters advanced tensor by tensor in file
 * order (llama.cpp counts attn_v and ffn_* tensors as it meets them). */
typedef struct qmix_state {
    const qmix *mix;
    bool pure; /* every quantized tensor in the mix's type (llama-quantize --pure) */
    int embd_type, output_type; /* llama-quantize's --token-embedding-type and
                                 * --output-tensor-type: a kl_dtype, or -1 for the mix's */
    char arch[32];
    int n_layer, n_gqa, n_expert, n_attention_wv;
    bool has_output, is_70b;
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
} qmix_state;

/* Reads what the rules need from f (architecture, layers, heads, experts; the tensors' names);
 * embd_type and output_type become q's (-1: the mix decides). Returns 0. */
int qmix_start(qmix_state *q, const qmix *mix, bool pure, int embd_type, int output_type,
               const gguf_file *f, kl_err *err);
/* Whether a mix converts t at all (2-D weights except norms, router, positions...). */
bool qmix_quantizes(const gguf_tensor *t);
/* The type t gets (call for each tensor qmix_quantizes, in file order). Returns 0, or a
 * negative KL_E* when the file does not allow the mix (err says why). */
int qmix_type(qmix_state *q, const gguf_tensor *t, kl_dtype *out, kl_err *err);
#endif
