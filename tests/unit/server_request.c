#include "t.h"

#include "gguf/gguf.h"
#include "server/request.h"

static int parse(srv_req *r, srv_kind k, const char *body, net_error *e)
{
    return srv_req_parse(r, k, body, strlen(body), 512, e);
}

TEST(server_request_completions_fields)
{
    srv_req r;
    net_error e = {0};
    const char *b = "{\"model\":\"m\",\"prompt\":\"Once\",\"max_tokens\":7,\"temperature\":0.5,"
                    "\"top_p\":0.9,\"n\":3,\"stop\":[\"a\",\"bc\"],\"seed\":42,\"logprobs\":2,"
                    "\"echo\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                    "\"top_k\":5,\"min_p\":0.1,\"repetition_penalty\":1.1,\"ignore_eos\":true,"
                    "\"priority\":3,\"cache_salt\":\"s\",\"logit_bias\":{\"7\":-100,\"9\":2.5},"
                    "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"user\":\"u\"}";
    T_EQ(parse(&r, SRV_COMPLETIONS, b, &e), 0);
    T_STREQ(r.model, "m");
    T_EQ(r.n_prompts, 1);
    T_EQ(r.prompts[0].text_len, 4);
    T_EQ(r.sp.max_tokens, 7);
    T_ASSERT(r.max_tokens_set);
    T_NEAR(r.sp.temperature, 0.5, 1e-6);
    T_NEAR(r.sp.top_p, 0.9, 1e-6);
    T_EQ(r.n, 3);
    T_EQ(r.sp.n_stop, 2);
    T_STREQ(r.sp.stop[1], "bc");
    T_EQ((int64_t)r.sp.seed, 42);
    T_EQ(r.sp.logprobs, 2);
    T_ASSERT(r.echo && r.stream && r.include_usage && r.sp.ignore_eos);
    T_EQ(r.sp.top_k, 5);
    T_EQ(r.priority, -3);
    T_ASSERT(r.cache_salt != 0);
    T_EQ(r.sp.n_logit_bias, 2);
    T_EQ(r.sp.logit_bias_ids[0], 7);
    T_NEAR(r.sp.logit_bias[0], -100, 1e-6);
    T_NEAR(r.sp.frequency_penalty, -0.5, 1e-6);
    srv_req_free(&r);
    /* token ids, lists of prompts */
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":[1,2,3]}", &e), 0);
    T_EQ(r.n_prompts, 1);
    T_EQ(r.prompts[0].n_ids, 3);
    T_EQ(r.sp.max_tokens, 16);
    T_EQ(r.sp.logprobs, -1);
    srv_req_free(&r);
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":[[1],[2,3]],\"n\":2}", &e), 0);
    T_EQ(r.n_prompts, 2);
    T_EQ(r.prompts[1].n_ids, 2);
    srv_req_free(&r);
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"max_tokens\":2.0}", &e), 0);
    T_EQ(r.n_prompts, 2);
    T_EQ(r.sp.max_tokens, 2);
    srv_req_free(&r);
}

TEST(server_request_chat_fields)
{
    srv_req r;
    net_error e = {0};
    const char *b =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]},{\"role\":\"assistant\",\"content\":null}],"
        "\"logprobs\":true,\"top_logprobs\":3,\"max_completion_tokens\":9}";
    T_EQ(parse(&r, SRV_CHAT, b, &e), 0);
    T_EQ(r.n_msgs, 3);
    T_STREQ(r.msgs[1].content, "hi there");
    T_STREQ(r.msgs[2].content, "");
    T_EQ(r.sp.logprobs, 3);
    T_EQ(r.sp.max_tokens, 9);
    srv_req_free(&r);
}

