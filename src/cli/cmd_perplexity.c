/* cli/cmd_perplexity.c: `kiln perplexity -m FILE -f TEXT [-c CTX] [--per-token] [-t N]`.
 * Tokenizes TEXT (with BOS when the vocab asks for one: tokenizer.ggml.add_bos_token, so
 * Qwen's text is scored without, as llama.cpp scores it), takes its first CTX tokens and runs
 * them as one sequence (in chunks of the batch size), printing the log-probability of every
 * token given the ones before it and the perplexity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "model/lora.h"

#define CHUNK     256
#define MAX_LORAS 16 /* adapters stacked at most */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) free(buf);
            buf = p;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* log-softmax of row at token, in double */
static double logprob(const float *row, int n, int token)
{
    float mx = row[0];
    for (int i = 1; i < n; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)(row[i] - mx));
    // cppcheck-suppress invalidFunctionArg ; sum >= 1: the largest logit adds exp(0)
    return (double)(row[token] - mx) - log(sum);
}

enum { O_PER_TOKEN = CLI_LONG, O_LORA, O_LORA_SCALED };

static const cli_opt opts[] = {
    {'m', "model", "FILE", "the GGUF model (required)"},
    {'f', "file", "TEXT", "the text file to score (required)"},
    {'c', "ctx", "N",
     "score the first N tokens (default: the whole text, at most the model's context)"},
    {O_PER_TOKEN, "per-token", NULL, "first print 'I TOKEN LOGPROB' for every predicted token"},
    {'t', "threads", "N", "compute threads (default 2)"},
    {O_LORA, "lora", "FILE",
     "score with this LoRA adapter on the model (GGUF, as llama.cpp's); repeatable: the "
     "adapters' updates are added in order, as llama.cpp's --lora"},
    {O_LORA_SCALED, "lora-scaled", "FILE:S", "the same with the adapter's update times S"},
    {0},
};

static const cli_cmd cmd = {
    "perplexity", "-m FILE -f TEXT [options]",
    "Tokenizes TEXT with BOS, runs its first tokens as one sequence and prints the perplexity\n"
    "(ppl = exp of the mean negative log-probability of each token given the ones before it).\n",
    opts, NULL};

/* Frees the adapters parts[0..n) and their stack (when it is not parts[0] itself). */
static void free_loras(model_lora **parts, int n, model_lora *stack)
{
    if (n > 1) model_lora_free(stack);
    for (int k = 0; k < n; k++)
        model_lora_free(parts[k]);
}

