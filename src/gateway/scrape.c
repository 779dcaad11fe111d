/* gateway/scrape.c: a small, bounded reader of Prometheus text exposition lines:
 *   name{label="value",...} number [timestamp]
 * Comments (#) and unknown names are skipped; so is any malformed line. */
#include "gateway/scrape.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 8192

static bool name_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n >= k && !memcmp(line, name, k) && (n == k || line[k] == '{' || line[k] == ' ');
}

/* Finds label="value" in the {...} part of line[0..n); copies the value (unescaped quotes
 * are the end) into out. Returns false if absent or malformed. */
static bool label(const char *line, size_t n, const char *key, char *out, size_t cap)
{
    const char *open = memchr(line, '{', n);
    if (!open) return false;
    const char *end = line + n;
    size_t kl = strlen(key);
    for (const char *p = open + 1; p + kl + 2 <= end; p++) {
        if ((p[-1] == '{' || p[-1] == ',') && !memcmp(p, key, kl) && p[kl] == '=' &&
            p[kl + 1] == '"') {
            const char *v = p + kl + 2;
            size_t i = 0;
            while (v < end && *v != '"' && i + 1 < cap) {
                if (*v == '\\' && v + 1 < end) v++;
                out[i++] = *v++;
            }
            out[i] = 0;
            return v < end && *v == '"';
        }
    }
    return false;
}

/* The sample value: the first number after the closing '}' (or the name). */
static bool value(const char *line, size_t n, double *out)
{
    const char *p = memchr(line, '}', n);
    p = p ? p + 1 : memchr(line, ' ', n);
    if (!p) return false;
    char buf[64];
    size_t i = 0;
    while (p < line + n && *p == ' ')
        p++;
    while (p < line + n && *p != ' ' && i + 1 < sizeof buf)
        buf[i++] = *p++;
    buf[i] = 0;
    char *e;
    double v = strtod(buf, &e);
    if (e == buf || *e || !isfinite(v)) return false;
    *out = v;
    return true;
}

static void add_adapters(gw_scrape *s, const char *list)
{
    while (*list && s->n_adapters < GW_SCRAPE_ADAPTERS) {
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

bool gw_scrape_parse(const char *text, size_t len, gw_scrape *out)
{
    memset(out, 0, sizeof *out);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (n == 0 || n > MAX_LINE || line[0] == '#') continue;
        double v;
        if (name_is(line, n, "vllm:num_requests_waiting") && value(line, n, &v)) {
            out->waiting += v;
            out->has_waiting = true;
        } else if (name_is(line, n, "vllm:num_requests_running") && value(line, n, &v)) {
            out->running += v;
            out->has_running = true;
        } else if ((name_is(line, n, "vllm:kv_cache_usage_perc") ||
                    name_is(line, n, "vllm:gpu_cache_usage_perc")) &&
                   value(line, n, &v)) {
            out->kv_usage = v > out->kv_usage ? v : out->kv_usage;
            out->has_kv = true;
        } else if (name_is(line, n, "vllm:lora_requests_info")) {
            char list[1024];
            if (label(line, n, "running_lora_adapters", list, sizeof list)) add_adapters(out, list);
            if (label(line, n, "waiting_lora_adapters", list, sizeof list)) add_adapters(out, list);
            if (label(line, n, "max_lora", list, sizeof list)) out->max_lora = atoi(list);
        } else if ((name_is(line, n, "kiln:lora_adapter_resident") ||
                    name_is(line, n, "vllm:lora_adapter_loaded")) &&
                   value(line, n, &v) && v == 1) {
            char name[64];
            if (label(line, n, "lora_name", name, sizeof name) ||
                label(line, n, "adapter_name", name, sizeof name))
                add_adapters(out, name);
        }
    }
    return out->has_waiting && out->has_running;
}
