/* server/load.c: loading the model on its own thread, so that HTTP listens (and /health
 * answers 503) while a large file is mapped and checked. With no -m, engine_open makes a
 * small synthetic model once and caches it. */
#include "server/internal.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"

/* The name the API shows: --served-model-name, else the file's name without ".gguf". */
static void served_name(srv *s)
{
    if (s->o.served_name) {
        snprintf(s->name, sizeof s->name, "%.255s", s->o.served_name);
        return;
    }
    const char *b = strrchr(s->st.path, '/');
    snprintf(s->name, sizeof s->name, "%.255s", b ? b + 1 : s->st.path);
    size_t l = strlen(s->name);
    if (l > 5 && !strcmp(s->name + l - 5, ".gguf")) s->name[l - 5] = 0;
}

void *srv_load_main(void *arg)
{
    srv *s = arg;
    kl_err err = {0};
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = s->o.model_path;
    c.chat_template = s->o.chat_template;
    engine_config *ec = &c.engine;
    if (s->o.threads > 0) ec->n_threads = s->o.threads;
    if (s->o.block_size > 0) ec->block_tokens = s->o.block_size;
    ec->kv_mem_bytes = s->o.kv_mem_bytes;
    ec->kv_dtype = s->o.kv_type;
    if (s->o.max_seqs > 0) ec->max_seqs = s->o.max_seqs;
    if (s->o.max_batch_tokens > 0) ec->max_batch_tokens = s->o.max_batch_tokens;
    if (s->o.max_queue > 0) ec->max_queue = s->o.max_queue;
    ec->n_ctx = s->o.ctx;
    ec->pooling = s->o.pooling;
    ec->spec = s->o.spec;
    c.draft_path = s->o.draft_model;
    c.model.max_lora_rank = s->o.max_lora_rank;
    int rc = engine_open(&s->st, &c, &err);
    if (!rc) {
        s->tk = s->st.tok;
        s->tmpl = s->st.tmpl;
        s->eng = s->st.eng;
        s->n_ctx = s->st.n_ctx;
        s->n_vocab = s->st.n_vocab;
        served_name(s);
        rc = srv_lora_startup(s, &err);
    }
    if (rc) s->load_err = err;
    atomic_store(&s->load_state, rc ? SRV_FAILED : SRV_READY);
    event_active(s->wake, EV_READ, 0);
    return NULL;
}
