#include "t.h"

#include "server/internal.h"

TEST(server_json_text_replaces_invalid_utf8)
{
    json_t *v = net_json_text("ok \xc3\xa9", 5);
    T_STREQ(json_string_value(v), "ok \xc3\xa9");
    json_decref(v);
    /* a lone continuation byte, a truncated sequence, a NUL: each becomes U+FFFD */
    v = net_json_text("a\x80"
                      "b\xe2\x82"
                      "\0c",
                      7);
    T_ASSERT(v != NULL);
    T_STREQ(json_string_value(v), "a\xef\xbf\xbd"
                                  "b\xef\xbf\xbd\xef\xbf\xbd"
                                  "\xef\xbf\xbd"
                                  "c");
    char *dump = json_dumps(v, JSON_ENCODE_ANY);
    T_ASSERT(dump != NULL);
    free(dump);
    json_decref(v);
    /* valid UTF-8 around a NUL: only the NUL is replaced, and the output parses with jansson's
     * default flags (which refuse \u0000) */
    v = net_json_text("\xc3\xa9\0x", 4);
    T_STREQ(json_string_value(v), "\xc3\xa9\xef\xbf\xbdx");
    dump = json_dumps(v, JSON_ENCODE_ANY);
    json_t *back = json_loads(dump, JSON_DECODE_ANY, NULL);
    T_ASSERT(back != NULL);
    json_decref(back);
    free(dump);
    json_decref(v);
}

TEST(server_hist_buckets_are_cumulative_upper_bounds)
{
    srv_metrics m;
    srv_metrics_init(&m);
    kl_hist_observe(&m.ttft, 0.001); /* le 0.001 */
    kl_hist_observe(&m.ttft, 0.05);  /* le 0.06 */
    kl_hist_observe(&m.ttft, 1e6);   /* +Inf */
    kl_hist_observe(&m.ttft, -1);    /* clamped to 0 */
    T_EQ(m.ttft.n, 4);
    T_EQ(m.ttft.count[0], 2);
    T_EQ(m.ttft.count[5], 1);
    T_EQ(m.ttft.count[SRV_TTFT_B], 1);
    T_NEAR(m.ttft.sum, 0.051 + 1e6, 1e-6);
}
