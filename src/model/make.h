/* model/make.h: llama-architecture GGUF files with random weights, for tests and benchmarks
 * (`kiln model make`, the default model of `kiln serve`), and the other model-file tools:
 * quantizing a GGUF and converting a llama2.c checkpoint.
 *
 * Weights are normal with a small standard deviation and norms are 1.0, so activations stay
 * finite at any size. Tensor names and metadata keys are llama.cpp's, so the files load there
 * too. Everything is generated and quantized row by row straight into the file: memory use
 * does not grow with the model. */
#ifndef KILN_MODEL_MAKE_H
#define KILN_MODEL_MAKE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/err.h"
#include "gguf/gguf.h"

typedef struct model_make_opts {
    const char *arch; /* any architecture of model/arch.c: llama, gemma2, phi3, ... */
    int dim;          /* embedding length */
    int layers;
    int heads, kv_heads;
    int ffn;                /* feed-forward length */
    int vocab;              /* synthetic SentencePiece vocab of this many tokens (>= 259)... */
    const char *vocab_from; /* ...unless this GGUF is given: all its tokenizer.* keys are copied */
    int ctx;                /* llama.context_length */
    kl_dtype type;          /* type of the 2-D weights: any kl_quantize_supports() type */
    uint64_t seed;
    float rope_theta;
    float norm_eps;
    float std;   /* standard deviation of the weights */
    bool tied;   /* no output.weight: the output layer is token_embd */
    int threads; /* generator threads (1 or 2 is plenty) */
    int swa;     /* <arch>.attention.sliding_window (0: none; gemma2/3 get their defaults) */
    int experts, experts_used; /* a Mixture of Experts (llama: Mixtral, qwen2moe, qwen3moe): the
                                  experts per layer (each ffn wide) and used per token; 0: none */
    int ffn_shared;            /* qwen2moe's shared expert's width (0: ffn) */
    bool experts_split;        /* each expert its own 2-D tensor (blk.N.ffn_gate.E.weight ...), as
                                  Mixtral files converted before mid-2024 have them, instead of 3-D
                                  stacks; the same weights, bit for bit */
    /* deepseek2 (heads of dim/heads for the unrotated key part and the value, plus dim/heads/2
     * rotated; a dense FFN ffn wide in the leading layers, then experts ffn wide each): */
    int q_lora;         /* the query's low rank; 0: attn_q (V2-Lite); -1: dim/2, but 0 with
                           27 layers (llama.cpp tells V2-Lite by its 27 layers) */
    int kv_lora;        /* the compressed KV latent's rank (0: dim/2) */
    int dense_lead;     /* leading dense layers (default 1) */
    int experts_shared; /* shared experts (default 1) */
    bool sigmoid;       /* DeepSeek-V3's routing: sigmoid, a selection bias, renormalised
                           weights scaled by 2.5 (else V2's: softmax, scale 1) */
    bool copy;          /* weights set by hand so that greedy decoding quotes the input
                           (model/make_copy.c), not random: llama, dim = 4 x kv_heads x head size,
                           rope_theta >= 1e6 */
} model_make_opts;

/* Tiny defaults: dim 64, 2 layers, 4 heads, 2 KV heads, FFN 192, 512-token synthetic vocab,
 * ctx 2048, F32, seed 42, theta 10000, eps 1e-5, std 0.02, untied, 2 threads. */
void model_make_defaults(model_make_opts *o);
/* Writes the model to out_path. Returns 0, or a negative KL_E* with the reason in err (bad
 * options: KL_EINVAL; an unreadable vocab file; I/O) and no file left behind. */
int model_make(const model_make_opts *o, const char *out_path, kl_err *err);

/* `kiln model make-lora`: a LoRA adapter with random weights for the base model in base_path,
 * in llama.cpp's layout (model/lora.h), so llama.cpp loads it too. */
typedef struct model_make_lora_opts {
    const char *base_path;
    int rank;
    float alpha;         /* adapter.lora.alpha (0: scale 1) */
    const char *targets; /* comma-separated: q k v o gate up down (all layers) and output */
    kl_dtype type;       /* F32 F16 BF16 Q8_0 (Q8_0 needs rank a multiple of 32) */
    uint64_t seed;
    float std; /* of A and B */
} model_make_lora_opts;
/* Rank 16, alpha 16, every projection, F32, seed 42, std 0.02. */
void model_make_lora_defaults(model_make_lora_opts *o);
/* Writes the adapter to out_path. Returns 0, or a negative KL_E* with the reason in err and no
 * file left behind. */
int model_make_lora(const model_make_lora_opts *o, const char *out_path, kl_err *err);

/* The names of the types make and quantize write ("f32 f16 q4_0 ..."), in buf (n bytes). */
const char *model_quant_types(char *buf, size_t n);

/* llama.cpp's general.file_type for a file whose 2-D weights are t (0 for F32). */
uint32_t model_file_type(kl_dtype t);

typedef struct model_quantize_opts {
    const char *mix; /* llama-quantize's names: q4_k_m, q3_k_s, q8_0, ..., or f16 bf16 f32 */
    bool pure;       /* every converted tensor in the mix's main type (llama-quantize --pure) */
    int threads;     /* < 1: 2 */
    /* llama-quantize's --token-embedding-type / --output-tensor-type: a type name ("q4_1") for
     * token_embd.weight / output.weight whatever the mix says, or NULL */
    const char *token_embd_type, *output_type;
} model_quantize_opts;

/* Copies in_path to out_path with its weight matrices converted as the mix says: the same
 * per-tensor types as llama-quantize's (model/quant_mix.c: attn_v, ffn_down and the output get
 * more bits in the _M mixes, rows that do not fit a K-quant's 256 fall back to Q5_0 / Q5_1 /
 * Q8_0, and so on). Norms, 1-D tensors, the MoE router stay as they are; quantized inputs are
 * dequantized first. general.file_type is the mix's llama ftype; all other metadata is copied.
 * Returns 0 or a negative KL_E* with the reason in err and no file left behind. */
int model_quantize(const char *in_path, const char *out_path, const model_quantize_opts *o,
                   kl_err *err);
/* The type each tensor of f (opened from path, named in errors) gets in o's mix, by file
 * index into to[gguf_n_tensors(f)]: what model_quantize writes. Returns 0 or a negative KL_E*
 * (an unknown mix or type, a type Kiln cannot write, a file the mix does not fit). */
int model_quantize_plan(const gguf_file *f, const char *path, const model_quantize_opts *o,
                        kl_dtype *to, kl_err *err);

/* Converts a llama2.c checkpoint (legacy v0 format: 7 int32 header, fp32 weights) and its
 * tokenizer.bin to a GGUF laid out as llama.cpp's convert-llama2c does. Returns 0 or a
 * negative KL_E* with "<path>: <what is wrong>" in err and no file left behind. */
int model_convert_llama2c(const char *ckpt_path, const char *tok_path, const char *out_path,
                          kl_err *err);
#endif
