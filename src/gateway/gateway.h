/* gateway/gateway.h: `kiln gateway`, an inference-aware HTTP router in front of replicas
 * (kiln serve, vLLM, anything with the OpenAI API and vLLM's /metrics names).
 *
 * One thread, one libevent loop: it accepts clients, scrapes and health-checks endpoints,
 * picks an endpoint per request (gateway/picker.h), and proxies the response through chunk
 * by chunk. SIGHUP reloads the config without dropping requests; SIGTERM drains. */
#ifndef KILN_GATEWAY_GATEWAY_H
#define KILN_GATEWAY_GATEWAY_H
#include "base/err.h"
#include "gateway/config.h"

typedef struct gw gw; /* opaque */

/* Binds the listener of cfg (the gateway takes ownership of cfg, even on failure);
 * config_path is re-read on SIGHUP (NULL: no reload). Returns 0 and sets *out, or KL_E*. */
int gw_create(gw **out, gw_config *cfg, const char *config_path, kl_err *err);
/* The port actually bound (useful with port 0). */
int gw_port(const gw *g);
/* Runs the loop until SIGTERM/SIGINT (after draining in-flight requests). Returns 0. */
int gw_run(gw *g);
void gw_destroy(gw *g); /* NULL is fine */
/* CORS origins that override the config's listen.allowed_origins, reloads included (the
 * --allowed-origins option); g takes c. */
void gw_set_cors(gw *g, net_cors *c);
#endif
