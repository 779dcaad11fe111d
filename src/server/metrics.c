/* server/metrics.c: GET /metrics in Prometheus text format under vLLM's metric names (so
 * routers written for vLLM, such as the Gateway API Inference Extension and Kiln's own
 * gateway, read Kiln unchanged), each with a model_name label. Gauges and token counters
 * come from the engine's stats; latency histograms are observed by server/gen.c. */
#include "server/internal.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#include "net/procmetrics.h"
#include "net/prom.h"

/* vLLM's bucket bounds (seconds). */
static const double ttft_le[SRV_TTFT_B] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                           0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                           20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double itl_le[SRV_ITL_B] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double e2e_le[SRV_E2E_B] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                         5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

void srv_metrics_init(srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    kl_hist_init(&m->ttft, ttft_le, SRV_TTFT_B);
    kl_hist_init(&m->itl, itl_le, SRV_ITL_B);
    kl_hist_init(&m->e2e, e2e_le, SRV_E2E_B);
    kl_hist_init(&m->queue, e2e_le, SRV_E2E_B);
}

/* A histogram family with the model_name label (mname is label-safe). */
static void hist_print(struct evbuffer *b, const char *name, const char *help, const kl_hist *h,
                       const char *mname)
{
    char labels[300];
    snprintf(labels, sizeof labels, "model_name=\"%s\"", mname);
    net_prom_hist(b, name, help, labels, h);
}

/* One of the engine's step histograms (counts per bucket, bounds le) as a Prometheus one. */
static void step_hist_print(struct evbuffer *b, const char *name, const char *help,
                            const double *le, int n_le, const uint64_t *count, double sum,
                            const char *mname)
{
    kl_hist h;
    kl_hist_init(&h, le, n_le);
    h.sum = sum;
    for (int i = 0; i <= h.n_le; i++)
        h.n += h.count[i] = count[i];
    hist_print(b, name, help, &h, mname);
}

static void gauge(struct evbuffer *b, const char *type, const char *name, const char *help,
                  const char *mname, double v)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{model_name=\"%s\"} %.17g\n", name, help,
                        name, type, name, mname, v);
}

/* Speculative decoding, under vLLM's names: rounds with drafts, draft tokens, accepted ones,
 * and accepted ones by position in the draft (0..k-1). */
static void spec_print(struct evbuffer *b, const engine_stats *es, const char *m, int k)
{
    gauge(b, "counter", "vllm:spec_decode_num_drafts_total", "Number of spec decoding drafts.", m,
          (double)es->spec_drafts);
    gauge(b, "counter", "vllm:spec_decode_num_draft_tokens_total", "Number of draft tokens.", m,
          (double)es->spec_draft_tokens);
    gauge(b, "counter", "vllm:spec_decode_num_accepted_tokens_total", "Number of accepted tokens.",
          m, (double)es->spec_accepted_tokens);
    const char *name = "vllm:spec_decode_num_accepted_tokens_per_pos";
    evbuffer_add_printf(b, "# HELP %s Accepted tokens per draft position.\n# TYPE %s counter\n",
                        name, name);
    for (int i = 0; i < k && i < ENGINE_SPEC_MAX_K; i++)
        evbuffer_add_printf(b, "%s{model_name=\"%s\",position=\"%d\"} %llu\n", name, m, i,
                            (unsigned long long)es->spec_accepted_per_pos[i]);
}

/* A Mixture of Experts' load, one series per expert (none for a dense model): tokens routed
 * to it, summed over the layers, so an imbalance shows as some experts' rates far above the
 * others'. */
static void expert_print(struct evbuffer *b, const engine_stats *es, const char *m)
{
    if (!es->n_expert) return;
    const char *name = "kiln_moe_expert_tokens_total";
    evbuffer_add_printf(b,
                        "# HELP %s Tokens routed to each expert of the Mixture of Experts, summed "
                        "over its layers (a token counts once per layer for each expert it "
                        "chose).\n# TYPE %s counter\n",
                        name, name);
    for (int i = 0; i < es->n_expert; i++)
        evbuffer_add_printf(b, "%s{model_name=\"%s\",expert=\"%d\"} %llu\n", name, m, i,
                            (unsigned long long)es->expert_tokens[i]);
}

