/* engine/open.c: a model file to a running engine in one call (see open.h). */
#include "engine/open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "model/lora.h"
#include "model/make.h"

void engine_open_defaults(engine_open_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    engine_config_defaults(&cfg->engine);
    cfg->with_tok = true;
    cfg->with_engine = true;
}

/* mkdir -p dir (errors show up when the file inside cannot be made). */
static void make_dirs(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

/* The synthetic model's path ($XDG_CACHE_HOME/kiln or ~/.cache/kiln), made when missing:
 * under a temporary name, then renamed, so a process killed midway leaves no torn file.
 * Returns 0 with st->path set, or KL_E* and err. */
static int synthetic_model(engine_stack *st, kl_err *err)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[900];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/kiln", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/kiln", home);
    else
        snprintf(dir, sizeof dir, "/tmp/kiln-cache");
    snprintf(st->path, sizeof st->path, "%s/default.gguf", dir);
    st->synthetic = true;
    struct stat sb;
    if (stat(st->path, &sb) == 0) return 0;
    make_dirs(dir);
    model_make_opts mo;
    model_make_defaults(&mo);
    kl_info("making a small synthetic model (random weights) at %s", st->path);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", st->path, (long)getpid());
    int rc = model_make(&mo, tmp, err);
    if (!rc && rename(tmp, st->path)) {
        remove(tmp);
        rc = kl_errf(err, KL_EIO, "%s: cannot rename the synthetic model into place", st->path);
    }
    return rc;
}

/* The model's chat template, or chatml with a warning when the model's own cannot be used
 * and no override was asked for. */
static int open_template(engine_stack *st, const char *override, kl_err *err)
{
    int rc = chat_tmpl_for_model(&st->tmpl, st->file, override, err);
    if (rc && !override) {
        kl_warn("%s; chat requests use chatml", err->msg);
        rc = chat_tmpl_for_model(&st->tmpl, NULL, "chatml", err);
    }
    return rc;
}

/* The draft model of cfg->draft_path (ENGINE_SPEC_DRAFT): loaded with the target's batch,
 * logits and context limits; its vocabulary must be the target's, token for token. */
static int open_draft(engine_stack *st, const engine_open_config *cfg, const model_opts *mo,
                      kl_err *err)
{
    const char *path = cfg->draft_path;
    int rc = gguf_open(&st->draft_file, path, err);
    if (!rc) rc = tok_load(&st->draft_tok, st->draft_file, err);
    if (rc) return rc;
    int32_t n = tok_n_vocab(st->tok), dn = tok_n_vocab(st->draft_tok);
    if (n != dn)
        return kl_errf(err, KL_EINVAL,
                       "%s: draft vocabulary differs from the target's (%d tokens, the target "
                       "has %d)",
                       path, dn, n);
    for (int32_t i = 0; i < n; i++) {
        const char *a = tok_text(st->tok, i), *b = tok_text(st->draft_tok, i);
        if (strcmp(a ? a : "", b ? b : ""))
            return kl_errf(err, KL_EINVAL,
                           "%s: draft vocabulary differs from the target's (token %d is "
                           "'%.40s', the target's '%.40s')",
                           path, (int)i, b ? b : "", a ? a : "");
    }
    model_opts dmo = *mo;
    dmo.max_logits = cfg->engine.max_seqs;
    dmo.max_ctx = model_opts_of(st->model)->max_ctx;
    dmo.max_lora_rank = 0;
    rc = model_load(&st->draft, st->draft_file, &dmo, err);
    if (!rc && model_hparams_of(st->draft)->n_vocab != model_hparams_of(st->model)->n_vocab)
        rc = kl_errf(err, KL_EINVAL,
                     "%s: draft vocabulary differs from the target's (its output head has %d "
                     "rows, the target's %d)",
                     path, model_hparams_of(st->draft)->n_vocab,
                     model_hparams_of(st->model)->n_vocab);
    return rc;
}

static int open_engine(engine_stack *st, const engine_open_config *cfg, kl_err *err)
{
    engine_config ec = cfg->engine;
    ec.model = st->model;
    ec.tok = st->tok;
    if (ec.spec.kind == ENGINE_SPEC_DRAFT) ec.spec.draft = st->draft ? st->draft : st->model;
    return engine_create(&st->eng, &ec, err);
}

