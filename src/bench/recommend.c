/* bench/recommend.c: `--recommend`: serving configuration from a sweep's saturation point
 * (see sweep.h). The arithmetic, per replica:
 *   max concurrency C  = the saturation concurrency (rate sweeps: Little's law, rate x E2E)
 *   throughput X       = requests/s at saturation
 *   queue length Q     = requests that can wait and still start within the TTFT SLO:
 *                        X x (SLO - TTFT p90 at saturation), at least 1 (C without a TTFT SLO)
 *   autoscale target   = average vllm:num_requests_waiting of max(1, Q/2) per pod
 *   replicas           = ceil(target rate / (0.8 X)): 20% headroom for bursts */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/report.h"
#include "bench/sweep.h"

#define HEADROOM 0.8
/* The name the HPA asks the custom metrics API for: prometheus-adapter-rule.yaml serves
 * vllm:num_requests_waiting under its own name, as deploy/serve/prometheus-adapter-rules.yaml
 * does for the shipped manifests. */
#define ADAPTER_METRIC "vllm:num_requests_waiting"

/* A Kubernetes object name from a model name: lowercase letters, digits and '-'. */
static void k8s_name(char *dst, size_t cap, const char *model)
{
    size_t n = snprintf(dst, cap, "kiln-");
    for (const char *p = model; *p && n + 1 < cap && n < 60; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) ch = '-';
        if (ch == '-' && dst[n - 1] == '-') continue;
        dst[n++] = ch;
    }
    while (n > 4 && dst[n - 1] == '-')
        n--;
    dst[n] = 0;
}

