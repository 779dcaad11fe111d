/* `kiln perplexity` as a user runs it, against llama.cpp's stories260K reference: every
 * prompt log-probability. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "t_gguf.h"

static __attribute__((unused)) char *shell_quote(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    buf[n++] = '\'';
    for (; *s && n + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n++] = '\'';
    buf[n] = 0;
    return buf;
}

static json_t *load_refs(void)
{
    json_t *all = json_array();
    FILE *fp = fopen(t_shared("reference/stories260K.jsonl"), "r");
    T_ASSERT(fp);
    char line[1 << 16];
    while (fgets(line, sizeof line, fp))
        json_array_append_new(all, json_loads(line, 0, NULL));
    fclose(fp);
    return all;
}

TEST(cli_perplexity_reproduces_reference_logprobs)
{
    char model[4096];
    snprintf(model, sizeof model, "%s", t_shared("models/stories260K.gguf"));
    json_t *refs = load_refs();
    size_t i;
    json_t *ref;
    json_array_foreach(refs, i, ref)
    {
        const char *prompt = json_string_value(json_object_get(ref, "prompt"));
        if (!*prompt) continue; /* BOS alone predicts nothing */
        char path[4096], cmd[16384];
        snprintf(path, sizeof path, "%s/p.txt", t_tmpdir());
        FILE *f = fopen(path, "w");
        fputs(prompt, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s perplexity -m %s -f %s --per-token", t_kiln(), model, path);
        char *out = NULL, *err = NULL;
        T_EQ(t_run(cmd, &out, &err), 0);
        json_t *ids = json_object_get(ref, "prompt_ids"),
               *lps = json_object_get(ref, "prompt_logprobs");
        char *line = out;
        for (size_t k = 0; k + 1 < json_array_size(ids); k++) {
            int idx, tokn;
            double lp;
            T_EQ(sscanf(line, "%d %d %lf", &idx, &tokn, &lp), 3);
            T_EQ(idx, (int)k + 1);
            T_EQ(tokn, json_integer_value(json_array_get(ids, k + 1)));
            T_NEAR(lp, json_real_value(json_array_get(lps, k)), 2e-4);
            line = strchr(line, '\n') + 1;
        }
        double ppl;
        T_EQ(sscanf(line, "ppl = %lf", &ppl), 1);
        T_NEAR(ppl, json_real_value(json_object_get(ref, "prompt_ppl")), 1e-3);
        free(out), free(err);
    }
    json_decref(refs);
}

/* The text is scored as the vocab tokenizes it: with BOS only when tokenizer.ggml.add_bos_token
 * says so (Qwen's vocabs say false; llama.cpp then scores the text alone). It always added
 * BOS, scoring a different sequence. */
TEST(cli_perplexity_honours_add_bos_token)
{
    const char *nobos = t_tmp("nobos.gguf");
    t_kv kv = {"tokenizer.ggml.add_bos_token", 'b', NULL, 0};
    t_gguf_copy(t_shared("models/stories260K.gguf"), nobos, &kv, 1, NULL);
    const char *text = t_tmp("t.txt");
    FILE *f = fopen(text, "w");
    fputs("Once upon a time", f);
    fclose(f);
    const char *models[2] = {t_shared("models/stories260K.gguf"), nobos};
    for (int k = 0; k < 2; k++) {
        char cmd[16384], *out = NULL, *err = NULL, *ids = NULL;
        snprintf(cmd, sizeof cmd, "%s tokenize -m %s < %s", t_kiln(), models[k], text);
        T_EQ(t_run(cmd, &ids, &err), 0);
        free(err);
        int tok[16], n = 0, used;
        for (const char *p = ids; n < 16 && sscanf(p, "%d%n", &tok[n], &used) == 1; p += used)
            n++;
        T_EQ(n, k ? 4 : 5); /* BOS first in the original file only */
        snprintf(cmd, sizeof cmd, "%s perplexity -m %s -f %s --per-token", t_kiln(), models[k],
                 text);
        T_EQ(t_run(cmd, &out, &err), 0);
        const char *line = out;
        for (int i = 1; i < n; i++) { /* every token after the first, as tokenize gives them */
            int idx, target;
            T_EQ(sscanf(line, "%d %d", &idx, &target), 2);
            T_EQ(idx, i);
            T_EQ(target, tok[i]);
            line = strchr(line, '\n') + 1;
        }
        T_ASSERT(!strncmp(line, "ppl = ", 6));
        free(out), free(err), free(ids);
    }
}
