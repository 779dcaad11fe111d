/* server/lora.c: the LoRA adapters a server knows (--lora NAME=PATH and the runtime endpoints)
 * and which of them are resident.
 *
 * At most --max-loras adapters hold their weights at once. A request on an adapter that is
 * resident is submitted at once and holds a reference until its call ends; a request on one
 * that is not waits on the adapter's pending list while a slot is made: the least recently
 * used resident adapter without a call in flight is freed and the adapter loads on the
 * adapter thread (off the event loop and the engine thread, so nothing else waits for the
 * file). When no slot can be freed, the requests wait until a call ends. The engine never sees
 * any of this: a request carries a resident adapter, borrowed until its last event.
 *
 * Everything here runs on the event loop's thread, except adapter_thread and what it reads
 * (the jobs, under lo->mu). */
#include "server/internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

/* A load on the adapter thread: for a swap (nc.req NULL) or POST /v1/load_lora_adapter. */
typedef struct lora_job {
    struct lora_job *next;
    srv *s;
    srv_lora *l;
    char path[PATH_MAX];
    const char *shown;      /* the path as the client wrote it (errors quote it), or NULL */
    net_call nc;            /* the endpoint's client request (NULL req for a swap) */
    struct model_lora *out; /* the result */
    kl_err err;
} lora_job;

bool srv_lora_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (!n || n >= sizeof((srv_lora *)0)->name) return false;
    for (const char *p = name; *p; p++) /* the names go into label lists: a,b */
        if ((unsigned char)*p < 0x20 || *p == ',' || *p == '"' || *p == '\\' || *p == 0x7f)
            return false;
    return true;
}

/* Any adapter of that name not unloaded, one being added by the endpoint too. */
static srv_lora *find_any(srv *s, const char *name)
{
    for (srv_lora *l = s->loras.head; l; l = l->next)
        if (!l->removed && !strcmp(l->name, name)) return l;
    return NULL;
}

srv_lora *srv_lora_find(srv *s, const char *name)
{
    srv_lora *l = find_any(s, name);
    return l && !l->registering ? l : NULL;
}

bool srv_serves(srv *s, const char *name)
{
    return !strcmp(name, s->name) || srv_lora_find(s, name);
}

/* Reads an adapter file for the served model. The error names the file as the caller shows
 * it (shown), never this machine's resolved path. */
static int load_file(const engine_stack *st, const char *path, const char *shown,
                     struct model_lora **out, kl_err *err)
{
    int rc = engine_lora_open(st, path, 1.f, out, err);
    size_t pl = strlen(path);
    if (rc && shown && !strncmp(err->msg, path, pl)) { /* "<path>: <what>" */
        char what[sizeof err->msg];
        snprintf(what, sizeof what, "%s", err->msg + pl);
        snprintf(err->msg, sizeof err->msg, "%.200s%.300s", shown, what);
    }
    return rc;
}

static srv_lora *lora_new(srv *s, const char *name, const char *path)
{
    srv_lora *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->path, sizeof l->path, "%s", path);
    srv_lora **tail = &s->loras.head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    return l;
}

static void lora_unlink_free(srv *s, srv_lora *l)
{
    for (srv_lora **p = &s->loras.head; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    if (l->a) s->loras.n_resident--;
    engine_lora_free(l->a);
    free(l);
}

int srv_lora_startup(srv *s, kl_err *err)
{
    srv_loras *lo = &s->loras;
    lo->max = s->o.max_loras > 0 ? s->o.max_loras : (s->o.n_loras > 0 ? s->o.n_loras : 1);
    for (int i = 0; i < s->o.n_loras; i++) {
        const char *spec = s->o.loras[i], *eq = strchr(spec, '=');
        char name[128];
        if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof name)
            return kl_errf(err, KL_EINVAL, "--lora %s: expected NAME=PATH", spec);
        memcpy(name, spec, (size_t)(eq - spec));
        name[eq - spec] = 0;
        if (!srv_lora_name_ok(name))
            return kl_errf(err, KL_EINVAL,
                           "--lora %s: the name must be 1-127 characters without ',', '\"', "
                           "'\\' or control characters",
                           spec);
        if (srv_lora_find(s, name) || !strcmp(name, s->name))
            return kl_errf(err, KL_EINVAL, "--lora %s: the name %s is taken", spec, name);
        /* every adapter is checked now, so a bad file stops the start, not a request later */
        struct model_lora *a;
        int rc = load_file(&s->st, eq + 1, NULL, &a, err);
        if (rc) return rc;
        srv_lora *l = lora_new(s, name, eq + 1);
        if (!l) {
            engine_lora_free(a);
            return kl_errf(err, KL_ENOMEM, "out of memory");
        }
        if (lo->n_resident < lo->max) {
            l->a = a;
            l->last_used = ++lo->tick;
            lo->n_resident++;
            lo->loads++;
        } else {
            engine_lora_free(a); /* loads when a request needs it */
        }
    }
    if (s->o.lora_runtime) {
        if (!s->o.lora_dir)
            return kl_errf(err, KL_EINVAL,
                           "--enable-lora-runtime-updates needs --lora-dir (the only directory "
                           "adapters may be loaded from)");
        if (!realpath(s->o.lora_dir, lo->dir))
            return kl_errf(err, KL_EIO, "--lora-dir %s: %s", s->o.lora_dir, strerror(errno));
    }
    return 0;
}

