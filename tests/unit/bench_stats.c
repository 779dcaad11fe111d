/* tests/unit/bench_stats.c: percentiles, SLO/goodput, length distributions, seeded Poisson
 * arrivals, the SSE reader and endpoint URLs of kiln bench. */
#include <string.h>

#include "bench/bench.h"
#include "bench/sse.h"
#include "bench/workload.h"
#include "t.h"

TEST(bench_percentile_interpolates)
{
    double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    T_NEAR(kb_percentile(v, 10, 50), 5.5, 1e-12);
    T_NEAR(kb_percentile(v, 10, 90), 9.1, 1e-12);
    T_NEAR(kb_percentile(v, 10, 0), 1, 0);
    T_NEAR(kb_percentile(v, 10, 100), 10, 0);
    T_NEAR(kb_percentile(v, 1, 99), 1, 0);
    T_NEAR(kb_percentile(v, 0, 50), 0, 0);
    double w[] = {9, 1, 5, 3, 7};
    kb_pct p;
    kb_pct_of(w, 5, &p);
    T_EQ(p.n, 5);
    T_NEAR(p.mean, 5, 1e-12);
    T_NEAR(p.p50, 5, 1e-12);
    T_NEAR(p.p90, 8.2, 1e-12);
    T_NEAR(p.p99, 8.92, 1e-12);
    T_NEAR(p.max, 9, 0);
    T_ASSERT(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
}

static kb_record rec(int target, kb_status st, double ttft, double tpot, int out)
{
    kb_record r;
    memset(&r, 0, sizeof r);
    r.target = target;
    r.status = st;
    r.ttft_ms = ttft;
    r.tpot_ms = tpot;
    r.e2e_ms = ttft + tpot * (out - 1);
    r.usage = true;
    r.in_tokens = 10;
    r.out_tokens = out;
    return r;
}

TEST(bench_goodput_counts_only_requests_meeting_both_slos)
{
    kb_record recs[] = {
        rec(0, KB_OK, 50, 10, 11),  /* meets */
        rec(0, KB_OK, 150, 10, 11), /* TTFT too slow */
        rec(0, KB_OK, 50, 30, 11),  /* TPOT too slow */
        rec(0, KB_OK, 80, -1, 1),   /* one token: no TPOT, meets */
        rec(0, KB_ERR_HTTP_5XX, -1, -1, 0),
        rec(1, KB_OK, 50, 10, 11), /* other target: not counted */
    };
    recs[4].usage = false;
    recs[4].in_tokens = recs[4].out_tokens = -1;
    kb_result r = {.rec = recs, .n_rec = 6, .duration_s = {2.0, 1.0}};
    kb_summary s;
    T_EQ(kb_summarize(&r, 0, 100, 20, &s), 0);
    T_EQ(s.n, 5);
    T_EQ(s.n_ok, 4);
    T_EQ(s.n_good, 2);
    T_EQ(s.errors[KB_ERR_HTTP_5XX], 1);
    T_NEAR(s.goodput_rps, 1.0, 1e-12);
    T_NEAR(s.req_per_s, 2.0, 1e-12);
    T_EQ(s.out_tokens, 34);
    T_EQ(s.in_tokens, 40);
    T_NEAR(s.out_tok_per_s, 17, 1e-12);
    T_NEAR(s.good_fraction, 0.4, 1e-12);
    /* no SLO: every successful request is good; an impossible one: none */
    T_EQ(kb_summarize(&r, 0, 0, 0, &s), 0);
    T_EQ(s.n_good, 4);
    T_EQ(kb_summarize(&r, 0, 0.001, 0, &s), 0);
    T_EQ(s.n_good, 0);
    T_NEAR(s.goodput_rps, 0, 0);
    T_EQ(kb_summarize(&r, 1, 100, 20, &s), 0);
    T_EQ(s.n, 1);
    T_NEAR(s.goodput_rps, 1.0, 1e-12);
}

TEST(bench_dist_parse_and_sample)
{
    kb_dist d;
    kl_err err = {0};
    T_EQ(kb_dist_parse(&d, "128", &err), 0);
    kl_rng r;
    kl_rng_seed(&r, 1);
    T_EQ(kb_dist_sample(&d, &r), 128);
    T_EQ(kb_dist_parse(&d, "uniform:64:256", &err), 0);
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < 20000; i++) {
        int v = kb_dist_sample(&d, &r);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    T_EQ(lo, 64);
    T_EQ(hi, 256);
    T_EQ(kb_dist_parse(&d, "normal:128:32", &err), 0);
    double sum = 0, sq = 0;
    int n = 20000;
    for (int i = 0; i < n; i++) {
        double v = kb_dist_sample(&d, &r);
        sum += v;
        sq += v * v;
    }
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    T_NEAR(mean, 128, 1.0);
    T_NEAR(sd, 32, 1.0);
    char buf[64];
    kb_dist_format(&d, buf, sizeof buf);
    T_STREQ(buf, "normal:128:32");
    const char *bad[] = {"",           "0",         "-5",
                         "abc",        "uniform:5", "uniform:9:3",
                         "normal:0:3", "12x",       "uniform:1:2:3",
                         "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        T_EQ(kb_dist_parse(&d, bad[i], &err), KL_EINVAL);
        T_CONTAINS(err.msg, "bad length distribution");
    }
}

TEST(bench_poisson_arrivals_are_seeded_and_have_the_rate)
{
    kl_rng a, b, c;
    kl_rng_seed_stream(&a, 42, 7);
    kl_rng_seed_stream(&b, 42, 7);
    kl_rng_seed_stream(&c, 43, 7);
    double ta = 0, tb = 0, tc = 0;
    int n = 50000;
    double sq = 0;
    for (int i = 0; i < n; i++) {
        double g = kb_rng_exp(&a, 10.0);
        T_ASSERT(g >= 0);
        ta += g;
        sq += g * g;
        tb += kb_rng_exp(&b, 10.0);
        tc += kb_rng_exp(&c, 10.0);
    }
    T_NEAR(ta, tb, 0); /* same seed: the same arrivals */
    T_ASSERT(ta != tc);
    T_NEAR(n / ta, 10.0, 0.2); /* rate */
    double mean = ta / n;
    T_NEAR(sqrt(sq / n - mean * mean), 0.1, 0.005); /* exponential: sd == mean */
}

TEST(bench_workload_is_deterministic_per_item)
{
    kb_config c;
    kb_config_defaults(&c);
    c.seed = 5;
    c.input_len = (kb_dist){KB_DIST_UNIFORM, 10, 20};
    c.output_len = (kb_dist){KB_DIST_FIXED, 7, 0};
    c.shared_prefix = 30;
    c.groups = 2;
    kb_workload *w;
    kl_err err = {0};
    T_EQ(kb_workload_open(&w, &c, &err), 0);
    char models[KB_MAX_MODELS][128] = {"m"};
    kb_item a, b, d;
    T_EQ(kb_workload_item(w, 3, models, &a), 0);
    T_EQ(kb_workload_item(w, 4, models, &d), 0);
    T_EQ(kb_workload_item(w, 3, models, &b), 0);
    T_STREQ(a.body, b.body);
    T_ASSERT(strcmp(a.body, d.body));
    T_CONTAINS(a.body, "\"max_tokens\":7");
    T_CONTAINS(a.body, "\"ignore_eos\":true");
    T_CONTAINS(a.body, "\"include_usage\":true");
    T_CONTAINS(a.body, "\"stream\":true");
    T_ASSERT(a.in_expected >= 40 && a.in_expected <= 50);
    T_EQ(a.out_expected, 7);
    /* the prompt has in_expected words */
    const char *p = strstr(a.body, "\"prompt\":\"") + 10;
    int words = 1;
    for (; *p != '"'; p++)
        words += *p == ' ';
    T_EQ(words, a.in_expected);
    free(a.body);
    free(b.body);
    free(d.body);
    kb_workload_close(w);
}

typedef struct {
    char got[8][64];
    int n;
} sse_sink;

static void sink(const char *data, size_t len, void *arg)
{
    sse_sink *s = arg;
    T_EQ(strlen(data), len);
    if (s->n < 8) snprintf(s->got[s->n++], 64, "%s", data);
}

TEST(bench_sse_reader_splits_events_across_pieces)
{
    const char *stream =
        ": comment\n\ndata: {\"a\":1}\n\ndata:x\r\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
    /* every split point gives the same events */
    for (size_t cut = 0; cut <= strlen(stream); cut++) {
        kb_sse r = {0};
        sse_sink s = {0};
        T_EQ(kb_sse_feed(&r, stream, cut, sink, &s), 0);
        T_EQ(kb_sse_feed(&r, stream + cut, strlen(stream) - cut, sink, &s), 0);
        T_EQ(s.n, 3);
        T_STREQ(s.got[0], "{\"a\":1}");
        T_STREQ(s.got[1], "x\ny");
        T_STREQ(s.got[2], "[DONE]");
        kb_sse_free(&r);
    }
    /* a line that never ends is refused, not grown without bound */
    kb_sse r = {0};
    sse_sink s = {0};
    char *big = malloc(KB_SSE_MAX + 10);
    memset(big, 'a', KB_SSE_MAX + 10);
    int rc = kb_sse_feed(&r, big, KB_SSE_MAX + 10, sink, &s);
    T_EQ(rc, KL_ERANGE);
    free(big);
    kb_sse_free(&r);
}

TEST(bench_target_parse)
{
    kb_target t;
    kl_err err = {0};
    T_EQ(kb_target_parse(&t, "http://127.0.0.1:8080", &err), 0);
    T_STREQ(t.host, "127.0.0.1");
    T_EQ(t.port, 8080);
    T_STREQ(t.prefix, "");
    T_EQ(kb_target_parse(&t, "http://example.com/api/v1/", &err), 0);
    T_STREQ(t.host, "example.com");
    T_EQ(t.port, 80);
    T_STREQ(t.prefix, "/api");
    T_EQ(kb_target_parse(&t, "https://x:1", &err), KL_EINVAL);
    T_CONTAINS(err.msg, "https is not supported");
    const char *bad[] = {"127.0.0.1:80", "http://",        "http://:80",
                         "http://h:0",   "http://h:99999", "http://h:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        T_EQ(kb_target_parse(&t, bad[i], &err), KL_EINVAL);
}

/* A speculating server's counters: summed over label sets (two models), other metrics and
 * comments ignored, a line that does not parse skipped; one counter missing: not present. */
TEST(bench_spec_counters_from_metrics_text)
{
    const char *text =
        "# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.\n"
        "# TYPE vllm:spec_decode_num_drafts_total counter\n"
        "vllm:spec_decode_num_drafts_total{model_name=\"a\"} 10\n"
        "vllm:spec_decode_num_drafts_total{model_name=\"b\"} 5\n"
        "vllm:spec_decode_num_drafts_total_extra 1000\n"
        "vllm:spec_decode_num_draft_tokens_total{model_name=\"a\"} 40\n"
        "vllm:spec_decode_num_draft_tokens_total{model_name=\"b\"} 2e1\n"
        "vllm:spec_decode_num_accepted_tokens_total{model_name=\"a\"} 12\n"
        "vllm:spec_decode_num_accepted_tokens_total{model_name=\"b\"} 3\n"
        "vllm:spec_decode_num_accepted_tokens_total{model_name=\"c\"} -4\n"
        "vllm:spec_decode_num_accepted_tokens_total{model_name=\"d\"} 7 junk\n"
        "vllm:spec_decode_num_accepted_tokens_total{model_name=\"e\" 9\n"
        "vllm:spec_decode_num_accepted_tokens_per_pos{model_name=\"a\",position=\"0\"} 8\n"
        "vllm:num_requests_running{model_name=\"a\"} 3";
    kb_spec s;
    T_ASSERT(kb_spec_parse(text, &s));
    T_ASSERT(s.present);
    T_NEAR(s.drafts, 15, 0);
    T_NEAR(s.draft_tokens, 60, 0);
    T_NEAR(s.accepted, 15, 0);
    T_ASSERT(!kb_spec_parse("vllm:spec_decode_num_drafts_total 1\n"
                            "vllm:spec_decode_num_draft_tokens_total 2\n",
                            &s));
    T_ASSERT(!s.present);
    T_ASSERT(!kb_spec_parse("", &s));
}
