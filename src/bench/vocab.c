/* bench/vocab.c: one-token words of the server's tokenizer (see vocab.h). */
#include "bench/vocab.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/dist.h"
#include "bench/probe.h"
#include "bench/workload.h"

#define N_SAMPLES 3 /* sample prompts of 16, 32, 48 units: their counts must differ by 16s */
#define MAX_LEADS 8 /* lead words tried */

typedef struct probe {
    struct event_base *base;
    const kb_config *c;
    const char *model;
    int status; /* of the last answer that was not a count */
} probe;

/* Tokens the server counts for text: as a prompt without special tokens (raw), or as the run
 * will send it (a completions prompt with BOS, or one chat user message). -1 when there is
 * no count in the answer. */
static int count(probe *p, const char *text, bool raw)
{
    json_t *req = json_pack("{s:s}", "model", p->model);
    if (raw || !p->c->chat) {
        json_object_set_new(req, "prompt", json_string(text));
        json_object_set_new(req, "add_special_tokens", json_boolean(!raw));
    } else {
        json_object_set_new(req, "messages",
                            json_pack("[{s:s, s:s}]", "role", "user", "content", text));
    }
    char *body = json_dumps(req, JSON_COMPACT), *answer = NULL;
    json_decref(req);
    int status =
        body ? kb_http_post(p->base, &p->c->target[0], p->c->api_key, "/tokenize", body, &answer)
             : 0;
    free(body);
    json_t *j = status == 200 && answer ? json_loads(answer, 0, NULL) : NULL;
    free(answer);
    json_t *n = json_object_get(j, "count"), *ids = json_object_get(j, "tokens");
    int rc = json_is_integer(n)   ? (int)json_integer_value(n)
             : json_is_array(ids) ? (int)json_array_size(ids)
                                  : -1;
    json_decref(j);
    if (rc < 0) p->status = status;
    return rc;
}

/* lead, then n - 1 units drawn from the fixed stream r, joined by spaces (caller frees; NULL
 * on OOM). */
static char *sample(const kb_vocab *v, const char *lead, kl_rng *r, int n)
{
    char *s = malloc((size_t)n * 12 + 1);
    size_t len = 0;
    for (int i = 0; s && i < n; i++)
        len += (size_t)sprintf(s + len, "%s%s", i ? " " : "",
                               i ? v->units[kl_rng_below(r, (uint64_t)v->n_units)] : lead);
    if (s) s[len] = 0;
    return s;
}

/* The tokens the server adds to a prompt of n units that starts with lead, the same at every
 * length; -1 if the counts do not add up (a word that merges with its neighbours, or one the
 * template's last character merges with). */
static int overhead_with(probe *p, const kb_vocab *v, const char *lead, int counts[N_SAMPLES])
{
    kl_rng r;
    kl_rng_seed_stream(&r, 0x766f636162ull, 1);
    int over = -1;
    for (int k = 0; k < N_SAMPLES; k++) {
        char *s = sample(v, lead, &r, 16 * (k + 1));
        counts[k] = s ? count(p, s, false) : -1;
        free(s);
        int o = counts[k] - 16 * (k + 1);
        if (counts[k] < 0 || o < 0 || (k && o != over)) return -1;
        over = o;
    }
    return over;
}

void kb_vocab_probe(kb_vocab *v, const kb_config *c)
{
    memset(v, 0, sizeof *v);
    char model[128];
    probe p = {.base = event_base_new(), .c = c, .model = model};
    if (!p.base) {
        snprintf(v->note, sizeof v->note, "out of memory");
        return;
    }
    snprintf(model, sizeof model, "%s", c->models[0].name);
    if (!model[0] && kb_probe_model(p.base, &c->target[0], c->api_key, model, sizeof model))
        snprintf(model, sizeof model, "default");
    int anchor = count(&p, "the", true);
    if (anchor < 0) {
        char got[32] = "no answer";
        if (p.status) snprintf(got, sizeof got, "status %d", p.status);
        snprintf(v->note, sizeof v->note, "%.200s: POST /tokenize gave no token count (%s)",
                 c->target[0].url, got);
        goto out;
    }
    /* the words a token each after a space; letters only if the words are too few */
    int n_words;
    const char *const *words = kb_word_list(&n_words);
    static const char *const letters[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i",
                                          "j", "k", "l", "m", "n", "o", "p", "q", "r",
                                          "s", "t", "u", "v", "w", "x", "y", "z"};
    bool with_letters = false;
    for (int pass = 0; pass < 2 && v->n_units < KB_VOCAB_MIN; pass++) {
        with_letters = pass == 1;
        const char *const *cand = pass ? letters : words;
        int n = pass ? (int)(sizeof letters / sizeof letters[0]) : n_words;
        for (int i = 0; i < n && v->n_units < KB_VOCAB_MAX; i++) {
            char text[64];
            snprintf(text, sizeof text, "the %s", cand[i]);
            bool dup = false;
            for (int k = 0; k < v->n_units; k++)
                dup |= !strcmp(v->units[k], cand[i]);
            if (!dup && count(&p, text, true) == anchor + 1) v->units[v->n_units++] = cand[i];
        }
    }
    if (v->n_units < KB_VOCAB_MIN) {
        snprintf(v->note, sizeof v->note,
                 "%.200s: only %d of the words are one token on this tokenizer", c->target[0].url,
                 v->n_units);
        goto out;
    }
    /* n units must be n tokens plus a constant. Every prompt starts with the same lead word:
     * a word at the very start (after BOS, or after the chat template's "user\n") may take
     * more tokens than after a space, so it is one fixed cost, measured */
    int counts[N_SAMPLES] = {0}, over = -1;
    for (int i = 0; i < v->n_units && i < MAX_LEADS && over < 0; i++) {
        v->lead = v->units[i];
        over = overhead_with(&p, v, v->lead, counts);
    }
    if (over < 0) {
        snprintf(v->note, sizeof v->note,
                 "%.160s: 16, 32 and 48 one-token words counted %d, %d and %d tokens: not additive",
                 c->target[0].url, counts[0], counts[1], counts[2]);
        goto out;
    }
    v->overhead = over;
    v->exact = true;
    snprintf(v->note, sizeof v->note,
             "%d one-token %s of the server's tokenizer (POST /tokenize), %d token%s added to "
             "each prompt (%s)",
             v->n_units, with_letters ? "words and letters" : "words", v->overhead,
             v->overhead == 1 ? "" : "s", c->chat ? "the chat template" : "BOS and the like");
out:
    event_base_free(p.base);
}

void kb_vocab_setup(kb_config *c, kb_vocab *v)
{
    if (c->dataset || c->vocab) return;
    kb_vocab_probe(v, c);
    c->vocab = v;
    if (v->exact)
        fprintf(stderr, "kiln bench: input lengths are exact: %s\n", v->note);
    else
        fprintf(stderr,
                "kiln bench: input lengths are approximate (about one token a word; the server's "
                "usage counts): %s\n",
                v->note);
}