/* ------------------------------------------------------------ the adapter thread ---- */

static void *adapter_thread(void *arg)
{
    srv *s = arg;
    srv_loras *lo = &s->loras;
    pthread_mutex_lock(&lo->mu);
    for (;;) {
        while (!lo->todo && !lo->stop)
            pthread_cond_wait(&lo->cv, &lo->mu);
        if (lo->stop) break;
        lora_job *j = lo->todo;
        lo->todo = j->next;
        pthread_mutex_unlock(&lo->mu);
        load_file(&s->st, j->path, j->shown, &j->out, &j->err);
        pthread_mutex_lock(&lo->mu);
        j->next = lo->done;
        lo->done = j;
        event_active(lo->wake, EV_READ, 0);
    }
    pthread_mutex_unlock(&lo->mu);
    return NULL;
}

static void on_job_done(evutil_socket_t fd, short what, void *arg);

static int start_job(srv *s, lora_job *j)
{
    srv_loras *lo = &s->loras;
    if (!lo->wake && !(lo->wake = event_new(s->base, -1, 0, on_job_done, s))) return -1;
    if (!lo->thread_started) {
        pthread_mutex_init(&lo->mu, NULL);
        pthread_cond_init(&lo->cv, NULL);
        if (pthread_create(&lo->thread, NULL, adapter_thread, s)) {
            pthread_mutex_destroy(&lo->mu);
            pthread_cond_destroy(&lo->cv);
            return -1;
        }
        lo->thread_started = true;
    }
    pthread_mutex_lock(&lo->mu);
    lora_job **t = &lo->todo;
    while (*t)
        t = &(*t)->next;
    j->next = NULL;
    *t = j;
    pthread_cond_signal(&lo->cv);
    pthread_mutex_unlock(&lo->mu);
    return 0;
}

/* ------------------------------------------------------------ residency ---- */

/* The least recently used resident adapter no call holds, or NULL. */
static srv_lora *evictable(srv *s)
{
    srv_lora *best = NULL;
    for (srv_lora *l = s->loras.head; l; l = l->next)
        if (l->a && !l->refs && (!best || l->last_used < best->last_used)) best = l;
    return best;
}

static void evict(srv *s, srv_lora *l)
{
    kl_info("serve: lora: unloading %s (least recently used, no request on it)", l->name);
    engine_lora_free(l->a);
    l->a = NULL;
    s->loras.n_resident--;
}

/* A free slot: true at once when there is one, else after evicting the least recently used
 * adapter no call holds; false when every slot is held. */
static bool make_room(srv *s)
{
    if (s->loras.n_resident < s->loras.max) return true;
    srv_lora *v = evictable(s);
    if (v) evict(s, v);
    return v != NULL;
}

/* c takes a reference on l (resident): it runs on it until its call ends. */
static void take_ref(srv *s, srv_lora *l, srv_call *c)
{
    l->refs++;
    l->last_used = ++s->loras.tick;
    c->lora_ref = true;
}

static void fail_pending(srv *s, srv_lora *l, const net_error *e)
{
    while (l->pending) {
        srv_call *c = l->pending;
        l->pending = c->pend_next;
        srv_gen_refuse(s, c, e);
    }
}

