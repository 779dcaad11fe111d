/* tests/unit/bench_svg.c: the hand-written SVG charts of kiln bench (structure, ticks, escaping,
 * skipped points), and --recommend's files (the gateway fragment must load as a gateway config). */
#include <math.h>
#include <string.h>

#include "bench/svg.h"
#include "bench/sweep.h"
#include "gateway/config.h"
#include "t.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

TEST(bench_svg_nice_steps)
{
    T_NEAR(kb_nice_step(100, 5), 20, 1e-9);
    T_NEAR(kb_nice_step(11508, 6), 2000, 1e-9);
    T_NEAR(kb_nice_step(64, 6), 20, 1e-9);
    T_NEAR(kb_nice_step(0.37, 5), 0.1, 1e-12);
    T_NEAR(kb_nice_step(7, 5), 2, 1e-9);
    T_NEAR(kb_nice_step(0, 5), 1, 0);
}

TEST(bench_svg_chart_structure)
{
    double x[] = {1, 2, 4, 8}, y1[] = {10, 12, 20, 55}, y2[] = {15, 18, NAN, 80};
    kb_series s[] = {{"TTFT p50", x, y1, 4, false}, {"TTFT <p99> & co", x, y2, 4, true}};
    kb_chart c = {"Time to first token vs load",
                  "concurrency",
                  "TTFT (ms)",
                  50,
                  "SLO 50 ms",
                  4,
                  "saturation",
                  0};
    char *svg = kb_svg_chart(&c, s, 2);
    T_ASSERT(svg);
    T_ASSERT(!strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39));
    T_CONTAINS(svg, "</svg>\n");
    T_EQ(count(svg, "<svg"), 1);
    T_CONTAINS(svg, ">Time to first token vs load</text>");
    T_CONTAINS(svg, ">concurrency</text>");
    T_CONTAINS(svg, ">TTFT (ms)</text>");
    T_CONTAINS(svg, "TTFT &lt;p99&gt; &amp; co"); /* escaped */
    T_ASSERT(!strstr(svg, "<p99>"));
    T_EQ(count(svg, "<polyline"), 2);
    T_EQ(count(svg, "stroke-dasharray=\"7 4\""), 2); /* the dashed series and its legend line */
    T_EQ(count(svg, "<g class=\"series\""), 2);
    /* 4 + 3 points (the NaN is skipped), plus one marker per legend entry */
    T_EQ(count(svg, "<circle"), 7 + 2);
    T_CONTAINS(svg, "class=\"hline\"");
    T_CONTAINS(svg, ">SLO 50 ms</text>");
    T_CONTAINS(svg, "class=\"vline\"");
    /* y axis: 0..100 by 20 (max 80 x 1.05 rounds up to 100); x axis 0..8 by 2 */
    T_CONTAINS(svg, "text-anchor=\"end\">100</text>");
    T_CONTAINS(svg, "text-anchor=\"end\">20</text>");
    T_CONTAINS(svg, "text-anchor=\"middle\">8</text>");
    T_ASSERT(!strstr(svg, "nan") && !strstr(svg, "inf"));
    /* balanced groups and texts */
    T_EQ(count(svg, "<g "), count(svg, "</g>"));
    T_EQ(count(svg, "<text"), count(svg, "</text>"));
    free(svg);
    /* no data at all still gives a valid, empty chart */
    kb_chart e = {"empty", "x", "y", 0, NULL, 0, NULL, 0};
    svg = kb_svg_chart(&e, NULL, 0);
    T_ASSERT(svg);
    T_EQ(count(svg, "<polyline"), 0);
    T_CONTAINS(svg, "</svg>");
    free(svg);
}