int cmd_perplexity(int argc, char **argv)
{
    const char *mpath = NULL, *text = NULL;
    const char *lora_path[MAX_LORAS];
    int lora_len[MAX_LORAS], n_lora = 0; /* lora_path[k]'s first lora_len[k] bytes */
    float lora_scale[MAX_LORAS];
    int ctx = 0, threads = 0, per_token = 0;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&cmd, "unexpected argument '%s'", val);
        case 'm':
            mpath = val;
            break;
        case 'f':
            text = val;
            break;
        case 'c':
            if (!cli_int("-c", val, 2, 1 << 20, &ctx)) return 1;
            break;
        case 't':
            if (!cli_int("-t", val, 1, 256, &threads)) return 1;
            break;
        case O_PER_TOKEN:
            per_token = 1;
            break;
        case O_LORA:
        case O_LORA_SCALED: {
            if (n_lora == MAX_LORAS) return cli_usage_error(&cmd, "at most %d adapters", MAX_LORAS);
            const char *colon = k == O_LORA ? NULL : strrchr(val, ':');
            lora_scale[n_lora] = 1.f;
            if (k == O_LORA_SCALED && !colon)
                return cli_usage_error(&cmd, "--lora-scaled: expected FILE:SCALE, got '%s'", val);
            if (k == O_LORA_SCALED && !cli_float("--lora-scaled", colon + 1, &lora_scale[n_lora]))
                return 1;
            lora_path[n_lora] = val;
            lora_len[n_lora++] = colon ? (int)(colon - val) : (int)strlen(val);
            break;
        }
        }
    }
    if (!mpath || !text) return cli_usage_error(&cmd, "-m FILE and -f TEXT are required");
    size_t len;
    char *buf = read_file(text, &len);
    if (!buf) {
        fprintf(stderr, "kiln: %s: cannot read\n", text);
        return 1;
    }
    model_opts mo = {.max_batch_tokens = CHUNK, .max_logits = CHUNK, .max_ctx = ctx};
    engine_stack L;
    if (cli_open(&L, mpath, &mo, true, NULL)) {
        free(buf);
        return 1;
    }
    model_lora *parts[MAX_LORAS] = {0}, *lora = NULL;
    for (int k = 0; k < n_lora; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%.*s", lora_len[k], lora_path[k]);
        if (cli_load_lora(&L, path, lora_scale[k], &parts[k])) {
            free(buf);
            free_loras(parts, n_lora, NULL);
            engine_close(&L);
            return 1;
        }
    }
    if (n_lora == 1) lora = parts[0];
    kl_err serr;
    if (n_lora > 1 && model_lora_stack(&lora, parts, n_lora, &serr)) {
        free(buf);
        free_loras(parts, n_lora, NULL);
        engine_close(&L);
        return cli_fail(&serr);
    }
    const model_hparams *hp = model_hparams_of(L.model);
    unsigned flags = tok_wants_bos(L.tok) ? TOK_ADD_BOS : 0;
    int64_t n = tok_encode(L.tok, buf, len, flags, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    tok_encode(L.tok, buf, len, flags, ids, n);
    free(buf);
    int limit = model_opts_of(L.model)->max_ctx;
    if (ctx < 1 || ctx > limit) ctx = limit;
    if (n < ctx) ctx = (int)n;
    int rc = 0;
    if (ctx < 2) {
        fprintf(stderr, "kiln: %s: fewer than 2 tokens to score\n", text);
        rc = 1;
        goto out;
    }
    kv_store *kv;
    kl_err err;
    /* an F16 cache, as llama.cpp's default: log-probabilities comparable to its own */
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F16,
                          (size_t)2 * (size_t)hp->n_layers *
                              (size_t)(hp->n_kv_heads * hp->head_dim) * sizeof(uint16_t) *
                              (size_t)(ctx + 16)};
    if (kv_store_create(&kv, &kc, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    int nb = kv_store_n_blocks(kv);
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        blocks[i] = i;
    model_seq sq = {blocks, nb};
    kl_workers *w = kl_workers_create(threads ? threads : 2);
    float *logits = malloc(sizeof(float) * CHUNK * (size_t)hp->n_vocab);
    int32_t pos[CHUNK], seq[CHUNK];
    bool want[CHUNK];
    double nll = 0;
    for (int at = 0; at < ctx - 1 && !rc; at += CHUNK) {
        int k = ctx - 1 - at < CHUNK ? ctx - 1 - at : CHUNK; /* the last token predicts nothing */
        for (int i = 0; i < k; i++)
            pos[i] = at + i, seq[i] = 0, want[i] = true;
        const model_lora *seq_lora[1] = {lora};
        model_batch b = {.n = k,
                         .token = ids + at,
                         .pos = pos,
                         .seq = seq,
                         .want_logits = want,
                         .n_seqs = 1,
                         .seqs = &sq,
                         .lora = seq_lora};
        if (model_forward(L.model, w, kv, &b, logits, &err)) {
            rc = cli_fail(&err);
            break;
        }
        for (int i = 0; i < k; i++) {
            int target = ids[at + i + 1];
            double lp = logprob(logits + (size_t)i * hp->n_vocab, hp->n_vocab, target);
            nll -= lp;
            if (per_token) printf("%d %d %.6f\n", at + i + 1, target, lp);
        }
    }
    if (!rc) printf("ppl = %.6f\n", exp(nll / (ctx - 1)));
    free(logits);
    free(blocks);
    kl_workers_destroy(w);
    kv_store_destroy(kv);
out:
    free(ids);
    free_loras(parts, n_lora, lora);
    engine_close(&L);
    return rc;
}
