/* gateway/scrape.c: what routing needs from a replica's /metrics (gateway/scrape.h). Lines are
 * read by net/prom_scan: comments, unknown names and malformed lines are skipped. */
#include "gateway/scrape.h"

#include <stdlib.h>
#include <string.h>

#include "net/prom_scan.h"

static void add_adapters(gw_scrape *s, const char *list)
{
    while (*list && s->n_adapters < GW_MAX_ADAPTERS) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        if (len > 0 && len < sizeof s->adapters[0]) {
            int dup = 0;
            for (int i = 0; i < s->n_adapters; i++)
                dup |= strlen(s->adapters[i]) == len && !memcmp(s->adapters[i], list, len);
            if (!dup) {
                memcpy(s->adapters[s->n_adapters], list, len);
                s->adapters[s->n_adapters++][len] = 0;
            }
        }
        if (!comma) break;
        list = comma + 1;
    }
}

static void take(const net_prom_sample *x, void *ctx)
{
    gw_scrape *out = ctx;
    if (net_prom_is(x, "vllm:num_requests_waiting")) {
        out->waiting += x->value;
        out->has_waiting = true;
    } else if (net_prom_is(x, "vllm:num_requests_running")) {
        out->running += x->value;
        out->has_running = true;
    } else if (net_prom_is(x, "vllm:kv_cache_usage_perc") ||
               net_prom_is(x, "vllm:gpu_cache_usage_perc")) {
        out->kv_usage = x->value > out->kv_usage ? x->value : out->kv_usage;
        out->has_kv = true;
    } else if (net_prom_is(x, "vllm:lora_requests_info")) {
        char list[1024];
        if (net_prom_label(x, "running_lora_adapters", list, sizeof list)) add_adapters(out, list);
        if (net_prom_label(x, "waiting_lora_adapters", list, sizeof list)) add_adapters(out, list);
        if (net_prom_label(x, "max_lora", list, sizeof list)) out->max_lora = atoi(list);
    } else if ((net_prom_is(x, "kiln:lora_adapter_resident") ||
                net_prom_is(x, "vllm:lora_adapter_loaded")) &&
               x->value == 1) {
        char name[64];
        if (net_prom_label(x, "lora_name", name, sizeof name) ||
            net_prom_label(x, "adapter_name", name, sizeof name))
            add_adapters(out, name);
    }
}

bool gw_scrape_parse(const char *text, size_t len, gw_scrape *out)
{
    memset(out, 0, sizeof *out);
    net_prom_each(text, len, take, out);
    return out->has_waiting && out->has_running;
}
