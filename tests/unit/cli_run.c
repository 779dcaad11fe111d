/* `kiln run` as a user runs it, against llama.cpp's stories260K reference: every greedy
 * generation token for token and as text. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"

static char *shell_quote(const char *s, char *buf, size_t cap)
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

TEST(cli_run_reproduces_reference_greedy)
{
    char model[4096];
    snprintf(model, sizeof model, "%s", t_shared("models/stories260K.gguf"));
    json_t *refs = load_refs();
    size_t i;
    json_t *ref;
    json_array_foreach(refs, i, ref)
    {
        char q[1024], cmd[8192];
        snprintf(cmd, sizeof cmd, "%s run -m %s -p %s -n 100 --temp 0 --print-ids -t 2", t_kiln(),
                 model,
                 shell_quote(json_string_value(json_object_get(ref, "prompt")), q, sizeof q));
        char *out = NULL, *err = NULL;
        T_EQ(t_run(cmd, &out, &err), 0);
        T_CONTAINS(err, "tok/s");
        json_t *g = json_object_get(ref, "greedy_ids");
        char want[4096] = "";
        size_t n = 0;
        for (size_t k = 0; k < json_array_size(g); k++)
            n += (size_t)snprintf(want + n, sizeof want - n, k ? " %lld" : "%lld",
                                  (long long)json_integer_value(json_array_get(g, k)));
        T_STREQ(out, strcat(want, "\n"));
        free(out), free(err);
        /* and the text, as it streams */
        snprintf(cmd, sizeof cmd, "%s run -m %s -p %s -n 100 --temp 0", t_kiln(), model,
                 shell_quote(json_string_value(json_object_get(ref, "prompt")), q, sizeof q));
        T_EQ(t_run(cmd, &out, &err), 0);
        char wtext[4096];
        snprintf(wtext, sizeof wtext, "%s\n",
                 json_string_value(json_object_get(ref, "greedy_text")));
        T_STREQ(out, wtext);
        free(out), free(err);
    }
    json_decref(refs);
}

TEST(cli_run_rejects_bad_options)
{
    char *out = NULL, *err = NULL;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run -m /nonexistent.gguf -p hi", t_kiln());
    T_EQ(t_run(cmd, &out, &err), 1);
    T_CONTAINS(err, "kiln: /nonexistent.gguf:");
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hi -n -3", t_kiln(),
             t_shared("models/stories260K.gguf"));
    T_EQ(t_run(cmd, &out, &err), 1);
    T_CONTAINS(err, "-n");
    free(out), free(err);
}
