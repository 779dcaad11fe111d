/* server/accesslog.c: the request log: one line per generation call (kl_rec: every value
 * escaped, text or JSON with --log-format json). */
#include "server/internal.h"

#include "base/log.h"

/* A call that ran: its usage, latencies, finish and status. */
void srv_log_call(const srv_call *c, double now)
{
    const srv *s = c->s;
    int p = 0, g = 0, cached = 0, drafted = 0, accepted = 0;
    for (int i = 0; i < c->n_sub; i++) {
        p += c->sub[i].prompt_tokens;
        g += c->sub[i].completion_tokens;
        cached += c->sub[i].cached_tokens;
        drafted += c->sub[i].spec_draft_tokens;
        accepted += c->sub[i].spec_accepted_tokens;
    }
    const char *fin = c->n_choices ? srv_finish_name(c->ch[0].finish) : NULL;
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_INFO, "serve: request");
    kl_rec_str(&r, "id", c->id);
    kl_rec_str(&r, "model", srv_call_model(c));
    kl_rec_str(&r, "endpoint",
               c->r.kind == SRV_CHAT         ? "chat"
               : c->r.kind == SRV_EMBEDDINGS ? "embeddings"
                                             : "completions");
    kl_rec_int(&r, "stream", c->r.stream);
    kl_rec_int(&r, "n", c->n_choices);
    kl_rec_int(&r, "prompt_tokens", p);
    kl_rec_int(&r, "cached_tokens", cached);
    kl_rec_int(&r, "completion_tokens", g);
    kl_rec_num(&r, "ttft_ms", c->t_first > 0 ? (c->t_first - c->t_submit) * 1e3 : -1.0);
    kl_rec_num(&r, "total_ms", (now - c->t0) * 1e3);
    kl_rec_str(&r, "finish", fin);
    kl_rec_int(&r, "status", c->status);
    if (s->o.spec.kind) { /* with speculation: drafts proposed and kept */
        kl_rec_int(&r, "spec_draft_tokens", drafted);
        kl_rec_int(&r, "spec_accepted_tokens", accepted);
        kl_rec_num(&r, "acceptance_pct", drafted ? 100.0 * accepted / drafted : 0.0);
    }
    kl_rec_end(&r);
}

/* A call refused or failed before it ran (status and the error, which may quote the client). */
void srv_log_refused(const srv_call *c, const net_error *e)
{
    kl_rec r;
    kl_rec_begin(&r, KL_LOG_INFO, "serve: request");
    kl_rec_str(&r, "id", c->id);
    kl_rec_str(&r, "model", srv_call_model(c));
    kl_rec_int(&r, "status", e->status);
    kl_rec_str(&r, "error", e->msg); /* may quote the client's input: escaped */
    kl_rec_end(&r);
}