/* Starts loads for adapters with waiting calls while slots can be made, oldest call first. */
void srv_lora_pump(srv *s)
{
    srv_loras *lo = &s->loras;
    if (lo->closing) return;
    for (;;) {
        srv_lora *next = NULL;
        for (srv_lora *l = lo->head; l; l = l->next)
            if (l->pending && !l->a && !l->loading && (!next || l->pending->t0 < next->pending->t0))
                next = l;
        if (!next) return;
        if (!make_room(s)) return; /* every slot is in use: the next call to end frees one */
        lora_job *j = calloc(1, sizeof *j);
        if (!j || (snprintf(j->path, sizeof j->path, "%s", next->path), start_job(s, j))) {
            free(j);
            net_error e;
            net_fail(&e, 503, "", "out of memory");
            fail_pending(s, next, &e);
            continue;
        }
        j->l = next;
        next->loading = true;
        lo->n_resident++;
        int waiting = 0;
        for (const srv_call *c = next->pending; c; c = c->pend_next)
            waiting++;
        kl_info("serve: lora: loading %s (%d request(s) waiting for it)", next->name, waiting);
    }
}

bool srv_lora_acquire(srv *s, srv_lora *l, srv_call *c)
{
    c->lora = l;
    if (l->a) {
        take_ref(s, l, c);
        return true;
    }
    srv_call **t = &l->pending;
    while (*t)
        t = &(*t)->pend_next;
    c->pend_next = NULL;
    *t = c;
    srv_lora_pump(s);
    return false;
}

void srv_lora_release(srv *s, srv_call *c)
{
    srv_lora *l = c->lora;
    if (!l || !c->lora_ref) return;
    c->lora_ref = false;
    l->last_used = ++s->loras.tick;
    if (--l->refs == 0 && l->removed && !l->loading) lora_unlink_free(s, l);
    srv_lora_pump(s);
}

void srv_lora_forget_pending(srv *s, srv_call *c)
{
    (void)s;
    srv_lora *l = c->lora;
    if (!l || c->lora_ref) return;
    for (srv_call **p = &l->pending; *p; p = &(*p)->pend_next)
        if (*p == c) {
            *p = c->pend_next;
            return;
        }
}

/* ------------------------------------------------------------ runtime endpoints ---- */

static void send_text(srv *s, struct evhttp_request *req, const char *text)
{
    if (!req) return;
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_printf(b, "%s", text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    if (b) evbuffer_free(b);
    srv_count_status(s, 200);
}

static void endpoint_done(srv *s, lora_job *j)
{
    srv_lora *l = j->l;
    struct evhttp_request *req = net_call_take(&s->loras.calls, &j->nc);
    net_calls_remove(&s->loras.calls, &j->nc);
    l->loading = false;
    if (!j->out) {
        net_error e;
        net_fail(&e, j->err.code == KL_ENOMEM ? 503 : 400, "lora_path", "%s", j->err.msg);
        kl_warn("serve: lora: load_lora_adapter %s refused: %s", l->name, j->err.msg);
        if (req) srv_send_error(s, req, &e);
        lora_unlink_free(s, l);
        return;
    }
    l->registering = false;
    s->loras.loads++;
    if (make_room(s)) {
        l->a = j->out;
        l->last_used = ++s->loras.tick;
        s->loras.n_resident++;
    } else {
        engine_lora_free(j->out); /* checked; loads when a request needs a slot */
    }
    kl_info("serve: lora: added %s (runtime, %s)", l->name, l->a ? "resident" : "not resident");
    char msg[256];
    snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' added successfully.", l->name);
    send_text(s, req, msg);
}

static void on_job_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    srv *s = arg;
    srv_loras *lo = &s->loras;
    pthread_mutex_lock(&lo->mu);
    lora_job *j = lo->done;
    lo->done = NULL;
    pthread_mutex_unlock(&lo->mu);
    while (j) {
        lora_job *next = j->next;
        srv_lora *l = j->l;
        if (l->registering) {
            endpoint_done(s, j);
        } else {
            l->loading = false;
            if (j->out && !l->removed) {
                l->a = j->out;
                lo->loads++;
                l->last_used = ++lo->tick;
                while (l->pending) { /* each waiting call takes a reference and runs */
                    srv_call *c = l->pending;
                    l->pending = c->pend_next;
                    take_ref(s, l, c);
                    srv_gen_submit(s, c);
                }
            } else {
                engine_lora_free(j->out);
                lo->n_resident--;
                net_error e;
                if (j->out) /* unloaded while it loaded */
                    net_fail(&e, 404, "model", "The model `%.200s` does not exist.", l->name);
                else
                    net_fail(&e, 500, "model", "the adapter %.127s could not be loaded: %.200s",
                             l->name, j->err.msg);
                kl_warn("serve: lora: %s: %s", l->name, e.msg);
                fail_pending(s, l, &e);
                if (l->removed && !l->refs) lora_unlink_free(s, l);
            }
        }
        free((char *)j->shown);
        free(j);
        j = next;
    }
    srv_lora_pump(s);
}

