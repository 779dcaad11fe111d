/* cli/bench_spec.c: `kiln model bench --spec KIND ...`: generation through the engine with and
 * without speculative decoding, alternated run by run on one engine (a request with spec_k -1
 * does not draft), on an input-grounded workload: each stream's prompt holds a document and
 * then its first sentence again, so a model that quotes its input continues it (a random
 * model continues whatever it repeats; its acceptance says nothing of a real model's). For
 * each batch size: decode tokens per second (wall, and per CPU-second x threads, the figure
 * that survives a shared machine), with the spread over the repeats, and the drafts' mean
 * accepted length. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/bench_spec.h"
#include "engine/open.h"

/* A document for the prompts when no file is given: plain prose with repeated names. */
static const char default_doc[] =
    "The old lighthouse stood at the end of the harbour wall. Every evening Mara climbed its "
    "ninety steps to light the lamp, and every morning she climbed them again to put it out. "
    "The fishermen said the lamp had never failed in forty years. Mara kept a logbook of the "
    "ships she saw: the Grey Heron on Mondays, the Saint Brendan on Thursdays, and once, in a "
    "storm, a tall ship with no name that did not answer her signals. When the council decided "
    "to replace the lamp with an automatic light, Mara wrote them a letter. She listed every "
    "ship in her logbook and the night it had come home safely. The council read the letter at "
    "their meeting and kept the lamp, and Mara kept climbing the ninety steps.";

typedef struct stream {
    int n;                  /* tokens received */
    double t_first, t_last; /* wall clock of the first and last token */
    double c_first;         /* process CPU seconds at the first token */
    int drafted, accepted;  /* from the last event */
    bool done;
} stream;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_event(void *ctx, const engine_event *ev)
{
    stream *s = ctx;
    double now = kl_now_s();
    pthread_mutex_lock(&mu);
    if (ev->token >= 0) {
        if (!s->n++) s->t_first = now, s->c_first = cpu_s();
        s->t_last = now;
    }
    if (ev->last) {
        s->drafted = ev->spec_draft_tokens;
        s->accepted = ev->spec_accepted_tokens;
        s->done = true;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
}

/* One run's figures. */
typedef struct run {
    double wall, cpu; /* decode tokens per second: wall clock, per CPU-second x threads */
    double mal;       /* mean accepted length: tokens per verification of drafts (1: none) */
    int drafted, accepted;
} run;

/* B streams of n tokens each (greedy, EOS ignored); spec_k -1: no drafts. Decode window: from
 * the moment every stream has its first token to the last token. */
static int run_once(engine *e, const int32_t *doc, int n_doc, int quote, int B, int n, int spec_k,
                    int threads, run *out, kl_err *err)
{
    stream *st = calloc((size_t)B, sizeof *st);
    int32_t *p = malloc(sizeof(int32_t) * (size_t)(n_doc + quote + 1));
    if (!st || !p) {
        free(st), free(p);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    engine_stats s0, s1;
    engine_stats_get(e, &s0);
    int rc = 0;
    for (int b = 0; b < B && !rc; b++) {
        /* stream b: the document from token b (distinct prompts, no shared prefix), then its
         * first `quote` tokens again */
        int np = 0;
        p[np++] = doc[0];
        for (int i = 1 + b; i < n_doc; i++)
            p[np++] = doc[i];
        for (int i = 1 + b; i < 1 + b + quote && i < n_doc; i++)
            p[np++] = doc[i];
        engine_request r = {.prompt = p, .n_prompt = np, .n = 1, .spec_k = spec_k};
        engine_sampling_defaults(&r.sp);
        r.sp.temperature = 0;
        r.sp.max_tokens = n;
        r.sp.ignore_eos = true;
        r.on_event = on_event;
        r.ctx = &st[b];
        uint64_t id;
        rc = engine_submit(e, &r, &id, err);
    }
    pthread_mutex_lock(&mu);
    for (int b = 0; b < B && !rc; b++)
        while (!st[b].done)
            pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (!rc) {
        double t0 = 0, t1 = 0, c0 = 0, c1 = cpu_s();
        int toks = 0;
        *out = (run){0};
        for (int b = 0; b < B; b++) {
            if (st[b].t_first > t0) t0 = st[b].t_first, c0 = st[b].c_first;
            if (st[b].t_last > t1) t1 = st[b].t_last;
            out->drafted += st[b].drafted;
            out->accepted += st[b].accepted;
        }
        for (int b = 0; b < B; b++) /* tokens after the window opened (about n - 1 each) */
            toks += st[b].n - 1;
        engine_stats_get(e, &s1);
        uint64_t rounds = s1.spec_drafts - s0.spec_drafts;
        out->wall = t1 > t0 ? toks / (t1 - t0) : 0;
        out->cpu = c1 > c0 ? toks / (c1 - c0) * threads : 0;
        out->mal = rounds ? 1.0 + (double)(s1.spec_accepted_tokens - s0.spec_accepted_tokens) /
                                      (double)rounds
                          : 1.0;
    }
    free(st), free(p);
    return rc;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median and spread (min..max) of v (n). */
static void stats(double *v, int n, double *med, double *lo, double *hi)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *lo = v[0], *hi = v[n - 1];
}

/* The document's tokens: the file's text, or the built-in one. */
static int load_doc(const tok *tk, const char *file, int32_t **out, kl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) return kl_errf(err, KL_EIO, "%s: cannot open", file);
        char buf[4096];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0 && len < (1u << 20)) {
            char *t = realloc(text, len + k + 1);
            if (!t) break;
            text = t;
            memcpy(text + len, buf, k);
            len += k;
        }
        fclose(f);
        if (!len) {
            free(text);
            return kl_errf(err, KL_EINVAL, "%s: empty", file);
        }
    }
    const char *src = text ? text : default_doc;
    if (!text) len = strlen(default_doc);
    int cap = (int)len + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int n = ids ? (int)tok_encode(tk, src, len, TOK_ADD_BOS, ids, (size_t)cap) : -1;
    free(text);
    if (n < 8) {
        free(ids);
        return kl_errf(err, KL_EINVAL, "%s: fewer than 8 tokens", file ? file : "document");
    }
    *out = ids;
    return n;
}