TEST(bench_svg_axis_follows_the_data_not_a_far_slo)
{
    /* TPOT around 2 ms against a 50 ms SLO: the axis is the data's, the SLO is named above */
    double x[] = {1, 2, 4}, y[] = {1.2, 1.6, 2.0};
    kb_series s[] = {{"TPOT p90", x, y, 3, false}};
    kb_chart c = {"TPOT", "concurrency", "TPOT (ms)", 50, "SLO 50 ms", 0, NULL, 0};
    char *svg = kb_svg_chart(&c, s, 1);
    T_ASSERT(svg);
    T_ASSERT(!strstr(svg, "class=\"hline\""));
    T_CONTAINS(svg, ">SLO 50 ms (above the chart)</text>");
    T_CONTAINS(svg, "text-anchor=\"end\">2.5</text>"); /* 2.0 x 1.05 rounds up to 2.5 */
    T_ASSERT(!strstr(svg, ">50</text>") && !strstr(svg, ">10</text>"));
    free(svg);
    /* an SLO within 3x of the data stays on the axis, drawn */
    double near[] = {20, 24, 30};
    kb_series sn[] = {{"TPOT p90", x, near, 3, false}};
    svg = kb_svg_chart(&c, sn, 1);
    T_ASSERT(svg);
    T_CONTAINS(svg, "class=\"hline\"");
    T_CONTAINS(svg, ">SLO 50 ms</text>");
    T_ASSERT(!strstr(svg, "above the chart"));
    T_CONTAINS(svg, "text-anchor=\"end\">60</text>");
    free(svg);
    /* no data: the SLO line alone sets the axis */
    kb_series none[] = {{"TPOT p90", x, (double[]){-1, -1, -1}, 3, false}};
    svg = kb_svg_chart(&c, none, 1);
    T_ASSERT(svg);
    T_CONTAINS(svg, "class=\"hline\"");
    free(svg);
}