static void on_endpoint_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    lora_job *j = arg;
    net_call_lost(&j->s->loras.calls, &j->nc);
}

/* The body's string field key, or NULL. */
static const char *field(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* POST /v1/load_lora_adapter {"lora_name", "lora_path"}: the file must resolve (symlinks
 * followed) to a place under --lora-dir; it is read and checked on the adapter thread, and
 * the answer comes when it is. */
static void load_endpoint(srv *s, struct evhttp_request *req, json_t *root)
{
    net_error e;
    const char *name = field(root, "lora_name"), *path = field(root, "lora_path");
    char real[PATH_MAX], joined[PATH_MAX * 2];
    if (!name || !path || !*path) {
        net_fail(&e, 400, name ? "lora_path" : "lora_name",
                 "Both 'lora_name' and 'lora_path' must be provided.");
    } else if (!srv_lora_name_ok(name)) {
        net_fail(&e, 400, "lora_name",
                 "lora_name: 1-127 characters without ',', '\"', '\\' or control characters");
    } else if (find_any(s, name) || !strcmp(name, s->name)) {
        net_fail(&e, 400, "lora_name", "The lora adapter '%.127s' has already been loaded.", name);
    } else if ((snprintf(joined, sizeof joined, "%s%s%s", path[0] == '/' ? "" : s->loras.dir,
                         path[0] == '/' ? "" : "/", path),
                !realpath(joined, real))) {
        net_fail(&e, 400, "lora_path", "lora_path %.200s: %s", path, strerror(errno));
    } else if (strncmp(real, s->loras.dir, strlen(s->loras.dir)) ||
               real[strlen(s->loras.dir)] != '/') {
        net_fail(&e, 400, "lora_path",
                 "lora_path %.200s: adapters may only be loaded from the server's --lora-dir",
                 path);
    } else {
        srv_lora *l = lora_new(s, name, real);
        lora_job *j = l ? calloc(1, sizeof *j) : NULL;
        char *shown = j ? strdup(path) : NULL;
        if (shown) {
            j->s = s;
            l->registering = true;
            l->loading = true;
            j->l = l;
            j->shown = shown;
            snprintf(j->path, sizeof j->path, "%s", real);
            j->nc.owner = j;
            j->nc.req = req;
            net_calls_add(&s->loras.calls, &j->nc);
            net_call_watch(&s->loras.calls, &j->nc, on_endpoint_close, j);
            if (!start_job(s, j)) {
                kl_info("serve: lora: load_lora_adapter %s", name);
                return;
            }
            net_calls_remove(&s->loras.calls, &j->nc);
        }
        free(shown), free(j);
        if (l) lora_unlink_free(s, l);
        net_fail(&e, 503, "", "out of memory");
    }
    srv_send_error(s, req, &e);
}

/* POST /v1/unload_lora_adapter {"lora_name"}: forgotten at once (new requests on it get a
 * 404); its weights are freed when the last call on it ends. */
static void unload_endpoint(srv *s, struct evhttp_request *req, json_t *root)
{
    net_error e;
    const char *name = field(root, "lora_name");
    srv_lora *l = name ? srv_lora_find(s, name) : NULL;
    if (!name) {
        net_fail(&e, 400, "lora_name", "'lora_name' must be provided.");
    } else if (!l) {
        net_fail(&e, 404, "lora_name", "The lora adapter '%.127s' cannot be found.", name);
    } else {
        l->removed = true;
        net_fail(&e, 404, "model", "The model `%.200s` does not exist.", l->name);
        fail_pending(s, l, &e);
        kl_info("serve: lora: unloaded %s%s", l->name,
                l->refs ? " (its weights go when its requests end)" : "");
        char msg[256];
        snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' removed successfully.", l->name);
        if (!l->refs && !l->loading) lora_unlink_free(s, l);
        send_text(s, req, msg);
        srv_lora_pump(s);
        return;
    }
    srv_send_error(s, req, &e);
}

void srv_lora_handle(srv *s, struct evhttp_request *req, bool load)
{
    net_error e;
    if (!s->o.lora_runtime) {
        net_fail(&e, 404, "",
                 "no such path (runtime LoRA updates are off: kiln serve "
                 "--enable-lora-runtime-updates --lora-dir DIR turns them on)");
        srv_send_error(s, req, &e);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t je;
    json_t *root = len > 65536 ? NULL
                               : json_loadb(len ? (const char *)evbuffer_pullup(in, -1) : "", len,
                                            JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        net_fail(&e, 400, "", "the body must be a JSON object (at most 64 KiB)");
        srv_send_error(s, req, &e);
    } else if (load) {
        load_endpoint(s, req, root);
    } else {
        unload_endpoint(s, req, root);
    }
    json_decref(root);
}

/* ------------------------------------------------------------ listing, metrics, end ---- */

void srv_lora_models(srv *s, json_t *data)
{
    for (srv_lora *l = s->loras.head; l; l = l->next) {
        if (l->removed || l->registering) continue;
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:i}", "id", l->name,
                                              "object", "model", "created", (json_int_t)0,
                                              "owned_by", "kiln", "root", l->name, "parent",
                                              s->name, "max_model_len", s->n_ctx));
    }
}

