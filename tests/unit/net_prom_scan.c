#include "t.h"

#include "net/prom_scan.h"

static bool scan(const char *line, net_prom_sample *s)
{
    return net_prom_scan(line, strlen(line), s);
}

TEST(net_prom_scan_sample_lines)
{
    net_prom_sample s;
    T_ASSERT(scan("vllm:num_requests_running 3", &s));
    T_ASSERT(net_prom_is(&s, "vllm:num_requests_running"));
    T_ASSERT(!net_prom_is(&s, "vllm:num_requests"));
    T_EQ((int)s.labels_len, 0);
    T_NEAR(s.value, 3, 0);
    /* a '}' and a ',' inside a quoted value, escapes, a timestamp */
    T_ASSERT(scan("m_total{a=\"x}y,z\",b=\"q\\\"\\\\\\n\"} 2.5e1 1700000000000", &s));
    T_NEAR(s.value, 25, 0);
    char v[16];
    T_ASSERT(net_prom_label(&s, "a", v, sizeof v));
    T_STREQ(v, "x}y,z");
    T_ASSERT(net_prom_label(&s, "b", v, sizeof v));
    T_STREQ(v, "q\"\\\n");
    T_ASSERT(!net_prom_label(&s, "c", v, sizeof v));
    T_ASSERT(!net_prom_label(&s, "a", v, 5)); /* "x}y,z" needs 6 bytes */
    T_ASSERT(scan("m{} -1", &s));
    T_NEAR(s.value, -1, 0);
}

TEST(net_prom_scan_refuses_malformed_lines)
{
    const char *bad[] = {"",      "# HELP m help", " m 1",       "1m 1",    "m",
                         "m ",    "m{a=\"1\" 1",   "m{a=\"1} 1", "m 1 2.5", "m 1 junk",
                         "m nan", "m 1e999",       "m- 1",       "m\xff 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        net_prom_sample s;
        T_ASSERT(!scan(bad[i], &s));
    }
}

static void count(const net_prom_sample *s, void *ctx)
{
    (void)s;
    ++*(int *)ctx;
}

TEST(net_prom_each_skips_what_does_not_scan)
{
    const char *text = "# TYPE m counter\nm 1\n\ngarbage {{{\nm{a=\"b\"} 2\nm 3"; /* no newline */
    int n = 0;
    net_prom_each(text, strlen(text), count, &n);
    T_EQ(n, 3);
}
