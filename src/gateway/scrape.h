/* gateway/scrape.h: reading a replica's Prometheus text (/metrics) for what routing needs:
 * vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc (0-1; the
 * older vllm:gpu_cache_usage_perc too), and loaded LoRA adapters from vllm:lora_requests_info
 * (running_lora_adapters / waiting_lora_adapters labels, comma-separated) and the adapters
 * resident while idle, which that metric omits: kiln:lora_adapter_resident{lora_name} 1 (kiln
 * serve) or vllm:lora_adapter_loaded{adapter_name} 1. The text comes
 * from the network: lines and labels are bounded and anything unexpected is skipped. */
#ifndef KILN_GATEWAY_SCRAPE_H
#define KILN_GATEWAY_SCRAPE_H
#include <stdbool.h>
#include <stddef.h>

/* Adapters the gateway knows of per endpoint: a scrape's list (more are dropped) replaces the
 * endpoint's (gateway/picker.h), so one bound serves both. */
#define GW_MAX_ADAPTERS 32

typedef struct gw_scrape {
    double waiting, running, kv_usage; /* sums over the model_name series */
    bool has_waiting, has_running, has_kv;
    char adapters[GW_MAX_ADAPTERS][64]; /* running, waiting or resident */
    int n_adapters;
    int max_lora; /* vllm:lora_requests_info's max_lora label (0: none) */
} gw_scrape;

/* Parses len bytes of exposition text. Returns true when the waiting and running gauges were
 * both found (a replica that does not report them is not a vLLM-compatible one). */
bool gw_scrape_parse(const char *text, size_t len, gw_scrape *out);
#endif
