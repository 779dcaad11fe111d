/* tests/unit/tok_chat.c: each family's chat template renders a conversation with a system
 * prompt (system, user, assistant, user; add_generation_prompt) exactly as the model's
 * documented prompt format; templates from the shared vocab GGUFs; override and errors. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "t.h"
#include "tok/chat.h"

static const chat_msg conv[] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi there. How can I help?"},
    {"user", "What is the capital of France?"},
};

/* Renders conv[from..4) with builtin `name`; returns the malloc'd prompt (asserts success). */
static char *render_builtin(const char *name, int from, const char *bos, const char *eos)
{
    kl_err err = {0};
    chat_tmpl *t = NULL;
    int rc = chat_tmpl_for_model(&t, NULL, name, &err);
    if (rc) t_fail(__FILE__, __LINE__, "load %s: %s", name, err.msg);
    char *out = NULL;
    rc = chat_render(t, conv + from, 4 - from, true, bos, eos, &out, &err);
    if (rc) t_fail(__FILE__, __LINE__, "render %s: %s", name, err.msg);
    chat_tmpl_free(t);
    return out;
}

TEST(tok_chat_llama2)
{
    char *p = render_builtin("llama2", 0, "<s>", "</s>");
    T_STREQ(p, "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST]"
               " Hi there. How can I help? </s><s>[INST] What is the capital of France? [/INST]");
    free(p);
}

#define L3_USER1 "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
#define L3_ASSIST                                                                                  \
    "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
#define L3_USER2                                                                                   \
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
#define L3_GEN "<|start_header_id|>assistant<|end_header_id|>\n\n"

TEST(tok_chat_llama3)
{
    char *p = render_builtin("llama3", 0, "<|begin_of_text|>", "<|eot_id|>");
    T_STREQ(p, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "You are a helpful assistant.<|eot_id|>" L3_USER1 L3_ASSIST L3_USER2 L3_GEN);
    free(p);
}

TEST(tok_chat_llama3_1)
{
    char *p = render_builtin("llama3.1", 0, "<|begin_of_text|>", "<|eot_id|>");
    T_STREQ(p, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
               "You are a helpful assistant.<|eot_id|>" L3_USER1 L3_ASSIST L3_USER2 L3_GEN);
    free(p);
}

TEST(tok_chat_llama3_2_date)
{
    char before[64], after[64], want1[512], want2[512];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(before, sizeof before, "%d %b %Y", &tm);
    char *p = render_builtin("llama3.2", 0, "<|begin_of_text|>", "<|eot_id|>");
    now = time(NULL);
    localtime_r(&now, &tm);
    strftime(after, sizeof after, "%d %b %Y", &tm);
#define L32_HEAD                                                                                   \
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"                              \
    "Cutting Knowledge Date: December 2023\nToday Date: %s\n\n"                                    \
    "You are a helpful assistant.<|eot_id|>"
    snprintf(want1, sizeof want1, L32_HEAD, before);
    snprintf(want2, sizeof want2, L32_HEAD, after);
    T_ASSERT(!strncmp(p, want1, strlen(want1)) || !strncmp(p, want2, strlen(want2)));
    const char *rest = p + strlen(want1);
    T_STREQ(rest, L3_USER1 L3_ASSIST L3_USER2 L3_GEN);
    free(p);
}

TEST(tok_chat_llama3_1_tools)
{
    /* the tools preamble: tools go into the first user message as indented JSON */
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "llama3.1", &err), 0);
    json_t *vars = json_loads("{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
                              "\"get_weather\", \"parameters\": {\"city\": \"string\"}}}],"
                              "\"date_string\": \"01 Jan 2025\"}",
                              0, NULL);
    T_ASSERT(vars);
    char *p = NULL;
    T_EQ(chat_render_ex(t, conv, 4, true, "<|begin_of_text|>", "<|eot_id|>", vars, &p, &err), 0);
    T_STREQ(p, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Environment: ipython\nCutting Knowledge Date: December 2023\n"
               "Today Date: 01 Jan 2025\n\nYou are a helpful assistant.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n"
               "Given the following functions, please respond with a JSON for a function call "
               "with its proper arguments that best answers the given prompt.\n\n"
               "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
               "argument name and its value}.Do not use variables.\n\n"
               "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": "
               "\"get_weather\",\n        \"parameters\": {\n            \"city\": \"string\"\n"
               "        }\n    }\n}\n\nHello!<|eot_id|>" L3_ASSIST L3_USER2 L3_GEN);
    free(p);
    json_decref(vars);
    chat_tmpl_free(t);
}

