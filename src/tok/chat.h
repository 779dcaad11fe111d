/* tok/chat.h: chat templates. A template is the model's own Jinja template
 * (tokenizer.chat_template in its GGUF), a built-in one by family name, or a Jinja file,
 * rendered by Kiln's interpreter (jinja/jinja.h). Templates are checked when loaded: one
 * that cannot be parsed, uses unsupported features, or fails on a normal conversation is
 * an error then, not a wrong prompt at request time. Immutable after loading: any thread
 * may render. */
#ifndef KILN_TOK_CHAT_H
#define KILN_TOK_CHAT_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "base/err.h"
#include "gguf/gguf.h"
#include "jinja/jinja.h"

typedef jinja_msg chat_msg; /* role and content */

typedef struct chat_tmpl chat_tmpl; /* opaque */

/* Parses a Jinja template and renders a probe conversation (system, user, assistant, user;
 * if the template refuses a system message with raise_exception, user, assistant, user).
 * Returns 0 and sets *out, or KL_EINVAL / KL_EUNSUP with "<what>:<line>: <reason>" in err
 * and nothing allocated. */
int chat_tmpl_parse(chat_tmpl **out, const char *src, size_t len, const char *what, kl_err *err);

/* The template of a model: override if given (a built-in name, see chat_builtin_names, or
 * a path to a Jinja file), else tokenizer.chat_template of f (f may be NULL), else chatml.
 * Same results as chat_tmpl_parse, plus KL_EIO for an unreadable file. */
int chat_tmpl_for_model(chat_tmpl **out, const gguf_file *f, const char *override, kl_err *err);

void chat_tmpl_free(chat_tmpl *t); /* NULL is fine */

/* Where the template came from ("builtin:llama3", "<path>", "gguf:<path>"). */
const char *chat_tmpl_name(const chat_tmpl *t);

/* Renders msgs[0..n). Returns 0 with *out a malloc'd NUL-terminated prompt, or KL_EINVAL
 * with the template's raise_exception message (or its error) in err, KL_ERANGE when a render
 * limit is hit; *out untouched on failure. */
int chat_render(const chat_tmpl *t, const chat_msg *msgs, int n, bool add_generation_prompt,
                const char *bos_token, const char *eos_token, char **out, kl_err *err);

/* The same with extra template variables: vars is a JSON object (or NULL) whose members
 * become globals, e.g. {"tools": [...], "enable_thinking": false, "date_string": "..."}.
 * A "messages" member replaces msgs, so full OpenAI messages (tool_calls, tool_call_id,
 * reasoning_content, content parts) reach the template as they are; pass msgs NULL, n 0. */
int chat_render_ex(const chat_tmpl *t, const chat_msg *msgs, int n, bool add_generation_prompt,
                   const char *bos_token, const char *eos_token, const json_t *vars, char **out,
                   kl_err *err);

/* How a template lays out tool calls (found in its source when it is parsed). */
typedef enum chat_tool_format {
    CHAT_TOOLS_NONE,    /* the template never reads `tools`: the server's own prompt (Hermes) */
    CHAT_TOOLS_HERMES,  /* <tool_call>{"name", "arguments"}</tool_call> (Hermes, Qwen 2.5/3) */
    CHAT_TOOLS_MISTRAL, /* [TOOL_CALLS][{"name", "arguments"}, ...] */
    CHAT_TOOLS_JSON,    /* a bare {"name", "parameters"} object (Llama 3.1 / 3.2) */
} chat_tool_format;
chat_tool_format chat_tmpl_tool_format(const chat_tmpl *t);
/* True when the template's source holds text (a token it writes, such as <tool_call>). */
bool chat_tmpl_mentions(const chat_tmpl *t, const char *text);

/* ---- built-in templates (tok/chat_builtin.c) ---- */
/* The Jinja source of a built-in template, or NULL. */
const char *chat_builtin_find(const char *name);
/* NULL-terminated list of built-in names. */
extern const char *const chat_builtin_names[];
#endif
