#include "t.h"

#include "gateway/scrape.h"

TEST(gateway_scrape_reads_vllm_gauges)
{
    const char *text = "# HELP vllm:num_requests_running Number of requests running.\n"
                       "# TYPE vllm:num_requests_running gauge\n"
                       "vllm:num_requests_running{model_name=\"m\"} 3.0\n"
                       "vllm:num_requests_waiting{model_name=\"m\"} 7\n"
                       "vllm:num_requests_waiting_by_x{model_name=\"m\"} 99\n"
                       "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.25\n"
                       "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"sql,chat\","
                       "waiting_lora_adapters=\"sql,math\"} 1.7e9\n"
                       "vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"m\"} 5\n";
    gw_scrape s;
    T_ASSERT(gw_scrape_parse(text, strlen(text), &s));
    T_NEAR(s.running, 3, 0);
    T_NEAR(s.waiting, 7, 0);
    T_NEAR(s.kv_usage, 0.25, 0);
    T_EQ(s.n_adapters, 3);
    T_STREQ(s.adapters[0], "sql");
    T_STREQ(s.adapters[2], "math");
}

TEST(gateway_scrape_skips_garbage)
{
    const char *bad[] = {"",
                         "\n\n\n",
                         "vllm:num_requests_running{model_name=\"m\"} nan\n",
                         "vllm:num_requests_running{ 3\nvllm:num_requests_waiting 1e999\n",
                         "\xff\xfe garbage {{{ \"\"\" }}}\n",
                         "vllm:lora_requests_info{running_lora_adapters=\"unterminated} 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_scrape s;
        T_ASSERT(!gw_scrape_parse(bad[i], strlen(bad[i]), &s));
        T_EQ(s.n_adapters, 0);
    }
    const char *no_label = "vllm:num_requests_running 2\nvllm:num_requests_waiting 0\n";
    gw_scrape s;
    T_ASSERT(gw_scrape_parse(no_label, strlen(no_label), &s));
    T_NEAR(s.running, 2, 0);
}

/* Adapters resident while idle come from kiln serve's kiln:lora_adapter_resident (1: loaded; 0:
 * known, swapped out) or vLLM's vllm:lora_adapter_loaded, with the running and waiting ones. */
TEST(gateway_scrape_reads_resident_adapters)
{
    const char *text = "vllm:num_requests_running{model_name=\"m\"} 1\n"
                       "vllm:num_requests_waiting{model_name=\"m\"} 0\n"
                       "vllm:lora_requests_info{max_lora=\"8\",running_lora_adapters=\"a\","
                       "waiting_lora_adapters=\"\"} 1796440202.62\n"
                       "kiln:lora_adapter_resident{model_name=\"m\",lora_name=\"a\"} 1\n"
                       "kiln:lora_adapter_resident{model_name=\"m\",lora_name=\"b\"} 1\n"
                       "kiln:lora_adapter_resident{model_name=\"m\",lora_name=\"c\"} 0\n"
                       "vllm:lora_adapter_loaded{adapter_name=\"d\",level=\"gpu\"} 1\n"
                       "kiln:lora_adapter_resident{model_name=\"m\"} 1\n";
    gw_scrape s;
    T_ASSERT(gw_scrape_parse(text, strlen(text), &s));
    T_EQ(s.max_lora, 8);
    T_EQ(s.n_adapters, 3);
    T_STREQ(s.adapters[0], "a");
    T_STREQ(s.adapters[1], "b");
    T_STREQ(s.adapters[2], "d");
}
