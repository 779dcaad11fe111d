/* bench/probe.h: what kiln bench asks an endpoint before loading it. */
#ifndef KILN_BENCH_PROBE_H
#define KILN_BENCH_PROBE_H
#include <event2/event.h>
#include <stddef.h>

#include "bench/bench.h"

/* GET /v1/models on t (5 s at most), running base until it answers; copies data[0].id into
 * name (cap bytes). Returns 0, or -1 with name untouched when there is no usable answer. */
int kb_probe_model(struct event_base *base, const kb_target *t, const char *api_key, char *name,
                   size_t cap);
/* POSTs json to prefix+path on t (5 s at most), running base until it answers. Returns the
 * HTTP status (0: no answer) and the body in *body (caller frees; NULL if none). */
int kb_http_post(struct event_base *base, const kb_target *t, const char *api_key, const char *path,
                 const char *json, char **body);
/* GET /metrics on t (5 s at most) and reads its speculative decoding counters into out
 * (out->present false when there are none or no answer). */
void kb_probe_spec(struct event_base *base, const kb_target *t, const char *api_key, kb_spec *out);
#endif