int kb_recommend(const kb_sweep *w, const kb_config *c, const kb_sweep_opts *o, const char *model,
                 const char *out, char **md, kl_err *err)
{
    *md = NULL;
    int k = w->saturation[0];
    if (k < 0)
        return kl_errf(err, KL_ENOTFOUND,
                       "--recommend: no step of the sweep met the SLO; lower the "
                       "starting load or relax --slo-ttft/--slo-tpot");
    const kb_summary *s = &w->steps[k].s[0];
    double x = s->req_per_s;
    int conc = w->by_rate ? (int)ceil(x * s->e2e.mean / 1000.0) : (int)w->steps[k].load;
    if (conc < 1) conc = 1;
    int queue = conc;
    if (c->slo_ttft_ms > 0) {
        double slack_s = (c->slo_ttft_ms - s->ttft.p90) / 1000.0;
        queue = (int)floor(x * slack_s);
        if (queue < 1) queue = 1;
    }
    int waiting_target = queue / 2 > 1 ? queue / 2 : 1;
    int replicas = 1, replicas_bare = 1;
    if (o->target_rate > 0 && x > 0) {
        replicas_bare = (int)ceil(o->target_rate / x);
        replicas = (int)ceil(o->target_rate / (HEADROOM * x));
    }
    int max_replicas = replicas * 2 > replicas + 2 ? replicas * 2 : replicas + 2;
    int max_wait_ms = c->slo_ttft_ms > 0 ? (int)c->slo_ttft_ms : 30000;
    char name[80];
    k8s_name(name, sizeof name, model);

    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    if (!f) return kl_errf(err, KL_ENOMEM, "out of memory");
    fprintf(f, "# Serving recommendation for %s at %s\n\n", model, c->target[0].url);
    fprintf(f, "Measured by `kiln bench --sweep` (%s sweep, %d steps; stopped: %s).\n",
            w->by_rate ? "rate" : "concurrency", w->n_steps, w->stop_reason);
    if (c->slo_ttft_ms > 0 || c->slo_tpot_ms > 0)
        fprintf(f, "SLO: TTFT <= %g ms, TPOT <= %g ms (0: none), met by >= %.0f%% of requests.\n",
                c->slo_ttft_ms, c->slo_tpot_ms, o->attainment * 100);
    else
        fprintf(f, "No SLO given: the saturation point is where throughput stops rising.\n");
    fprintf(f,
            "\n## Saturation point (one replica)\n\n"
            "- %s %g: %.2f requests/s, %.1f output tokens/s\n"
            "- TTFT p50 %.1f / p90 %.1f ms, TPOT p50 %.2f / p90 %.2f ms, E2E p90 %.1f ms\n",
            w->by_rate ? "offered rate" : "concurrency", w->steps[k].load, x, s->out_tok_per_s,
            s->ttft.p50, s->ttft.p90, s->tpot.p50, s->tpot.p90, s->e2e.p90);
    fprintf(f,
            "\n## Per replica\n\n"
            "- max concurrency: **%d** requests in flight (server batch limit, e.g. vLLM "
            "`--max-num-seqs %d`; gateway `saturation.max_inflight`)\n"
            "- queue length: **%d** waiting requests at most (%s)\n",
            conc, conc, queue,
            c->slo_ttft_ms > 0 ? "throughput x the TTFT slack left at saturation: a request queued "
                                 "behind them still starts within the TTFT SLO"
                               : "one batch; no TTFT SLO was given");
    fprintf(f,
            "\n## Autoscaling\n\n"
            "- scale on the pods metric `vllm:num_requests_waiting`, average target **%d** per "
            "pod (half the queue: scale out before requests are shed) -> `hpa.yaml`\n"
            "- the HPA reads it through prometheus-adapter: `prometheus-adapter-rule.yaml` is "
            "the rule that serves it on the custom metrics API (a ConfigMap to apply, or the "
            "rule to merge into the adapter's own rules)\n",
            waiting_target);
    if (o->target_rate > 0)
        fprintf(f,
                "- target rate %.2f requests/s: %d replicas at 100%% of saturation, **%d** with "
                "20%% headroom (minReplicas %d, maxReplicas %d)\n",
                o->target_rate, replicas_bare, replicas, replicas, max_replicas);
    else
        fprintf(f,
                "- no `--target-rate` given: replicas needed = target rate / %.2f, plus 20%% "
                "headroom\n",
                HEADROOM * x);
    fprintf(
        f,
        "\n## Gateway\n\n`gateway.json` is a `kiln gateway` config fragment: add your replicas' "
        "URLs to the pool; a replica counts as saturated at %d in flight or %d waiting, and "
        "the gateway queues up to %d requests for at most %d ms.\n",
        conc, queue, queue * replicas, max_wait_ms);
    if (fclose(f)) {
        free(doc);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }

    char hpa[2048], rule[2048];
    snprintf(hpa, sizeof hpa,
             "# kiln bench --recommend: scale on the waiting queue measured at saturation.\n"
             "# The HPA reads vllm:num_requests_waiting through the custom metrics API:\n"
             "# prometheus-adapter-rule.yaml (beside this file) is the prometheus-adapter rule\n"
             "# that serves it there.\n"
             "apiVersion: autoscaling/v2\n"
             "kind: HorizontalPodAutoscaler\n"
             "metadata:\n"
             "  name: %s\n"
             "spec:\n"
             "  scaleTargetRef:\n"
             "    apiVersion: apps/v1\n"
             "    kind: Deployment\n"
             "    name: %s\n"
             "  minReplicas: %d\n"
             "  maxReplicas: %d\n"
             "  metrics:\n"
             "  - type: Pods\n"
             "    pods:\n"
             "      metric:\n"
             "        name: " ADAPTER_METRIC "\n"
             "      target:\n"
             "        type: AverageValue\n"
             "        averageValue: \"%d\"\n"
             "  behavior:\n"
             "    scaleUp:\n"
             "      stabilizationWindowSeconds: 0\n"
             "    scaleDown:\n"
             "      stabilizationWindowSeconds: 300\n",
             name, name, replicas, max_replicas, waiting_target);
    snprintf(
        rule, sizeof rule,
        "# kiln bench --recommend: the prometheus-adapter rule hpa.yaml needs. It serves each\n"
        "# pod's vllm:num_requests_waiting (Prometheus scraping the replicas' /metrics, with the\n"
        "# usual namespace and pod labels) on the custom metrics API under the same name.\n"
        "#   kubectl apply -n monitoring -f prometheus-adapter-rule.yaml\n"
        "# and point the adapter at this ConfigMap (--config), or merge the rule into the rules\n"
        "# it already reads (its Helm chart's rules.custom); it reads them at start. Check:\n"
        "#   kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1/namespaces/NS/pods/*/"
        "vllm:num_requests_waiting\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: prometheus-adapter-kiln\n"
        "data:\n"
        "  config.yaml: |\n"
        "    rules:\n"
        "    - seriesQuery: 'vllm:num_requests_waiting{namespace!=\"\",pod!=\"\"}'\n"
        "      resources:\n"
        "        overrides:\n"
        "          namespace: {resource: \"namespace\"}\n"
        "          pod: {resource: \"pod\"}\n"
        "      name:\n"
        "        matches: \"^vllm:num_requests_waiting$\"\n"
        "        as: \"" ADAPTER_METRIC "\"\n"
        "      metricsQuery: 'max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n");
    json_t *gw = json_pack("{s:{s:i, s:i}, s:{s:i, s:i}, s:[{s:s, s:[{s:[{s:s}]}]}]}", "saturation",
                           "max_inflight", conc, "max_waiting", queue, "queue", "max",
                           queue * replicas, "max_wait_ms", max_wait_ms, "models", "name", model,
                           "pools", "endpoints", "url", c->target[0].url);
    int rc = gw ? 0 : kl_errf(err, KL_ENOMEM, "out of memory");
    if (!rc) rc = kb_write_file(out, "recommend.md", doc, err);
    if (!rc) rc = kb_write_file(out, "hpa.yaml", hpa, err);
    if (!rc) rc = kb_write_file(out, "prometheus-adapter-rule.yaml", rule, err);
    if (!rc) rc = kb_write_json(out, "gateway.json", gw, err);
    json_decref(gw);
    if (rc)
        free(doc);
    else
        *md = doc;
    return rc;
}
