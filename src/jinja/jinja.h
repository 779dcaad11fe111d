/* jinja/jinja.h: a small Jinja2 interpreter for chat templates (the subset that the chat
 * templates of Llama 2/3.x, Qwen 2.5/3, Mistral, Phi-3 and Gemma use), with the options
 * Hugging Face renders them with: trim_blocks, lstrip_blocks, loop controls.
 *
 * Every template is hostile input: parsing bounds nesting, rendering bounds output size,
 * memory, evaluation steps and recursion depth, and every failure is a clean error.
 * Supported: {{ }}, {% if/elif/else %}, {% for a[, b] in xs [if c] %} with loop.* and
 * {% else %}, {% set %} (names, namespace attributes, {% set x %}..{% endset %}), macros,
 * break/continue, {% generation %}, comments, whitespace control; literals, attribute,
 * subscript and slice access, the usual operators, and the filters, tests, methods and
 * functions listed in builtin.c. Anything else is an error at parse time. */
#ifndef KILN_JINJA_JINJA_H
#define KILN_JINJA_JINJA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>
#include "base/err.h"

/* One message of a conversation: the `messages` variable a template iterates. */
typedef struct jinja_msg {
    const char *role;    /* "system", "user", "assistant", "tool" ... */
    const char *content; /* UTF-8, NUL-terminated */
} jinja_msg;

typedef struct jinja_tmpl jinja_tmpl; /* opaque, immutable after jinja_parse */

typedef struct jinja_limits {
    size_t max_out;     /* bytes of rendered text */
    size_t max_mem;     /* bytes of values allocated during one render */
    uint64_t max_steps; /* evaluation steps (nodes plus bytes scanned / 32) */
    int max_depth;      /* evaluator recursion (expression nesting times macro calls) */
} jinja_limits;

/* The limits chat_render uses. */
extern const jinja_limits jinja_default_limits;

/* Parses src[0..len) (need not be NUL-terminated); name prefixes error messages. Returns 0
 * and sets *out, or KL_EINVAL / KL_EUNSUP with "<name>:<line>: <what>" in err and nothing
 * allocated. Bounded: nesting of blocks and expressions is capped. */
int jinja_parse(jinja_tmpl **out, const char *src, size_t len, const char *name, kl_err *err);
void jinja_free(jinja_tmpl *t); /* NULL is fine */

/* The inputs of one render. vars (a JSON object, may be NULL) adds or overrides globals,
 * e.g. "tools". now == 0 means the current time (for strftime_now). */
typedef struct jinja_input {
    const jinja_msg *msgs;
    int n_msgs;
    bool add_generation_prompt;
    const char *bos_token;
    const char *eos_token;
    const json_t *vars;
    time_t now;
} jinja_input;

/* Renders t (lim NULL: jinja_default_limits). Returns 0 with *out a malloc'd NUL-terminated
 * string (*out_len bytes; out_len may be NULL), or a negative code with the reason in err
 * and *out untouched: KL_EINVAL for a template error or raise_exception (then err holds
 * just its message and *raised, if raised is not NULL, is set), KL_ERANGE when a limit is
 * hit, KL_ENOMEM. All memory of the render is released either way. */
int jinja_render(const jinja_tmpl *t, const jinja_input *in, const jinja_limits *lim, char **out,
                 size_t *out_len, bool *raised, kl_err *err);
#endif
