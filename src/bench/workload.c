/* bench/workload.c: synthetic, shared-prefix, multi-turn and ShareGPT prompts → request
 * bodies (see workload.h). */
#include "bench/workload.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/vocab.h"

#define MAX_DATASET_ITEMS 1000000

/* Common English words that most tokenizers (SentencePiece and byte-level BPE alike) keep
 * as one token each after a space, so n words are close to n tokens. */
static const char *const words[] = {
    "the",   "of",         "and",    "to",    "in",     "is",      "for",   "that",     "with",
    "on",    "as",         "was",    "by",    "he",     "it",      "at",    "from",     "his",
    "an",    "were",       "are",    "which", "this",   "also",    "be",    "has",      "or",
    "had",   "first",      "one",    "their", "its",    "new",     "after", "but",      "who",
    "not",   "they",       "have",   "her",   "she",    "two",     "been",  "other",    "when",
    "there", "all",        "during", "into",  "school", "time",    "may",   "years",    "more",
    "most",  "only",       "over",   "city",  "some",   "world",   "would", "where",    "later",
    "up",    "such",       "used",   "many",  "can",    "state",   "about", "national", "out",
    "known", "university", "united", "then",  "made",   "between", "well",  "while",    "part",
    "day",   "home",       "water",  "house", "small",  "light",   "long",  "old",      "big",
    "good",  "cat",        "dog",    "tree",  "sun",    "day",     "play",  "happy",    "little",
};
#define N_WORDS (sizeof words / sizeof words[0])

struct kb_workload {
    const kb_config *c;
    char **prompts;    /* dataset: first human turn of each conversation */
    int *reply_tokens; /* dataset: estimated length of the first reply */
    int n;
};

const char *const *kb_word_list(int *n)
{
    *n = (int)N_WORDS;
    return words;
}

/* n words drawn from list[0..n_list) (each at most 10 bytes), joined by spaces. */
static char *draw(kl_rng *r, int n, const char *const *list, int n_list)
{
    size_t cap = (size_t)n * 12 + 1, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        const char *w = list[kl_rng_below(r, (uint64_t)n_list)];
        size_t wl = strlen(w);
        if (i) s[len++] = ' ';
        memcpy(s + len, w, wl); /* longest word is 10 bytes: fits in 12 per word */
        len += wl;
    }
    s[len] = 0;
    return s;
}

char *kb_words(kl_rng *r, int n)
{
    return draw(r, n, words, (int)N_WORDS);
}

/* n words of the workload: the server's one-token words when lengths are exact, the first
 * of them the lead word when lead (a prompt's start, whose cost the vocab measured). */
static char *words_of(const kb_config *c, kl_rng *r, int n, bool lead)
{
    if (!c->vocab || !c->vocab->exact) return kb_words(r, n);
    char *s = draw(r, n, c->vocab->units, c->vocab->n_units);
    if (s && lead && n > 0) { /* the first word becomes the lead: both are at most 10 bytes */
        size_t first = strcspn(s, " "), ll = strlen(c->vocab->lead);
        memmove(s + ll, s + first, strlen(s + first) + 1);
        memcpy(s, c->vocab->lead, ll);
    }
    return s;
}

static int load_dataset(kb_workload *w, const char *path, kl_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return kl_errf(err, KL_EBADFILE, "%s: line %d: %s", path, je.line, je.text);
    int rc = 0;
    if (!json_is_array(root)) {
        rc = kl_errf(err, KL_EBADFILE, "%s: expected a ShareGPT array of conversations", path);
        goto out;
    }
    size_t n = json_array_size(root);
    if (n > MAX_DATASET_ITEMS) n = MAX_DATASET_ITEMS;
    w->prompts = calloc(n + 1, sizeof *w->prompts);
    w->reply_tokens = calloc(n + 1, sizeof *w->reply_tokens);
    if (!w->prompts || !w->reply_tokens) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *conv = json_object_get(json_array_get(root, i), "conversations");
        const char *human = NULL, *reply = NULL;
        for (size_t k = 0; k < json_array_size(conv); k++) {
            json_t *turn = json_array_get(conv, k);
            const char *from = json_string_value(json_object_get(turn, "from"));
            const char *value = json_string_value(json_object_get(turn, "value"));
            if (!from || !value) continue;
            if (!human && !strcmp(from, "human"))
                human = value;
            else if (human && !strcmp(from, "gpt")) {
                reply = value;
                break;
            }
        }
        if (!human || !*human || !reply) continue; /* unusable conversation: skipped */
        if (!(w->prompts[w->n] = strdup(human))) {
            rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        size_t est = strlen(reply) / 4; /* ~4 bytes per token for English text */
        w->reply_tokens[w->n++] = est < 1 ? 1 : est > 4096 ? 4096 : (int)est;
    }
    if (!w->n)
        rc = kl_errf(err, KL_EBADFILE, "%s: no conversation with a human turn and a reply", path);
out:
    json_decref(root);
    return rc;
}

int kb_workload_open(kb_workload **wp, const kb_config *c, kl_err *err)
{
    *wp = NULL;
    kb_workload *w = calloc(1, sizeof *w);
    if (!w) return kl_errf(err, KL_ENOMEM, "out of memory");
    w->c = c;
    if (c->dataset) {
        int rc = load_dataset(w, c->dataset, err);
        if (rc) {
            kb_workload_close(w);
            return rc;
        }
    }
    *wp = w;
    return 0;
}