/* Whether a call holding l is one the engine has scheduled (sched), or one queued in it. */
static bool has_call(srv *s, const srv_lora *l, bool sched)
{
    for (net_call *nc = s->calls.head; nc; nc = nc->next) {
        const srv_call *c = nc->owner;
        if (c->lora != l || !c->lora_ref) continue;
        bool seen = false;
        for (int k = 0; k < c->n_sub; k++)
            seen |= c->sub[k].queue_seen;
        if (seen == sched) return true;
    }
    return false;
}

/* A comma-separated list of the adapters with a call running, or (!running) waiting: queued
 * in the engine, or waiting for the adapter to load (vLLM's reading: requests by scheduling
 * phase). Names are label-safe (name_ok). */
static void name_list(struct evbuffer *b, srv *s, bool running)
{
    int k = 0;
    for (srv_lora *l = s->loras.head; l; l = l->next)
        if (running ? has_call(s, l, true) : l->pending || has_call(s, l, false))
            evbuffer_add_printf(b, "%s%s", k++ ? "," : "", l->name);
}

void srv_lora_metrics(srv *s, struct evbuffer *b, const char *mname)
{
    srv_loras *lo = &s->loras;
    if (!lo->head && !s->o.lora_runtime) return; /* as vLLM: only when adapters are on */
    evbuffer_add_printf(b,
                        "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
                        "# TYPE vllm:lora_requests_info gauge\n"
                        "vllm:lora_requests_info{max_lora=\"%d\",running_lora_adapters=\"",
                        lo->max);
    name_list(b, s, true);
    evbuffer_add_printf(b, "\",waiting_lora_adapters=\"");
    name_list(b, s, false);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now); /* the value is the wall-clock time, as vLLM's */
    evbuffer_add_printf(b, "\"} %.17g\n", (double)now.tv_sec + now.tv_nsec * 1e-9);
    /* residency, which vllm:lora_requests_info does not tell (an idle adapter is absent):
     * the gateway routes to replicas that hold the adapter */
    evbuffer_add_printf(b, "# HELP kiln:lora_adapter_resident LoRA adapters whose weights are "
                           "loaded (1), or known and not loaded (0).\n"
                           "# TYPE kiln:lora_adapter_resident gauge\n");
    for (srv_lora *l = lo->head; l; l = l->next)
        if (!l->removed && !l->registering)
            evbuffer_add_printf(
                b, "kiln:lora_adapter_resident{model_name=\"%s\",lora_name=\"%s\"} %d\n", mname,
                l->name, l->a != NULL);
    evbuffer_add_printf(b,
                        "# HELP kiln:lora_loads_total LoRA adapter loads (startup and swaps).\n"
                        "# TYPE kiln:lora_loads_total counter\n"
                        "kiln:lora_loads_total{model_name=\"%s\"} %llu\n",
                        mname, (unsigned long long)lo->loads);
}

void srv_lora_close(srv *s)
{
    srv_loras *lo = &s->loras;
    if (lo->thread_started) {
        pthread_mutex_lock(&lo->mu);
        lo->stop = true;
        pthread_cond_signal(&lo->cv);
        pthread_mutex_unlock(&lo->mu);
        pthread_join(lo->thread, NULL);
        pthread_mutex_destroy(&lo->mu);
        pthread_cond_destroy(&lo->cv);
        lo->thread_started = false;
    }
    for (int pass = 0; pass < 2; pass++) {
        lora_job *j = pass ? lo->done : lo->todo;
        while (j) {
            lora_job *next = j->next;
            if (j->nc.owner) net_calls_remove(&lo->calls, &j->nc);
            engine_lora_free(j->out);
            free((char *)j->shown);
            free(j);
            j = next;
        }
    }
    lo->todo = lo->done = NULL;
    while (lo->head) {
        srv_lora *l = lo->head;
        lo->head = l->next;
        engine_lora_free(l->a);
        free(l);
    }
    if (lo->wake) event_free(lo->wake);
    lo->wake = NULL;
}