void srv_metrics_handle(srv *s, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    engine_stats es = {0};
    bool ready = atomic_load(&s->load_state) == SRV_READY;
    if (ready) engine_stats_get(s->eng, &es);
    /* the model name is ours (a file name or --served-model-name): keep it label-safe */
    char m[256];
    size_t k = 0;
    for (const char *p = ready ? s->name : "loading"; *p && k + 1 < sizeof m; p++)
        m[k++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
    m[k] = 0;
    gauge(b, "gauge", "vllm:num_requests_running", "Requests in model execution batches.", m,
          es.running);
    gauge(b, "gauge", "vllm:num_requests_waiting", "Requests waiting to be processed.", m,
          es.waiting);
    gauge(b, "gauge", "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m,
          es.kv_blocks_total ? (double)es.kv_blocks_used / es.kv_blocks_total : 0.0);
    evbuffer_add_printf(b,
                        "# HELP vllm:cache_config_info Information of the KV cache config.\n"
                        "# TYPE vllm:cache_config_info gauge\n"
                        "vllm:cache_config_info{block_size=\"%d\",num_gpu_blocks=\"%d\","
                        "cache_dtype=\"%s\",model_name=\"%s\"} 1\n",
                        es.block_tokens, (int)es.kv_blocks_total,
                        s->o.kv_type == KL_F32    ? "f32"
                        : s->o.kv_type == KL_Q8_0 ? "q8_0"
                                                  : "f16",
                        m);
    gauge(b, "counter", "vllm:prefix_cache_queries_total",
          "Prefix cache queries, in terms of number of queried tokens.", m,
          (double)es.prefix_queries);
    gauge(b, "counter", "vllm:prefix_cache_hits_total",
          "Prefix cache hits, in terms of number of cached tokens.", m, (double)es.prefix_hits);
    gauge(b, "counter", "vllm:num_preemptions_total", "Cumulative number of preemptions.", m,
          (double)es.preemptions);
    gauge(b, "counter", "vllm:prompt_tokens_total", "Number of prefill tokens processed.", m,
          (double)es.prompt_tokens);
    gauge(b, "counter", "vllm:generation_tokens_total", "Number of generation tokens processed.", m,
          (double)es.generation_tokens);
    gauge(
        b, "counter", "kiln:computed_tokens_total",
        "Tokens run through the model (prefill chunks, recomputation after preemption, decoding).",
        m, (double)es.computed_tokens);
    if (s->o.spec.kind) spec_print(b, &es, m, s->o.spec.k);
    static const char *const reasons[] = {"stop", "length", "abort", "error"};
    evbuffer_add_printf(b, "# HELP vllm:request_success_total Count of finished requests by "
                           "finished reason (one per choice).\n"
                           "# TYPE vllm:request_success_total counter\n");
    for (int i = 0; i < 4; i++)
        evbuffer_add_printf(
            b, "vllm:request_success_total{finished_reason=\"%s\",model_name=\"%s\"} %llu\n",
            reasons[i], m, (unsigned long long)s->met.finished[i]);
    hist_print(b, "vllm:time_to_first_token_seconds", "Time to first token in seconds.",
               &s->met.ttft, m);
    hist_print(b, "vllm:inter_token_latency_seconds", "Inter-token latency in seconds.",
               &s->met.itl, m);
    hist_print(b, "vllm:e2e_request_latency_seconds", "End to end request latency in seconds.",
               &s->met.e2e, m);
    hist_print(b, "vllm:request_queue_time_seconds",
               "Time from arrival until the engine first scheduled the request, in seconds.",
               &s->met.queue, m);
    evbuffer_add_printf(b, "# HELP kiln:http_responses_total HTTP responses by status class.\n"
                           "# TYPE kiln:http_responses_total counter\n");
    for (int i = 1; i <= 5; i++)
        evbuffer_add_printf(b, "kiln:http_responses_total{code=\"%dxx\",model_name=\"%s\"} %llu\n",
                            i, m, (unsigned long long)s->met.http[i]);
    evbuffer_add_printf(
        b,
        "# HELP kiln:requests_in_flight HTTP generation requests in flight.\n"
        "# TYPE kiln:requests_in_flight gauge\nkiln:requests_in_flight{model_name=\"%s\"} %d\n",
        m, s->calls.n);
    evbuffer_add_printf(
        b,
        "# HELP kiln:http_connections Open client connections (as of the last count).\n"
        "# TYPE kiln:http_connections gauge\nkiln:http_connections{model_name=\"%s\"} %d\n",
        m, net_conns_count(s->tracked));
    step_hist_print(b, "kiln_engine_step_seconds",
                    "Duration of the engine steps that ran the model, in seconds.",
                    engine_step_s_le, ENGINE_STEP_S_BUCKETS - 1, es.step_s_count, es.step_s_sum, m);
    step_hist_print(b, "kiln_engine_step_tokens",
                    "Tokens run through the model per engine step (the batch size).",
                    engine_step_tok_le, ENGINE_STEP_TOK_BUCKETS - 1, es.step_tok_count,
                    (double)es.step_tok_sum, m);
    if (ready) srv_lora_metrics(s, b, m);
    gauge(b, "counter", "kiln_worker_busy_seconds_total",
          "Time the compute workers spent running kernels, summed over the workers, in seconds "
          "(divided by kiln_workers and wall time: their busy fraction).",
          m, (double)es.worker_busy_ns * 1e-9);
    gram_cache_stats gs;
    gram_cache_stats_get(s->grams, &gs);
    gauge(b, "gauge", "kiln:grammar_cache_bytes",
          "Bytes held by the cache of compiled schemas and grammars (--grammar-cache).", m,
          (double)gs.bytes);
    gauge(b, "gauge", "kiln:grammar_cache_entries", "Compiled schemas and grammars cached.", m,
          (double)gs.entries);
    gauge(b, "counter", "kiln:grammar_cache_misses_total",
          "Requests whose schema or grammar had to be compiled.", m, (double)gs.misses);
    gauge(b, "counter", "kiln:grammar_tokens_total", "Tokens sampled under a grammar.", m,
          (double)es.grammar_tokens);
    gauge(b, "counter", "kiln:grammar_mask_seconds_total",
          "Engine-thread time spent masking logits to a grammar and advancing it, in seconds.", m,
          (double)es.grammar_ns * 1e-9);
    gauge(b, "gauge", "kiln_workers", "Compute workers (threads) of the engine.", m, es.n_workers);
    expert_print(b, &es, m);
    char proc[2048];
    evbuffer_add(b, proc, kl_proc_metrics(proc, sizeof proc));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, NULL, b);
    srv_count_status(s, 200);
    evbuffer_free(b);
}