void kb_workload_close(kb_workload *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        free(w->prompts[i]);
    free(w->prompts);
    free(w->reply_tokens);
    free(w);
}

static int pick_model(const kb_config *c, kl_rng *r)
{
    if (c->n_models <= 1) return 0;
    double total = 0;
    for (int i = 0; i < c->n_models; i++)
        total += c->models[i].weight;
    double x = kl_rng_unit(r) * total;
    for (int i = 0; i < c->n_models; i++) {
        if (x < c->models[i].weight) return i;
        x -= c->models[i].weight;
    }
    return c->n_models - 1;
}

/* The user text of one synthetic turn: the group's shared prefix (first turn only), then
 * n fresh words. The prefixes depend on the epoch, so each sweep step shares its own.
 * Returns a new string or NULL. */
static char *synthetic_text(const kb_config *c, kl_rng *r, int n, bool first_turn)
{
    bool prefixed = first_turn && c->shared_prefix > 0;
    char *fresh = words_of(c, r, n, first_turn && !prefixed);
    if (!fresh || !prefixed) return fresh;
    int g = (int)kl_rng_below(r, (uint64_t)(c->groups > 0 ? c->groups : 1));
    kl_rng pr;
    kl_rng_seed_stream(&pr, c->seed ^ 0x7072656669780000ull ^ ((uint64_t)c->epoch << 32),
                       (uint64_t)g);
    char *prefix = words_of(c, &pr, c->shared_prefix, true);
    char *s = prefix ? malloc(strlen(prefix) + strlen(fresh) + 2) : NULL;
    if (s) sprintf(s, "%s %s", prefix, fresh);
    free(prefix);
    free(fresh);
    return s;
}

int kb_workload_item(const kb_workload *w, int i, char (*model)[128], kb_item *out)
{
    const kb_config *c = w->c;
    int turns = c->turns > 1 ? c->turns : 1;
    int conv = i / turns, turn = i % turns;
    kl_rng r;
    kl_rng_seed_stream(&r, c->seed, (uint64_t)conv);
    int m = pick_model(c, &r);
    json_t *body = json_object();
    json_t *msgs = json_array();
    char *text = NULL;
    int in_expected = 0, out_expected = 0;
    bool ok = body && msgs;
    /* earlier turns of the conversation, each with a synthetic reply of its asked length */
    for (int t = 0; ok && t <= turn; t++) {
        int in_len, out_len;
        free(text);
        text = NULL;
        if (w->n) {
            int k = (int)kl_rng_below(&r, (uint64_t)w->n);
            ok = (text = strdup(w->prompts[k])) != NULL;
            in_len = (int)(strlen(w->prompts[k]) / 4) + 1;
            out_len = c->output_len_given ? kb_dist_sample(&c->output_len, &r) : w->reply_tokens[k];
        } else {
            in_len = kb_dist_sample(&c->input_len, &r);
            out_len = kb_dist_sample(&c->output_len, &r);
            /* exact lengths: the words the server's own additions (BOS, the chat template)
             * leave room for, so a one-turn prompt is in_len tokens as the server counts */
            int n_words = in_len;
            if (t == 0 && turns == 1 && c->vocab && c->vocab->exact) {
                n_words = in_len - c->vocab->overhead;
                if (n_words < 1) n_words = 1;
                in_len = n_words + c->vocab->overhead;
            }
            ok = (text = synthetic_text(c, &r, n_words, t == 0)) != NULL;
            if (t == 0 && c->shared_prefix > 0) in_len += c->shared_prefix;
        }
        if (!ok) break;
        in_expected += in_len;
        json_t *u = json_pack("{s:s, s:s}", "role", "user", "content", text);
        ok = u && !json_array_append_new(msgs, u);
        if (t < turn) {
            char *reply = words_of(c, &r, out_len, false);
            json_t *a =
                reply ? json_pack("{s:s, s:s}", "role", "assistant", "content", reply) : NULL;
            free(reply);
            ok = ok && a && !json_array_append_new(msgs, a);
            in_expected += out_len;
        } else {
            out_expected = out_len;
        }
    }
    if (ok) {
        json_object_set_new(body, "model", json_string(model[m]));
        if (c->chat) {
            json_object_set(body, "messages", msgs);
        } else {
            /* completions: the turns joined as plain text */
            size_t len = 0;
            for (size_t k = 0; k < json_array_size(msgs); k++)
                len +=
                    strlen(json_string_value(json_object_get(json_array_get(msgs, k), "content"))) +
                    1;
            char *all = malloc(len + 1);
            ok = all != NULL;
            if (ok) {
                all[0] = 0;
                size_t at = 0;
                for (size_t k = 0; k < json_array_size(msgs); k++) {
                    const char *s =
                        json_string_value(json_object_get(json_array_get(msgs, k), "content"));
                    at += (size_t)sprintf(all + at, "%s%s", k ? "\n" : "", s);
                }
                json_object_set_new(body, "prompt", json_string(all));
                free(all);
            }
        }
        json_object_set_new(body, "max_tokens", json_integer(out_expected));
        json_object_set_new(body, "ignore_eos", json_true());
        json_object_set_new(body, "stream", json_true());
        json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    char *s = ok ? json_dumps(body, JSON_COMPACT) : NULL;
    free(text);
    json_decref(msgs);
    json_decref(body);
    if (!s) return KL_ENOMEM;
    out->body = s;
    out->len = strlen(s);
    out->in_expected = in_expected;
    out->out_expected = out_expected;
    out->model = m;
    return 0;
}
