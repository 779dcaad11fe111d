/* tok/chat.c: chat templates: where a model's template comes from (override, GGUF, default),
 * the load-time probe, and rendering through the Jinja interpreter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat.h"
#include "jinja/jinja.h"

#define MAX_TEMPLATE_FILE ((size_t)1 << 20) /* bytes of a Jinja file given by path */

struct chat_tmpl {
    jinja_tmpl *j;
    char *name;
    chat_tool_format tools;
    char *src; /* the Jinja source (NUL-terminated copy), for chat_tmpl_mentions */
};

static bool has(const char *src, size_t len, const char *what)
{
    return memmem(src, len, what, strlen(what)) != NULL;
}

/* A template that reads `tools` says how it wants calls written; the markers decide which. */
static chat_tool_format tool_format(const char *src, size_t len)
{
    if (!has(src, len, "tools")) return CHAT_TOOLS_NONE;
    if (has(src, len, "<tool_call>")) return CHAT_TOOLS_HERMES;
    if (has(src, len, "[TOOL_CALLS]")) return CHAT_TOOLS_MISTRAL;
    return CHAT_TOOLS_JSON;
}

/* Renders a normal conversation once. Returns 0, or the error of the render with
 * "<what>: fails on a normal conversation: ..." in err. A template that refuses a system
 * message with raise_exception is tried again without one (Mistral v0.1, Gemma 2). */
static int chat_probe(const chat_tmpl *t, kl_err *err)
{
    static const chat_msg probe[] = {
        {"system", "You are a helpful assistant."},
        {"user", "Hello!"},
        {"assistant", "Hi. How can I help?"},
        {"user", "What is 2 + 2?"},
    };
    kl_err e = {0};
    char *out = NULL;
    bool raised = false;
    jinja_input in = {.msgs = probe,
                      .n_msgs = 4,
                      .add_generation_prompt = true,
                      .bos_token = "<s>",
                      .eos_token = "</s>"};
    int rc = jinja_render(t->j, &in, NULL, &out, NULL, &raised, &e);
    if (rc == KL_EINVAL && raised) {
        in.msgs = probe + 1;
        in.n_msgs = 3;
        rc = jinja_render(t->j, &in, NULL, &out, NULL, &raised, &e);
    }
    free(out);
    if (rc)
        return kl_errf(err, rc == KL_ENOMEM ? rc : KL_EINVAL,
                       "%s: template fails on a normal conversation: %s", t->name, e.msg);
    return 0;
}

int chat_tmpl_parse(chat_tmpl **out, const char *src, size_t len, const char *what, kl_err *err)
{
    if (!what) what = "chat template";
    chat_tmpl *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(what))) {
        free(t);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", what);
    }
    t->tools = tool_format(src, len);
    if (!(t->src = malloc(len + 1))) {
        chat_tmpl_free(t);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", what);
    }
    memcpy(t->src, src, len);
    t->src[len] = 0;
    int rc = jinja_parse(&t->j, src, len, what, err);
    if (!rc) rc = chat_probe(t, err);
    if (rc) {
        chat_tmpl_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Reads a whole Jinja file (at most MAX_TEMPLATE_FILE bytes). Returns 0 with *buf malloc'd,
 * or KL_EIO / KL_ERANGE / KL_ENOMEM with "<path>: ..." in err. */
static int read_file(const char *path, char **buf, size_t *len, kl_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        char names[256] = "";
        for (int i = 0; chat_builtin_names[i]; i++) {
            if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, chat_builtin_names[i], sizeof names - strlen(names) - 1);
        }
        return kl_errf(err, KL_EIO, "%s: no such template file and not a built-in template (%s)",
                       path, names);
    }
    char *b = malloc(MAX_TEMPLATE_FILE + 1);
    if (!b) {
        fclose(fp);
        return kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(b, 1, MAX_TEMPLATE_FILE + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(b);
        return kl_errf(err, KL_EIO, "%s: read error", path);
    }
    if (n > MAX_TEMPLATE_FILE) {
        free(b);
        return kl_errf(err, KL_ERANGE, "%s: template larger than %zu bytes", path,
                       MAX_TEMPLATE_FILE);
    }
    *buf = b;
    *len = n;
    return 0;
}

int chat_tmpl_for_model(chat_tmpl **out, const gguf_file *f, const char *override, kl_err *err)
{
    char what[600];
    if (override && *override) {
        const char *src = chat_builtin_find(override);
        if (src) {
            snprintf(what, sizeof what, "builtin:%s", override);
            return chat_tmpl_parse(out, src, strlen(src), what, err);
        }
        char *buf;
        size_t len;
        int rc = read_file(override, &buf, &len, err);
        if (rc) return rc;
        rc = chat_tmpl_parse(out, buf, len, override, err);
        free(buf);
        return rc;
    }
    if (f) {
        const char *src;
        int rc = gguf_get_str(f, "tokenizer.chat_template", &src, err);
        if (rc == 0) {
            snprintf(what, sizeof what, "%s: tokenizer.chat_template", gguf_path(f));
            return chat_tmpl_parse(out, src, strlen(src), what, err);
        }
        if (rc != KL_ENOTFOUND) return rc;
    }
    const char *src = chat_builtin_find("chatml");
    return chat_tmpl_parse(out, src, strlen(src), "builtin:chatml", err);
}

void chat_tmpl_free(chat_tmpl *t)
{
    if (!t) return;
    jinja_free(t->j);
    free(t->name);
    free(t->src);
    free(t);
}

chat_tool_format chat_tmpl_tool_format(const chat_tmpl *t)
{
    return t->tools;
}

bool chat_tmpl_mentions(const chat_tmpl *t, const char *text)
{
    return t && t->src && strstr(t->src, text) != NULL;
}

const char *chat_tmpl_name(const chat_tmpl *t)
{
    return t->name;
}

int chat_render_ex(const chat_tmpl *t, const chat_msg *msgs, int n, bool add_generation_prompt,
                   const char *bos_token, const char *eos_token, const json_t *vars, char **out,
                   kl_err *err)
{
    if (n < 0 || (n > 0 && !msgs)) return kl_errf(err, KL_EINVAL, "chat: bad message list");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role) return kl_errf(err, KL_EINVAL, "chat: message %d has no role", i);
    if (vars && !json_is_object(vars))
        return kl_errf(err, KL_EINVAL, "chat: template variables must be a JSON object");
    jinja_input in = {.msgs = msgs,
                      .n_msgs = n,
                      .add_generation_prompt = add_generation_prompt,
                      .bos_token = bos_token,
                      .eos_token = eos_token,
                      .vars = vars};
    return jinja_render(t->j, &in, NULL, out, NULL, NULL, err);
}

int chat_render(const chat_tmpl *t, const chat_msg *msgs, int n, bool add_generation_prompt,
                const char *bos_token, const char *eos_token, char **out, kl_err *err)
{
    return chat_render_ex(t, msgs, n, add_generation_prompt, bos_token, eos_token, NULL, out, err);
}
