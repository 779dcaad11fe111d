/* engine/open.h: one call that opens a model file and builds everything that serves it: the
 * GGUF mapping, its tokenizer and chat template, the bound model and the engine, all sized
 * from one config. `kiln serve`, the CLI commands and the tests open models this way, so the
 * defaults (batch size, context, packed weights) are decided in one place.
 *
 *   engine_open_config c;
 *   engine_open_defaults(&c);
 *   c.model_path = "model.gguf";
 *   engine_stack st;
 *   if (engine_open(&st, &c, &err)) ...;   // err.msg: "<path>: <what is wrong>"
 *   ... engine_submit(st.eng, ...) ...
 *   engine_close(&st);
 */
#ifndef KILN_ENGINE_OPEN_H
#define KILN_ENGINE_OPEN_H
#include <stdbool.h>
#include "base/err.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tok/chat.h"
#include "tok/tok.h"

typedef struct engine_open_config {
    const char *model_path;    /* NULL: a small synthetic model (random weights), made once in
                                  $XDG_CACHE_HOME/kiln (or ~/.cache/kiln) and reused */
    const char *chat_template; /* a built-in name or a Jinja file; NULL: the model's own (chatml,
                                  with a warning, when the model's cannot be used) */
    bool with_tok;             /* load the tokenizer and chat template (default true) */
    bool with_engine;          /* start an engine (default true; needs with_tok) */
    engine_config engine;      /* engine settings (model and tok are filled in by engine_open) */
    const char *draft_path;    /* engine.spec.kind ENGINE_SPEC_DRAFT: the draft model's file
                                  (same vocabulary as the target's, checked; NULL: the target
                                  itself drafts, a test of the mechanism) */
    model_opts model;          /* zero fields follow the engine settings: max_batch_tokens ->
                                  engine.max_batch_tokens, max_logits -> engine.max_seqs
                                  (+ ENGINE_SPEC_STEP_ROWS with speculation),
                                  max_ctx -> engine.n_ctx, n_workers -> engine.n_threads;
                                  no_repack is also set by KILN_NO_REPACK=1, pack_cache_dir by
                                  KILN_PACK_CACHE (model_pack_cache_default) */
} engine_open_config;

/* What engine_open built. Everything is owned by the stack and freed by engine_close. */
typedef struct engine_stack {
    gguf_file *file;
    tok *tok;        /* NULL without with_tok */
    chat_tmpl *tmpl; /* NULL without with_tok */
    model *model;
    engine *eng;             /* NULL without with_engine */
    char path[1024];         /* the file opened (the synthetic model's path when none was given) */
    bool synthetic;          /* the synthetic model: its text is noise */
    int n_ctx;               /* longest prompt + output a request may have */
    int n_vocab;             /* tokens the model and the tokenizer both know */
    const model_hparams *hp; /* the model's shape: arch, layers, dims */
    gguf_file *draft_file;   /* the draft model (ENGINE_SPEC_DRAFT), its tokenizer */
    tok *draft_tok;
    model *draft;
} engine_stack;

/* The defaults: engine_config_defaults, with_tok and with_engine true, everything else 0. */
void engine_open_defaults(engine_open_config *cfg);

/* Opens cfg->model_path and builds the stack into *st. Returns 0, or a negative KL_E* code
 * with "<path>: <what is wrong>" in err and nothing left open (*st zeroed). */
int engine_open(engine_stack *st, const engine_open_config *cfg, kl_err *err);

/* Reads the LoRA adapter file at path for st's model (model/lora.h: scale times alpha / rank):
 * 0 and *out, or a negative KL_E* code with "<path>: <what is wrong>" (naming the tensor) in
 * err. Any thread: it only reads the model. Free with engine_lora_free once no request uses
 * it. */
int engine_lora_open(const engine_stack *st, const char *path, float scale, struct model_lora **out,
                     kl_err *err);
void engine_lora_free(struct model_lora *a); /* NULL is fine */

/* Stops the engine first (every request still running gets its last, aborted event), then
 * frees the rest. A zeroed or already closed stack is fine. */
void engine_close(engine_stack *st);
#endif
