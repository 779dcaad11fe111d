/* net/prom_scan.h: reading Prometheus text-format (0.0.4) sample lines, for the clients of
 * another server's /metrics (the gateway's scrape, kiln bench's counters). The text comes from
 * the network: a line that does not parse is skipped by the caller, never trusted in part. */
#ifndef KILN_NET_PROM_SCAN_H
#define KILN_NET_PROM_SCAN_H
#include <stdbool.h>
#include <stddef.h>

/* One sample: name{labels} value [timestamp]. Pointers into the scanned line. */
typedef struct net_prom_sample {
    const char *name;
    size_t name_len;
    const char *labels; /* between the braces, "" when there are none */
    size_t labels_len;
    double value; /* finite */
} net_prom_sample;

/* Scans line[0..n) (no newline). False for comments, blank and malformed lines: a name that
 * is not [a-zA-Z_:][a-zA-Z0-9_:]*, an unterminated label set or quoted value, a value that is
 * not a finite number, anything after it but an integer timestamp. */
bool net_prom_scan(const char *line, size_t n, net_prom_sample *s);
/* True when the sample's name is exactly name. */
bool net_prom_is(const net_prom_sample *s, const char *name);
/* The label key's value, unescaped (\\, \" and \n), into out (cap bytes, NUL-terminated).
 * False when absent or longer than cap - 1. */
bool net_prom_label(const net_prom_sample *s, const char *key, char *out, size_t cap);
/* Calls fn for each sample line of text[0..len) that scans; lines over 8 KiB are skipped. */
void net_prom_each(const char *text, size_t len, void (*fn)(const net_prom_sample *, void *),
                   void *ctx);
#endif
