/* net/prom_scan.c: Prometheus text-format sample lines (net/prom_scan.h). */
#include "net/prom_scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 8192

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The end of the label set that starts after '{' at p: the '}' outside quotes, or NULL. */
static const char *labels_end(const char *p, const char *end)
{
    bool quoted = false;
    for (; p < end; p++) {
        if (quoted && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == '}')
            return p;
    }
    return NULL;
}

/* A whole token t[0..n) as a number (finite; strtod's forms); false otherwise. */
static bool number(const char *t, size_t n, bool integer, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, t, n);
    buf[n] = 0;
    char *e;
    double v = integer ? (double)strtoll(buf, &e, 10) : strtod(buf, &e);
    if (*e || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool net_prom_scan(const char *line, size_t n, net_prom_sample *s)
{
    const char *p = line, *end = line + n;
    if (p == end || !name_char(*p, true)) return false; /* comments and blanks too */
    while (p < end && name_char(*p, p == line))
        p++;
    s->name = line, s->name_len = (size_t)(p - line);
    s->labels = "", s->labels_len = 0;
    if (p < end && *p == '{') {
        const char *close = labels_end(p + 1, end);
        if (!close) return false;
        s->labels = p + 1, s->labels_len = (size_t)(close - p - 1);
        p = close + 1;
    }
    if (p == end || *p != ' ') return false;
    while (p < end && *p == ' ')
        p++;
    const char *v = p;
    while (p < end && *p != ' ')
        p++;
    if (!number(v, (size_t)(p - v), false, &s->value)) return false;
    while (p < end && *p == ' ')
        p++;
    double ts;
    return p == end || number(p, (size_t)(end - p), true, &ts);
}

bool net_prom_is(const net_prom_sample *s, const char *name)
{
    return strlen(name) == s->name_len && !memcmp(s->name, name, s->name_len);
}

bool net_prom_label(const net_prom_sample *s, const char *key, char *out, size_t cap)
{
    const char *p = s->labels, *end = s->labels + s->labels_len;
    size_t kl = strlen(key);
    while (p < end) { /* key="value", ... */
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 == end || eq[1] != '"') return false;
        bool match = (size_t)(eq - p) == kl && !memcmp(p, key, kl);
        size_t i = 0;
        const char *q = eq + 2;
        for (; q < end && *q != '"'; q++) {
            char c = *q;
            if (c == '\\' && q + 1 < end) c = *++q == 'n' ? '\n' : *q;
            if (match && i + 1 >= cap) return false;
            if (match) out[i++] = c;
        }
        if (q == end) return false;
        if (match) {
            out[i] = 0;
            return true;
        }
        p = q + 1;
        while (p < end && (*p == ',' || *p == ' '))
            p++;
    }
    return false;
}

void net_prom_each(const char *text, size_t len, void (*fn)(const net_prom_sample *, void *),
                   void *ctx)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        net_prom_sample s;
        if (n <= MAX_LINE && net_prom_scan(p, n, &s)) fn(&s, ctx);
        p = nl ? nl + 1 : end;
    }
}