/* model_opts with its zero fields filled from the engine settings and the environment. */
static model_opts model_opts_for(const engine_open_config *cfg)
{
    model_opts mo = cfg->model;
    const engine_config *ec = &cfg->engine;
    if (mo.max_batch_tokens <= 0) mo.max_batch_tokens = ec->max_batch_tokens;
    if (mo.max_logits <= 0) /* speculation: rows for the drafts too */
        mo.max_logits = ec->max_seqs + (ec->spec.kind ? ENGINE_SPEC_STEP_ROWS : 0);
    if (mo.max_ctx <= 0) mo.max_ctx = ec->n_ctx;
    if (mo.n_workers <= 0) mo.n_workers = ec->n_threads;
    const char *no_repack = getenv("KILN_NO_REPACK");
    if (no_repack && *no_repack && *no_repack != '0') mo.no_repack = true;
    return mo;
}

int engine_open(engine_stack *st, const engine_open_config *cfg, kl_err *err)
{
    memset(st, 0, sizeof *st);
    int rc = 0;
    if (!cfg->model_path)
        rc = synthetic_model(st, err);
    else if (strlen(cfg->model_path) >= sizeof st->path)
        rc = kl_errf(err, KL_EINVAL, "%.200s...: the path is too long", cfg->model_path);
    else
        snprintf(st->path, sizeof st->path, "%s", cfg->model_path);
    if (!rc) rc = gguf_open(&st->file, st->path, err);
    if (!rc && cfg->with_tok) rc = tok_load(&st->tok, st->file, err);
    model_opts mo = model_opts_for(cfg);
    char pack_dir[4096];
    if (!mo.pack_cache_dir && model_pack_cache_default(pack_dir, sizeof pack_dir))
        mo.pack_cache_dir = pack_dir;
    if (!rc) rc = model_load(&st->model, st->file, &mo, err);
    if (!rc && cfg->with_tok) rc = open_template(st, cfg->chat_template, err);
    if (!rc && cfg->draft_path && cfg->engine.spec.kind != ENGINE_SPEC_DRAFT)
        rc = kl_errf(err, KL_EINVAL, "%s: a draft model is for --spec draft", cfg->draft_path);
    if (!rc && cfg->draft_path && cfg->with_tok) rc = open_draft(st, cfg, &mo, err);
    if (!rc && cfg->with_tok && cfg->with_engine) rc = open_engine(st, cfg, err);
    if (rc) {
        if (st->synthetic) { /* a cached file from an older Kiln: say how to remake it */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%.400s (delete the cached synthetic model to remake it)",
                     err->msg);
            snprintf(err->msg, sizeof err->msg, "%s", msg);
        }
        engine_close(st);
        return rc;
    }
    st->hp = model_hparams_of(st->model);
    st->n_ctx = model_opts_of(st->model)->max_ctx;
    if (cfg->engine.n_ctx > 0 && cfg->engine.n_ctx < st->n_ctx) st->n_ctx = cfg->engine.n_ctx;
    /* requests are checked against what the KV cache holds when that is less: one that could
     * never fit is refused at admission, not an answer cut short */
    if (st->eng && engine_n_ctx(st->eng) < st->n_ctx) {
        kl_warn("the KV cache holds %d tokens, less than the context of %d: a request may have "
                "at most %d (prompt + max_tokens; more KV memory raises it)",
                engine_n_ctx(st->eng), st->n_ctx, engine_n_ctx(st->eng));
        st->n_ctx = engine_n_ctx(st->eng);
    }
    st->n_vocab = st->hp->n_vocab;
    if (st->tok && tok_n_vocab(st->tok) < st->n_vocab) st->n_vocab = tok_n_vocab(st->tok);
    return 0;
}

void engine_close(engine_stack *st)
{
    engine_destroy(st->eng);
    model_free(st->draft);
    tok_free(st->draft_tok);
    gguf_close(st->draft_file);
    chat_tmpl_free(st->tmpl);
    model_free(st->model);
    tok_free(st->tok);
    gguf_close(st->file);
    memset(st, 0, sizeof *st);
}

int engine_lora_open(const engine_stack *st, const char *path, float scale, model_lora **out,
                     kl_err *err)
{
    gguf_file *f;
    int rc = gguf_open(&f, path, err);
    if (rc) return rc;
    rc = model_lora_load(out, st->model, f, scale, err);
    gguf_close(f);
    return rc;
}

void engine_lora_free(model_lora *a)
{
    model_lora_free(a);
}
