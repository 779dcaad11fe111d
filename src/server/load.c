/* server/load.c: loading the model on its own thread, so that HTTP listens (and /health
 * answers 503) while a large file is mapped and checked. With no -m, a small synthetic model
 * is made once and cached. */
#include "server/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#include "model/make.h"

/* The cached synthetic model's path ($XDG_CACHE_HOME/kiln or ~/.cache/kiln), made when
 * missing. Returns 0 with s->model_path set, or KL_E* and err. */
static int default_model(srv *s, kl_err *err)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[900];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/kiln", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/kiln", home);
    else
        snprintf(dir, sizeof dir, "/tmp/kiln-cache");
    snprintf(s->model_path, sizeof s->model_path, "%s/default.gguf", dir);
    s->synthetic = true;
    struct stat st;
    if (stat(s->model_path, &st) == 0) return 0;
    char parent[1000];
    snprintf(parent, sizeof parent, "%s", dir);
    for (char *p = parent + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(parent, 0755);
            *p = '/';
        }
    mkdir(parent, 0755);
    model_make_opts mo;
    model_make_defaults(&mo);
    kl_info("serve: making a small synthetic model (random weights) at %s", s->model_path);
    /* made under a temporary name and renamed: a server killed midway leaves no torn file */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", s->model_path, (long)getpid());
    int rc = model_make(&mo, tmp, err);
    if (!rc && rename(tmp, s->model_path)) {
        remove(tmp);
        rc =
            kl_errf(err, KL_EIO, "%s: cannot rename the synthetic model into place", s->model_path);
    }
    return rc;
}

void *srv_load_main(void *arg)
{
    srv *s = arg;
    kl_err err = {0};
    int rc = 0;
    if (!s->o.model_path)
        rc = default_model(s, &err);
    else if (strlen(s->o.model_path) >= sizeof s->model_path)
        rc = kl_errf(&err, KL_EINVAL, "-m: the path is too long");
    else
        snprintf(s->model_path, sizeof s->model_path, "%s", s->o.model_path);
    if (!rc) rc = gguf_open(&s->f, s->model_path, &err);
    if (!rc) rc = tok_load(&s->tk, s->f, &err);
    model_opts mo = {.max_batch_tokens = s->o.max_batch_tokens > 0 ? s->o.max_batch_tokens : 512,
                     .max_logits = s->o.max_seqs > 0 ? s->o.max_seqs : 64,
                     .max_ctx = s->o.ctx,
                     .n_workers = s->o.threads};
    const char *no_repack = getenv("KILN_NO_REPACK"); /* as the CLI commands (cli/loaded.c) */
    mo.no_repack = no_repack && *no_repack && *no_repack != '0';
    char pack_dir[4096];
    if (model_pack_cache_default(pack_dir, sizeof pack_dir)) mo.pack_cache_dir = pack_dir;
    if (!rc) rc = model_load(&s->m, s->f, &mo, &err);
    if (!rc) {
        rc = chat_tmpl_for_model(&s->tmpl, s->f, s->o.chat_template, &err);
        if (rc &&
            !s->o.chat_template) { /* the model's own template is unusable: say so, use chatml */
            kl_warn("serve: %s; chat requests use chatml", err.msg);
            rc = chat_tmpl_for_model(&s->tmpl, NULL, "chatml", &err);
        }
    }
    if (!rc) {
        engine_config ec;
        engine_config_defaults(&ec);
        ec.model = s->m;
        ec.tok = s->tk;
        if (s->o.threads > 0) ec.n_threads = s->o.threads;
        if (s->o.block_size > 0) ec.block_tokens = s->o.block_size;
        ec.kv_mem_bytes = s->o.kv_mem_bytes;
        ec.kv_dtype = s->o.kv_type;
        if (s->o.max_seqs > 0) ec.max_seqs = s->o.max_seqs;
        if (s->o.max_batch_tokens > 0) ec.max_batch_tokens = s->o.max_batch_tokens;
        if (s->o.max_queue > 0) ec.max_queue = s->o.max_queue;
        ec.n_ctx = s->o.ctx;
        rc = engine_create(&s->eng, &ec, &err);
    }
    if (!rc) {
        const model_hparams *hp = model_hparams_of(s->m);
        s->n_ctx = model_opts_of(s->m)->max_ctx;
        if (s->o.ctx > 0 && s->o.ctx < s->n_ctx) s->n_ctx = s->o.ctx;
        s->n_vocab = hp->n_vocab < tok_n_vocab(s->tk) ? hp->n_vocab : tok_n_vocab(s->tk);
        if (s->o.served_name) {
            snprintf(s->name, sizeof s->name, "%.255s", s->o.served_name);
        } else {
            const char *b = strrchr(s->model_path, '/');
            snprintf(s->name, sizeof s->name, "%.255s", b ? b + 1 : s->model_path);
            size_t l = strlen(s->name);
            if (l > 5 && !strcmp(s->name + l - 5, ".gguf")) s->name[l - 5] = 0;
        }
    }
    if (rc && s->synthetic) { /* a cached file from an older Kiln: say how to remake it */
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%.400s (delete the cached synthetic model to remake it)",
                 err.msg);
        snprintf(err.msg, sizeof err.msg, "%s", msg);
    }
    if (rc) s->load_err = err;
    atomic_store(&s->load_state, rc ? SRV_FAILED : SRV_READY);
    event_active(s->wake, EV_READ, 0);
    return NULL;
}