int bench_spec(const bench_spec_opts *o, kl_err *err)
{
    int32_t *doc = NULL;
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = o->path;
    c.engine.n_threads = o->threads;
    c.engine.spec = o->spec;
    c.draft_path = o->draft;
    c.engine.prefix_cache = false; /* every run computes its prompts */
    int max_b = 1;
    for (int i = 0; i < o->nbs; i++)
        max_b = o->bs[i] > max_b ? o->bs[i] : max_b;
    c.engine.max_seqs = max_b;
    engine_stack st;
    int rc = engine_open(&st, &c, err);
    if (rc) return rc;
    int n_doc = load_doc(st.tok, o->doc_file, &doc, err);
    if (n_doc < 0) {
        engine_close(&st);
        return n_doc;
    }
    if (n_doc + n_doc / 4 + o->n + max_b + 8 > st.n_ctx) { /* the document and the output fit */
        n_doc = st.n_ctx - o->n - max_b - 8;
        n_doc -= n_doc / 5;
        if (n_doc < 8) {
            free(doc), engine_close(&st);
            return kl_errf(err, KL_EINVAL, "-n %d leaves no room for a document in %d tokens", o->n,
                           st.n_ctx);
        }
    }
    int quote = n_doc / 4 < 32 ? n_doc / 4 : 32; /* the first sentence or so, again */
    char spec[96];
    engine_spec_format(&o->spec, spec, sizeof spec);
    printf("model: %s (%s, dim %d, %d layers, vocab %d), threads %d\n", st.path, st.hp->arch,
           st.hp->dim, st.hp->n_layers, st.hp->n_vocab, o->threads);
    printf("workload: a %d-token document, then its first %d tokens again; %d greedy tokens per "
           "stream; speculation %s, alternated with none, %d repeats\n",
           n_doc, quote, o->n, spec, o->reps);
    run warm;
    if ((rc = run_once(st.eng, doc, n_doc, quote, 1, 8, 0, o->threads, &warm, err))) goto out;
    for (int k = 0; k < o->nbs && !rc; k++) {
        int B = o->bs[k];
        double w[2][100], cp[2][100], mal = 0;
        int drafted = 0, accepted = 0;
        for (int r = 0; r < o->reps && !rc; r++)
            for (int on = 0; on < 2 && !rc; on++) { /* off, on, off, on, ... */
                run x;
                rc = run_once(st.eng, doc, n_doc, quote, B, o->n, on ? 0 : -1, o->threads, &x, err);
                w[on][r] = x.wall, cp[on][r] = x.cpu;
                if (on) mal += x.mal / o->reps, drafted += x.drafted, accepted += x.accepted;
            }
        if (rc) break;
        double m[2][2], lo[2][2], hi[2][2];
        for (int on = 0; on < 2; on++) {
            stats(w[on], o->reps, &m[on][0], &lo[on][0], &hi[on][0]);
            stats(cp[on], o->reps, &m[on][1], &lo[on][1], &hi[on][1]);
        }
        for (int on = 0; on < 2; on++)
            printf("B=%d %-4s tg %.2f tok/s aggregate (%.2f..%.2f), %.2f per CPU-second x %d "
                   "threads (%.2f..%.2f)\n",
                   B, on ? "spec" : "off", m[on][0], lo[on][0], hi[on][0], m[on][1], o->threads,
                   lo[on][1], hi[on][1]);
        printf("B=%d spec/off: %.3fx wall, %.3fx per CPU-second; drafts %d, accepted %d (%.1f%%), "
               "mean accepted length %.2f\n",
               B, m[1][0] / m[0][0], m[1][1] / m[0][1], drafted, accepted,
               drafted ? 100.0 * accepted / drafted : 0.0, mal);
        fflush(stdout);
    }
out:
    free(doc);
    engine_close(&st);
    return rc;
}