TEST(server_request_rejects_with_param)
{
    static const struct {
        srv_kind k;
        const char *body, *param;
    } bad[] = {
        {SRV_COMPLETIONS, "", ""},
        {SRV_COMPLETIONS, "{", ""},
        {SRV_COMPLETIONS, "[1]", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"prompt\":\"b\"}", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"\xff\"}", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\\u0000b\"}", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":NaN}", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":1e999}", ""},
        {SRV_COMPLETIONS, "{}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":5}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":[]}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":[1,\"a\"]}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":[512]}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":[-1]}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":[\"a\",[1]]}", "prompt"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":-0.1}", "temperature"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":2.5}", "temperature"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"top_p\":0}", "top_p"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"top_p\":1.5}", "top_p"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"n\":0}", "n"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"n\":1e9}", "n"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"n\":1.5}", "n"},
        {SRV_COMPLETIONS, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":8}", "n"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":-5}", "max_tokens"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":\"10\"}", "max_tokens"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":99999999999999999999}", ""},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"stop\":5}", "stop"},
        {SRV_COMPLETIONS,
         "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
         "stop"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}", "logit_bias"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"600\":1}}", "logit_bias"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"-1\":1}}", "logit_bias"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"1\":500}}", "logit_bias"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":[1]}", "logit_bias"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logprobs\":21}", "logprobs"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"logprobs\":true}", "logprobs"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"stream\":\"yes\"}", "stream"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}",
         "stream_options"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"model\":7}", "model"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"presence_penalty\":3}", "presence_penalty"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"best_of\":3}", "best_of"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"cache_salt\":\"\"}", "cache_salt"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"seed\":\"x\"}", "seed"},
        {SRV_CHAT, "{}", "messages"},
        {SRV_CHAT, "{\"messages\":[]}", "messages"},
        {SRV_CHAT, "{\"messages\":\"hi\"}", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
         "messages[0].content"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}",
         "top_logprobs"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}",
         "logprobs"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[]}", "tools"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
         "\"function\",\"function\":{\"name\":\"f g\"}}]}",
         "tools"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}",
         "tool_choice"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{}]}",
         "functions"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"function_call\":\"auto\"}",
         "function_call"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}}",
         "response_format"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"yaml\"}}",
         "response_format"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":[]}}}",
         "response_format"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"json_object\"},\"guided_regex\":\"a\"}",
         "guided_regex"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_object\"}}",
         "response_format"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_json\":5}", "guided_json"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_regex\":[1]}", "guided_regex"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_choice\":[]}", "guided_choice"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_choice\":[\"x\",1]}", "guided_choice"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"grammar\":{}}", "grammar"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"json_schema\":\"{}\"}", "json_schema"},
        {SRV_COMPLETIONS,
         "{\"prompt\":\"a\",\"guided_json\":{},\"grammar\":\"root ::= \\\"a\\\"\"}", "grammar"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":\"text\"}",
         "response_format"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        srv_req r;
        net_error e = {0};
        int rc = parse(&r, bad[i].k, bad[i].body, &e);
        if (rc != -1) printf("# accepted: %s\n", bad[i].body);
        T_EQ(rc, -1);
        T_EQ(e.status, 400);
        if (strcmp(e.param, bad[i].param))
            printf("# %s: param '%s' (%s)\n", bad[i].body, e.param, e.msg);
        T_STREQ(e.param, bad[i].param);
        T_ASSERT(e.msg[0] != 0);
        T_ASSERT(r.root == NULL);
    }
}