TEST(bench_svg_large_axis_uses_one_unit)
{
    double x[] = {1, 64}, y[] = {400, 11508};
    kb_series s[] = {{"tok/s", x, y, 2, false}};
    kb_chart c = {"t", "x", "y", 0, NULL, 0, NULL, 0};
    char *svg = kb_svg_chart(&c, s, 1);
    T_ASSERT(svg);
    /* 11508 x 1.05 -> steps of 5000 up to 15000, all labelled in k */
    T_CONTAINS(svg, ">5k</text>");
    T_CONTAINS(svg, ">15k</text>");
    T_ASSERT(!strstr(svg, ">5000</text>"));
    free(svg);
    /* a fixed top: shares from 0 to 1 */
    double share[] = {0.25, 1.0};
    kb_series sh[] = {{"cdf", x, share, 2, false}};
    kb_chart cs = {"t", "x", "share", 0, NULL, 0, NULL, 1};
    svg = kb_svg_chart(&cs, sh, 1);
    T_ASSERT(svg);
    T_CONTAINS(svg, "text-anchor=\"end\">1.0</text>");
    T_ASSERT(!strstr(svg, ">1.2</text>"));
    free(svg);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

TEST(bench_recommend_writes_loadable_gateway_fragment)
{
    kb_config c;
    kb_config_defaults(&c);
    kl_err err = {0};
    T_EQ(kb_target_parse(&c.target[0], "http://127.0.0.1:8001", &err), 0);
    c.n_targets = 1;
    c.slo_ttft_ms = 500;
    c.slo_tpot_ms = 50;
    kb_sweep_opts o;
    kb_sweep_opts_defaults(&o);
    o.target_rate = 100;
    kb_sweep *w = calloc(1, sizeof *w);
    double loads[] = {1, 2, 4, 8};
    double rps[] = {2, 4, 7, 8}, ttft90[] = {50, 60, 100, 700};
    for (int i = 0; i < 4; i++) {
        w->steps[i].load = loads[i];
        w->steps[i].s[0].req_per_s = rps[i];
        w->steps[i].s[0].ttft.p90 = ttft90[i];
        w->steps[i].s[0].n = 10;
        w->steps[i].meets[0] = ttft90[i] <= 500;
    }
    w->n_steps = 4;
    w->saturation[0] = kb_sweep_saturation(w, 0, true);
    T_EQ(w->saturation[0], 2); /* concurrency 4: the highest load meeting the SLO */
    snprintf(w->stop_reason, sizeof w->stop_reason, "SLO failed at concurrency 8");
    const char *dir = t_tmpdir();
    char *md = NULL;
    T_EQ(kb_recommend(w, &c, &o, "Chat_Model.v1", dir, &md, &err), 0);
    T_ASSERT(md);
    T_CONTAINS(md, "max concurrency: **4**");
    /* queue: 7 req/s x (500 - 100) ms = 2.8 -> 2; replicas: 100 / (0.8 x 7) = 17.9 -> 18 */
    T_CONTAINS(md, "queue length: **2**");
    T_CONTAINS(md, "**18** with 20% headroom");
    T_CONTAINS(md, "`prometheus-adapter-rule.yaml`");
    free(md);
    char path[512];
    snprintf(path, sizeof path, "%s/hpa.yaml", dir);
    char *hpa = slurp(path);
    T_ASSERT(hpa);
    T_CONTAINS(hpa, "kind: HorizontalPodAutoscaler");
    /* the HPA asks for the name the adapter rule beside it gives vllm:num_requests_waiting */
    const char *metric = strstr(hpa, "      metric:\n        name: ");
    T_ASSERT(metric);
    metric += strlen("      metric:\n        name: ");
    char name[64] = "";
    sscanf(metric, "%63[^\n]", name);
    T_STREQ(name, "vllm:num_requests_waiting");
    T_CONTAINS(hpa, "name: kiln-chat-model-v1\n");
    T_CONTAINS(hpa, "minReplicas: 18\n");
    T_CONTAINS(hpa, "maxReplicas: 36\n");
    T_CONTAINS(hpa, "averageValue: \"1\"");
    T_CONTAINS(hpa, "prometheus-adapter-rule.yaml");
    free(hpa);
    snprintf(path, sizeof path, "%s/prometheus-adapter-rule.yaml", dir);
    char *rule = slurp(path);
    T_ASSERT(rule);
    T_CONTAINS(rule, "kind: ConfigMap\n");
    T_CONTAINS(rule, "    rules:\n    - seriesQuery: 'vllm:num_requests_waiting{");
    char as[80];
    snprintf(as, sizeof as, "        as: \"%s\"\n", name);
    T_CONTAINS(rule, as);
    T_CONTAINS(rule, "        matches: \"^vllm:num_requests_waiting$\"\n");
    T_CONTAINS(rule, "pod: {resource: \"pod\"}");
    T_ASSERT(!strchr(rule, '\t')); /* YAML: spaces only */
    free(rule);
    snprintf(path, sizeof path, "%s/gateway.json", dir);
    gw_config *g = NULL;
    T_EQ(gw_config_load(&g, path, &err), 0);
    T_EQ(g->sat_max_inflight, 4);
    T_EQ(g->sat_max_waiting, 2);
    T_EQ(g->queue_max, 36);
    T_EQ(g->queue_max_wait_ms, 500);
    gw_config_free(g);
    /* nothing met the SLO: nothing to recommend, said plainly */
    for (int i = 0; i < 4; i++)
        w->steps[i].meets[0] = false;
    w->saturation[0] = kb_sweep_saturation(w, 0, true);
    T_EQ(w->saturation[0], -1);
    T_EQ(kb_recommend(w, &c, &o, "m", dir, &md, &err), KL_ENOTFOUND);
    T_CONTAINS(err.msg, "no step of the sweep met the SLO");
    free(w);
}

TEST(bench_saturation_without_slo_is_the_knee)
{
    kb_sweep *w = calloc(1, sizeof *w);
    double tps[] = {100, 190, 300, 310, 312};
    for (int i = 0; i < 5; i++) {
        w->steps[i].load = 1 << i;
        w->steps[i].s[0].out_tokens = 1;
        w->steps[i].s[0].out_tok_per_s = tps[i];
        w->steps[i].meets[0] = true;
    }
    w->n_steps = 5;
    T_EQ(kb_sweep_saturation(w, 0, false), 2); /* 300 >= 0.95 x 312 */
    T_EQ(kb_sweep_saturation(w, 0, true), 4);
    /* past the peak: 16 still meets the SLO but serves less than 8 did */
    w->steps[4].s[0].out_tok_per_s = 250;
    T_EQ(kb_sweep_saturation(w, 0, true), 3);
    w->steps[3].meets[0] = false; /* then 4 (300) is the highest that meets it */
    T_EQ(kb_sweep_saturation(w, 0, true), 2);
    free(w);
}
