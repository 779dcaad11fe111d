/* cli/cmd_run.c: `kiln run -m FILE -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
 * [--seed S] [-t N] [--chat] [--print-ids]`: one request through the engine, the
 * continuation printed to stdout as it is generated (or its ids with --print-ids), prompt
 * and generation speed on stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "model/lora.h"
#include "engine/engine.h"
#include "tok/chat.h"

typedef struct run_state {
    bool print_ids;
    int n_ids;
    double t_submit, t_first, t_last;
    int n_gen, n_prompt;
    int drafted, accepted; /* speculation, from the last event */
    engine_finish finish;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} run_state;

static void on_event(void *ctx, const engine_event *ev)
{
    run_state *st = ctx;
    if (ev->token >= 0) {
        double now = kl_now_s();
        if (!st->n_gen++) st->t_first = now;
        st->t_last = now;
        if (st->print_ids) printf(st->n_ids++ ? " %d" : "%d", ev->token);
    }
    if (!st->print_ids && ev->text_len) fwrite(ev->text, 1, ev->text_len, stdout);
    fflush(stdout);
    if (ev->finish != ENGINE_RUNNING) st->finish = ev->finish;
    if (ev->last) {
        st->drafted = ev->spec_draft_tokens;
        st->accepted = ev->spec_accepted_tokens;
        pthread_mutex_lock(&st->mu);
        st->done = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
}

enum { O_TEMP = CLI_LONG, O_TOP_K, O_TOP_P, O_SEED, O_CTX, O_CHAT, O_PRINT_IDS, O_LORA, O_SPEC };

static const cli_opt opts[] = {
    {'m', "model", "FILE", "the GGUF model (required)"},
    {'p', "prompt", "TEXT", "the prompt (required)"},
    {'n', NULL, "N", "tokens to generate at most (default 128)"},
    {O_TEMP, "temp", "T", "sampling temperature; 0 is greedy (default 0.8)"},
    {O_TOP_K, "top-k", "K", "sample among the K most likely tokens; 0: all of them (default 40)"},
    {O_TOP_P, "top-p", "P",
     "sample among the most likely tokens whose probabilities add up to P (default 0.95)"},
    {O_SEED, "seed", "S", "random seed (default: a different one each run)"},
    {'t', "threads", "N", "compute threads (default 2)"},
    {O_CTX, "ctx", "N", "context length (default: the model's)"},
    {O_CHAT, "chat", NULL,
     "render the prompt through the model's chat template, as one user message"},
    {O_PRINT_IDS, "print-ids", NULL, "print the generated token ids instead of the text"},
    {O_LORA, "lora", "FILE", "generate with this LoRA adapter on the model (GGUF, as llama.cpp's)"},
    {O_SPEC, "spec", "KIND[:k=N,...]",
     "speculative decoding: ngram (prompt lookup; n=MAX, min=MIN) or off; k=N draft tokens at "
     "most, fixed: always k (default off)"},
    {0},
};

static const cli_cmd cmd = {
    "run", "-m FILE -p PROMPT [options]",
    "Generates a continuation of PROMPT with one request through the engine and prints it to\n"
    "stdout as it is generated; the prompt and generation speed go to stderr.\n",
    opts, NULL};

/* The prompt's token ids (malloc'd), rendered through the model's chat template when chat.
 * NULL after printing an error. */
static int32_t *prompt_ids(const engine_stack *st, const char *prompt, bool chat, int *n)
{
    char *text = NULL;
    const tok *tk = st->tok;
    unsigned flags = tok_wants_bos(tk) ? TOK_ADD_BOS : 0;
    if (chat) {
        kl_err err;
        chat_msg msg = {"user", prompt};
        int32_t bos = tok_bos(tk), eos = tok_eos(tk);
        if (chat_render(st->tmpl, &msg, 1, true, bos >= 0 ? tok_text(tk, bos) : "",
                        eos >= 0 ? tok_text(tk, eos) : "", &text, &err)) {
            cli_fail(&err);
            return NULL;
        }
        prompt = text;
        flags = TOK_PARSE_SPECIAL; /* the template writes BOS itself where it wants one */
    }
    int64_t cnt = tok_encode(tk, prompt, strlen(prompt), flags, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (ids) tok_encode(tk, prompt, strlen(prompt), flags, ids, cnt);
    free(text);
    *n = (int)cnt;
    return ids;
}

int cmd_run(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL, *lora_path = NULL;
    int n = 128, threads = 2, ctx = 0, top_k = 40, chat = 0, print_ids = 0;
    float temp = 0.8f, top_p = 0.95f;
    long long seed = -1;
    engine_spec spec = {0};
    kl_err err;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&cmd, "unexpected argument '%s' (the prompt goes after -p)",
                                   val);
        case 'm':
            path = val;
            break;
        case 'p':
            prompt = val;
            break;
        case 'n':
            if (!cli_int("-n", val, 1, 1 << 20, &n)) return 1;
            break;
        case 't':
            if (!cli_int("-t", val, 1, 256, &threads)) return 1;
            break;
        case O_CTX:
            if (!cli_int("--ctx", val, 2, 1 << 20, &ctx)) return 1;
            break;
        case O_TEMP:
            if (!cli_float("--temp", val, &temp)) return 1;
            break;
        case O_TOP_K:
            if (!cli_int("--top-k", val, 0, 1 << 24, &top_k)) return 1;
            break;
        case O_TOP_P:
            if (!cli_float("--top-p", val, &top_p)) return 1;
            break;
        case O_SEED:
            seed = atoll(val);
            break;
        case O_CHAT:
            chat = 1;
            break;
        case O_PRINT_IDS:
            print_ids = 1;
            break;
        case O_LORA:
            lora_path = val;
            break;
        case O_SPEC:
            if (engine_spec_parse(&spec, val, &err)) return cli_fail(&err);
            break;
        }
    }
    if (!path || !prompt) return cli_usage_error(&cmd, "-m FILE and -p PROMPT are required");
    model_opts mo = {.max_batch_tokens = 256,
                     .max_logits = spec.kind ? 1 + ENGINE_SPEC_MAX_K : 4, /* drafts' rows */
                     .max_ctx = ctx,
                     .n_workers = threads};
    engine_config ec;
    engine_config_defaults(&ec);
    ec.n_threads = threads;
    ec.max_seqs = 1;
    ec.spec = spec;
    engine_stack L;
    if (cli_open(&L, path, &mo, true, &ec)) return 1;
    engine *e = L.eng;
    int rc = 0, n_prompt = 0;
    model_lora *lora = NULL;
    int32_t *ids = NULL;
    if (!engine_generates(e)) {
        fprintf(stderr,
                "kiln: %s: an embedding model (%s) cannot generate text; serve it (kiln serve) "
                "and ask /v1/embeddings for its vectors\n",
                path, model_hparams_of(L.model)->arch);
        rc = 1;
        goto out;
    }
    if (lora_path && cli_load_lora(&L, lora_path, 1.f, &lora)) {
        rc = 1;
        goto out;
    }
    ids = prompt_ids(&L, prompt, chat, &n_prompt);
    if (!ids) {
        rc = 1;
        goto out;
    }
    run_state st = {.print_ids = print_ids, .n_prompt = n_prompt};
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    engine_request r = {.prompt = ids,
                        .n_prompt = n_prompt,
                        .n = 1,
                        .lora = lora,
                        .on_event = on_event,
                        .ctx = &st};
    engine_sampling_defaults(&r.sp);
    r.sp.temperature = temp;
    r.sp.top_k = top_k;
    r.sp.top_p = top_p;
    r.sp.max_tokens = n;
    if (seed >= 0) r.sp.seed = (uint64_t)seed;
    uint64_t id;
    st.t_submit = kl_now_s();
    if (engine_submit(e, &r, &id, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    pthread_mutex_lock(&st.mu);
    while (!st.done)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    printf("\n");
    fflush(stdout);
    double pp = st.t_first - st.t_submit, tg = st.t_last - st.t_first;
    fprintf(stderr, "kiln: prompt %d tokens, %.2f tok/s; generated %d tokens, %.2f tok/s\n",
            n_prompt, pp > 0 ? n_prompt / pp : 0.0, st.n_gen,
            st.n_gen > 1 && tg > 0 ? (st.n_gen - 1) / tg : 0.0);
    if (spec.kind)
        fprintf(stderr, "kiln: speculation: %d draft tokens, %d accepted (%.1f%%)\n", st.drafted,
                st.accepted, st.drafted ? 100.0 * st.accepted / st.drafted : 0.0);
    if (st.finish == ENGINE_FINISH_ERROR) rc = 1;
out:
    engine_close(&L);
    model_lora_free(lora); /* after the engine: no request uses it any more */
    free(ids);
    return rc;
}