#define CHATML_TAIL                                                                                \
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi there. How can I help?"         \
    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"                     \
    "<|im_start|>assistant\n"
#define CHATML_ALL "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" CHATML_TAIL

TEST(tok_chat_chatml_qwen)
{
    static const char *const names[] = {"chatml", "qwen2.5", "qwen3"};
    for (int i = 0; i < 3; i++) {
        char *p = render_builtin(names[i], 0, "", "<|im_end|>");
        T_STREQ(p, CHATML_ALL);
        free(p);
    }
    /* Qwen 2.5 adds its default system prompt when there is none */
    char *p = render_builtin("qwen2.5", 1, "", "<|im_end|>");
    T_STREQ(p, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n" CHATML_TAIL);
    free(p);
}

TEST(tok_chat_qwen3_thinking)
{
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "qwen3", &err), 0);
    /* reasoning in an earlier assistant turn is dropped; in the turn after the last user
     * query it is kept in a <think> block */
    const chat_msg m[] = {
        {"user", "2+2?"},
        {"assistant", "<think>\nadd them\n</think>\n\n4"},
        {"user", "and 3+3?"},
        {"assistant", "<think>\nagain\n</think>\n\n6"},
    };
    char *p = NULL;
    T_EQ(chat_render(t, m, 4, false, "", "<|im_end|>", &p, &err), 0);
    T_STREQ(p, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
               "<|im_start|>user\nand 3+3?<|im_end|>\n"
               "<|im_start|>assistant\n<think>\nagain\n</think>\n\n6<|im_end|>\n");
    free(p);
    json_t *vars = json_pack("{s:b}", "enable_thinking", 0);
    T_EQ(chat_render_ex(t, m, 1, true, "", "<|im_end|>", vars, &p, &err), 0);
    T_STREQ(p, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    free(p);
    json_decref(vars);
    chat_tmpl_free(t);
}

TEST(tok_chat_mistral)
{
    /* v0.3: the system prompt joins the last user message */
    char *p = render_builtin("mistral", 0, "<s>", "</s>");
    T_STREQ(p, "<s>[INST] Hello![/INST] Hi there. How can I help?</s>"
               "[INST] You are a helpful assistant.\n\nWhat is the capital of France?[/INST]");
    free(p);
    p = render_builtin("mistral-v0.1", 1, "<s>", "</s>");
    T_STREQ(p, "<s>[INST] Hello! [/INST]Hi there. How can I help?</s>"
               "[INST] What is the capital of France? [/INST]");
    free(p);
}

TEST(tok_chat_mistral_raise)
{
    /* v0.1 refuses a system message through raise_exception: KL_EINVAL with its message */
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "mistral-v0.1", &err), 0);
    char *p = NULL;
    T_EQ(chat_render(t, conv, 4, true, "<s>", "</s>", &p, &err), KL_EINVAL);
    T_ASSERT(p == NULL);
    T_STREQ(err.msg, "Conversation roles must alternate user/assistant/user/assistant/...");
    /* two user turns in a row */
    const chat_msg m[] = {{"user", "a"}, {"user", "b"}};
    T_EQ(chat_render(t, m, 2, true, "<s>", "</s>", &p, &err), KL_EINVAL);
    T_STREQ(err.msg, "Conversation roles must alternate user/assistant/user/assistant/...");
    chat_tmpl_free(t);
    T_EQ(chat_tmpl_for_model(&t, NULL, "mistral", &err), 0);
    T_EQ(chat_render(t, m, 2, true, "<s>", "</s>", &p, &err), KL_EINVAL);
    T_CONTAINS(err.msg, "conversation roles must alternate");
    chat_tmpl_free(t);
}

