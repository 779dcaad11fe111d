/* bench/sse.h: incremental server-sent-events reader for streamed completions. Bytes come in
 * arbitrary pieces; each complete event's data (its "data:" lines joined by '\n') is handed
 * to a callback. Hostile input: an event larger than KB_SSE_MAX is an error, not growth. */
#ifndef KILN_BENCH_SSE_H
#define KILN_BENCH_SSE_H
#include <stddef.h>

#define KB_SSE_MAX (1u << 20)

typedef struct kb_sse {
    char *line; /* bytes after the last '\n' */
    size_t line_len, line_cap;
    char *data; /* the current event's data so far */
    size_t data_len, data_cap;
} kb_sse;

typedef void (*kb_sse_fn)(const char *data, size_t len, void *arg);

/* Feeds n bytes; calls fn for each event completed by them (data NUL-terminated). Returns 0,
 * KL_ERANGE when a line or event exceeds KB_SSE_MAX, or KL_ENOMEM; after an error the reader
 * must only be freed. */
int kb_sse_feed(kb_sse *s, const char *p, size_t n, kb_sse_fn fn, void *arg);
void kb_sse_free(kb_sse *s);
#endif