TEST(server_request_tokenize_checks_context)
{
    const char *path = t_shared("models/stories260K.gguf");
    gguf_file *f;
    tok *tk;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    T_EQ(tok_load(&tk, f, &err), 0);
    srv_req r;
    net_error e = {0};
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":\"Once upon a time\"}", &e), 0);
    T_EQ(srv_req_tokenize(&r, tk, NULL, 64, &e), 0);
    T_ASSERT(r.prompts[0].n_ids > 2);
    T_EQ(r.prompts[0].ids[0], tok_bos(tk));
    int n = r.prompts[0].n_ids;
    srv_req_free(&r);
    /* the prompt fits, the completion does not: 400 on max_tokens, no truncation */
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":\"Once upon a time\",\"max_tokens\":100}", &e), 0);
    T_EQ(srv_req_tokenize(&r, tk, NULL, 64, &e), -1);
    T_EQ(e.status, 400);
    T_STREQ(e.param, "max_tokens");
    srv_req_free(&r);
    /* a prompt over the context */
    T_EQ(parse(&r, SRV_COMPLETIONS, "{\"prompt\":\"Once upon a time\"}", &e), 0);
    T_EQ(srv_req_tokenize(&r, tk, NULL, n, &e), -1);
    T_STREQ(e.param, "prompt");
    T_CONTAINS(e.msg, "maximum context length");
    srv_req_free(&r);
    /* chat through chatml */
    chat_tmpl *tm;
    T_EQ(chat_tmpl_for_model(&tm, NULL, "chatml", &err), 0);
    T_EQ(parse(&r, SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", &e), 0);
    T_EQ(srv_req_tokenize(&r, tk, tm, 512, &e), 0);
    T_ASSERT(r.prompts[0].n_ids > 3);
    T_EQ(r.sp.max_tokens, 512 - r.prompts[0].n_ids);
    srv_req_free(&r);
    chat_tmpl_free(tm);
    tok_free(tk);
    gguf_close(f);
}

/* Where each grammar field lands: kind, source, and the parameter named in errors. */
TEST(server_request_grammar_fields)
{
    static const struct {
        srv_kind k;
        const char *body;
        gram_kind kind;
        const char *src, *param;
    } ok[] = {
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"json_object\"}}",
         GRAM_JSON_OBJECT, "", "response_format"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
         "\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"strict\":true,"
         "\"schema\":{\"type\":\"object\",\"properties\":{\"b\":{},\"a\":{}}}}}}",
         GRAM_SCHEMA, "{\"type\":\"object\",\"properties\":{\"b\":{},\"a\":{}}}",
         "response_format"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_json\":{\"type\":\"integer\"}}", GRAM_SCHEMA,
         "{\"type\":\"integer\"}", "guided_json"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_json\":\"{\\\"type\\\": \\\"null\\\"}\"}",
         GRAM_SCHEMA, "{\"type\": \"null\"}", "guided_json"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_regex\":\"[0-9]+\"}", GRAM_REGEX, "[0-9]+",
         "guided_regex"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_choice\":[\"yes\",\"no\"]}", GRAM_CHOICE,
         "[\"yes\",\"no\"]", "guided_choice"},
        {SRV_COMPLETIONS, "{\"prompt\":\"a\",\"guided_grammar\":\"root ::= \\\"a\\\"\"}", GRAM_GBNF,
         "root ::= \"a\"", "guided_grammar"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"grammar\":\"root ::= [a-z]+\"}",
         GRAM_GBNF, "root ::= [a-z]+", "grammar"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"json_schema\":{\"enum\":[1]}}",
         GRAM_SCHEMA, "{\"enum\":[1]}", "json_schema"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        srv_req r;
        net_error e = {0};
        int rc = parse(&r, ok[i].k, ok[i].body, &e);
        if (rc) printf("# %s: %s\n", ok[i].body, e.msg);
        T_EQ(rc, 0);
        T_ASSERT(r.has_grammar);
        T_EQ(r.gram_kind, ok[i].kind);
        T_STREQ(r.gram_src, ok[i].src);
        T_EQ(r.gram_len, strlen(ok[i].src));
        T_STREQ(r.gram_param, ok[i].param);
        srv_req_free(&r);
    }
    srv_req r;
    net_error e = {0};
    T_EQ(parse(&r, SRV_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
               "\"type\":\"text\"}}",
               &e),
         0);
    T_ASSERT(!r.has_grammar);
    srv_req_free(&r);
}