TEST(tok_chat_phi3)
{
    char *p = render_builtin("phi3", 0, "<s>", "<|endoftext|>");
    T_STREQ(p, "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n"
               "<|assistant|>\nHi there. How can I help?<|end|>\n"
               "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n");
    free(p);
}

TEST(tok_chat_gemma)
{
    char *p = render_builtin("gemma", 0, "<bos>", "<eos>");
    T_STREQ(p, "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n"
               "<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n"
               "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
               "<start_of_turn>model\n");
    free(p);
    p = render_builtin("gemma2", 1, "<bos>", "<eos>");
    T_STREQ(p, "<bos><start_of_turn>user\nHello!<end_of_turn>\n"
               "<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n"
               "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
               "<start_of_turn>model\n");
    free(p);
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "gemma2", &err), 0);
    T_EQ(chat_render(t, conv, 4, true, "<bos>", "<eos>", &p, &err), KL_EINVAL);
    T_STREQ(err.msg, "System role not supported");
    chat_tmpl_free(t);
}

TEST(tok_chat_no_generation_prompt)
{
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "phi3", &err), 0);
    char *p = NULL;
    T_EQ(chat_render(t, conv + 1, 2, false, "<s>", "<|endoftext|>", &p, &err), 0);
    T_STREQ(p, "<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I help?<|end|>\n"
               "<|endoftext|>");
    free(p);
    chat_tmpl_free(t);
}

/* The templates the shared vocab GGUFs carry. */
static char *render_gguf(const char *rel, const char *bos, const char *eos)
{
    const char *path = t_shared(rel);
    kl_err err = {0};
    gguf_file *f = NULL;
    if (gguf_open(&f, path, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
    T_ASSERT(gguf_find_kv(f, "tokenizer.chat_template") != NULL);
    chat_tmpl *t = NULL;
    if (chat_tmpl_for_model(&t, f, NULL, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
    T_CONTAINS(chat_tmpl_name(t), "tokenizer.chat_template");
    char *out = NULL;
    if (chat_render(t, conv, 4, true, bos, eos, &out, &err))
        t_fail(__FILE__, __LINE__, "%s", err.msg);
    chat_tmpl_free(t);
    gguf_close(f);
    return out;
}

TEST(tok_chat_gguf_llama3)
{
    static const char *const v[] = {"vocab/ggml-vocab-llama3.gguf",
                                    "vocab/ggml-vocab-llama-bpe.gguf"};
    for (int i = 0; i < 2; i++) {
        char *p = render_gguf(v[i], "<|begin_of_text|>", "<|eot_id|>");
        T_STREQ(p, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                   "You are a helpful assistant.<|eot_id|>" L3_USER1 L3_ASSIST L3_USER2 L3_GEN);
        free(p);
    }
}

TEST(tok_chat_gguf_qwen)
{
    static const char *const v[] = {"vocab/ggml-vocab-qwen2.gguf", "vocab/ggml-vocab-qwen3.gguf"};
    for (int i = 0; i < 2; i++) {
        char *p = render_gguf(v[i], "", "<|im_end|>");
        T_STREQ(p, CHATML_ALL);
        free(p);
    }
}

TEST(tok_chat_gguf_phi3)
{
    /* Phi-3-mini's first template ignores system messages */
    char *p = render_gguf("vocab/ggml-vocab-phi-3.gguf", "<s>", "<|endoftext|>");
    T_STREQ(p, "<s><|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I help?<|end|>\n"
               "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n");
    free(p);
}

TEST(tok_chat_gguf_default_chatml)
{
    const char *path = t_shared("vocab/ggml-vocab-gpt-2.gguf");
    kl_err err = {0};
    gguf_file *f = NULL;
    T_EQ(gguf_open(&f, path, &err), 0);
    T_ASSERT(gguf_find_kv(f, "tokenizer.chat_template") == NULL);
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, f, NULL, &err), 0);
    T_STREQ(chat_tmpl_name(t), "builtin:chatml");
    char *p = NULL;
    T_EQ(chat_render(t, conv, 4, true, "", "", &p, &err), 0);
    T_STREQ(p, CHATML_ALL);
    free(p);
    chat_tmpl_free(t);
    /* an override wins over the file's own template */
    T_EQ(chat_tmpl_for_model(&t, f, "llama2", &err), 0);
    T_STREQ(chat_tmpl_name(t), "builtin:llama2");
    chat_tmpl_free(t);
    gguf_close(f);
}

TEST(tok_chat_override_file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/t.jinja", t_tmpdir());
    FILE *fp = fopen(path, "w");
    T_ASSERT(fp);
    fputs("{%- for m in messages -%}\n[{{ m.role | upper }}] {{ m.content }}\n{% endfor -%}\n"
          "{%- if add_generation_prompt %}[ASSISTANT] {% endif %}",
          fp);
    fclose(fp);
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, path, &err), 0);
    char *p = NULL;
    T_EQ(chat_render(t, conv + 1, 1, true, "", "", &p, &err), 0);
    T_STREQ(p, "[USER] Hello!\n[ASSISTANT] ");
    free(p);
    chat_tmpl_free(t);
    /* a name that is neither a builtin nor a file */
    T_EQ(chat_tmpl_for_model(&t, NULL, "no-such-template", &err), KL_EIO);
    T_CONTAINS(err.msg, "no-such-template");
    T_CONTAINS(err.msg, "chatml");
}

