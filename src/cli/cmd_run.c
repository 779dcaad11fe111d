/* cli/cmd_run.c: `kiln run -m FILE -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
 * [--seed S] [-t N] [--chat] [--print-ids]`: one request through the engine, the
 * continuation printed to stdout as it is generated (or its ids with --print-ids), prompt
 * and generation speed on stderr. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "engine/engine.h"
#include "tok/chat.h"

typedef struct run_state {
    bool print_ids;
    int n_ids;
    double t_submit, t_first, t_last;
    int n_gen, n_prompt;
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
        pthread_mutex_lock(&st->mu);
        st->done = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
}

static int usage(FILE *out)
{
    fprintf(out, "usage: kiln run -m FILE -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                 "                [--seed S] [-t N] [--ctx N] [--chat] [--print-ids]\n");
    return out == stdout ? 0 : 2;
}

/* The prompt's token ids (malloc'd), rendered through the model's chat template when chat.
 * NULL after printing an error. */
static int32_t *prompt_ids(cli_loaded *L, const char *prompt, bool chat, int *n)
{
    char *text = NULL;
    unsigned flags = tok_wants_bos(L->tk) ? TOK_ADD_BOS : 0;
    if (chat) {
        chat_tmpl *t;
        kl_err err;
        if (chat_tmpl_for_model(&t, L->f, NULL, &err)) {
            cli_fail(&err);
            return NULL;
        }
        chat_msg msg = {"user", prompt};
        int32_t bos = tok_bos(L->tk), eos = tok_eos(L->tk);
        int rc = chat_render(t, &msg, 1, true, bos >= 0 ? tok_text(L->tk, bos) : "",
                             eos >= 0 ? tok_text(L->tk, eos) : "", &text, &err);
        chat_tmpl_free(t);
        if (rc) {
            cli_fail(&err);
            return NULL;
        }
        prompt = text;
        flags = TOK_PARSE_SPECIAL; /* the template writes BOS itself where it wants one */
    }
    int64_t cnt = tok_encode(L->tk, prompt, strlen(prompt), flags, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (ids) tok_encode(L->tk, prompt, strlen(prompt), flags, ids, cnt);
    free(text);
    *n = (int)cnt;
    return ids;
}

int cmd_run(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL;
    int n = 128, threads = 2, ctx = 0, top_k = 40, chat = 0, print_ids = 0;
    float temp = 0.8f, top_p = 0.95f;
    long long seed = -1;
    static const struct option opts[] = {{"temp", required_argument, NULL, 'T'},
                                         {"top-k", required_argument, NULL, 'K'},
                                         {"top-p", required_argument, NULL, 'P'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"ctx", required_argument, NULL, 'c'},
                                         {"chat", no_argument, NULL, 'C'},
                                         {"print-ids", no_argument, NULL, 'I'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:t:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            path = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'n':
            if (!cli_int("-n", optarg, 1, 1 << 20, &n)) return 1;
            break;
        case 't':
            if (!cli_int("-t", optarg, 1, 256, &threads)) return 1;
            break;
        case 'c':
            if (!cli_int("--ctx", optarg, 2, 1 << 20, &ctx)) return 1;
            break;
        case 'T':
            if (!cli_float("--temp", optarg, &temp)) return 1;
            break;
        case 'K':
            if (!cli_int("--top-k", optarg, 0, 1 << 24, &top_k)) return 1;
            break;
        case 'P':
            if (!cli_float("--top-p", optarg, &top_p)) return 1;
            break;
        case 'S':
            seed = atoll(optarg);
            break;
        case 'C':
            chat = 1;
            break;
        case 'I':
            print_ids = 1;
            break;
        case 'h':
            return usage(stdout);
        default:
            return usage(stderr);
        }
    }
    if (!path || !prompt) return usage(stderr);
    model_opts mo = {
        .max_batch_tokens = 256, .max_logits = 4, .max_ctx = ctx, .n_workers = threads};
    cli_loaded L;
    if (cli_load(&L, path, &mo, true)) return 1;
    int rc = 0, n_prompt = 0;
    int32_t *ids = prompt_ids(&L, prompt, chat, &n_prompt);
    engine *e = NULL;
    if (!ids) {
        rc = 1;
        goto out;
    }
    engine_config ec;
    engine_config_defaults(&ec);
    ec.model = L.m;
    ec.tok = L.tk;
    ec.n_threads = threads;
    ec.max_seqs = 1;
    kl_err err;
    if (engine_create(&e, &ec, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    run_state st = {.print_ids = print_ids, .n_prompt = n_prompt};
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    engine_request r = {
        .prompt = ids, .n_prompt = n_prompt, .n = 1, .on_event = on_event, .ctx = &st};
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
    if (st.finish == ENGINE_FINISH_ERROR) rc = 1;
out:
    engine_destroy(e);
    free(ids);
    cli_unload(&L);
    return rc;
}