TEST(tok_chat_load_errors)
{
    kl_err err = {0};
    chat_tmpl *t = NULL;
    const char *unsup = "{% include 'other.jinja' %}";
    T_EQ(chat_tmpl_parse(&t, unsup, strlen(unsup), "x.jinja", &err), KL_EUNSUP);
    T_CONTAINS(err.msg, "x.jinja:1: unsupported tag 'include'");
    const char *unclosed = "{% for m in messages %}\n{{ m.content }}\n";
    T_EQ(chat_tmpl_parse(&t, unclosed, strlen(unclosed), "x", &err), KL_EINVAL);
    T_CONTAINS(err.msg, "x:1: unclosed 'for'");
    /* parses, but fails on every conversation: an error at load, not at request time */
    const char *bad = "{% for m in messages %}{{ m.content + 1 }}{% endfor %}";
    T_EQ(chat_tmpl_parse(&t, bad, strlen(bad), "x", &err), KL_EINVAL);
    T_CONTAINS(err.msg, "fails on a normal conversation");
    T_CONTAINS(err.msg, "unsupported operand");
    const char *runaway = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    T_EQ(chat_tmpl_parse(&t, runaway, strlen(runaway), "x", &err), KL_EINVAL);
    T_CONTAINS(err.msg, "recursion too deep");
    const char *raise = "{{ raise_exception('no chat here') }}";
    T_EQ(chat_tmpl_parse(&t, raise, strlen(raise), "x", &err), KL_EINVAL);
    T_CONTAINS(err.msg, "no chat here");
    T_ASSERT(t == NULL);
}

TEST(tok_chat_all_builtins_load)
{
    for (int i = 0; chat_builtin_names[i]; i++) {
        kl_err err = {0};
        chat_tmpl *t = NULL;
        int rc = chat_tmpl_for_model(&t, NULL, chat_builtin_names[i], &err);
        if (rc) t_fail(__FILE__, __LINE__, "%s: %s", chat_builtin_names[i], err.msg);
        chat_tmpl_free(t);
    }
    T_ASSERT(chat_builtin_find("nope") == NULL);
}

TEST(tok_chat_json_messages_tool_calls)
{
    /* full OpenAI messages through vars: Qwen 2.5 renders the tool call and its result */
    kl_err err = {0};
    chat_tmpl *t = NULL;
    T_EQ(chat_tmpl_for_model(&t, NULL, "qwen2.5", &err), 0);
    json_t *vars = json_loads(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
        "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\","
        "\"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
        "{\"role\": \"tool\", \"content\": \"sunny\"}]}",
        0, NULL);
    T_ASSERT(vars);
    char *p = NULL;
    T_EQ(chat_render_ex(t, NULL, 0, true, "", "<|im_end|>", vars, &p, &err), 0);
    T_STREQ(p, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
               "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
               "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
               "sunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
    free(p);
    json_decref(vars);
    chat_tmpl_free(t);
}
