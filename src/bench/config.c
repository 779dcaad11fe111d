/* bench/config.c: configuration defaults and endpoint URLs (see bench.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

void kb_config_defaults(kb_config *c)
{
    memset(c, 0, sizeof *c);
    c->concurrency = 1;
    c->requests = 100;
    c->input_len = (kb_dist){KB_DIST_FIXED, 128, 0};
    c->output_len = (kb_dist){KB_DIST_FIXED, 128, 0};
    c->groups = 1;
    c->turns = 1;
    c->timeout = 300;
    c->n_models = 1;
    c->models[0].weight = 1;
}

int kb_target_parse(kb_target *t, const char *url, kl_err *err)
{
    kb_target x = {0};
    if (!strncmp(url, "https://", 8))
        return kl_errf(err, KL_EINVAL,
                       "%s: https is not supported; put a plain-HTTP endpoint "
                       "(or a local TLS proxy) in front",
                       url);
    if (strncmp(url, "http://", 7) || strlen(url) >= sizeof x.url)
        return kl_errf(err, KL_EINVAL, "%s: expected http://HOST[:PORT][/prefix]", url);
    snprintf(x.url, sizeof x.url, "%s", url);
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', hl);
    size_t name_len = colon ? (size_t)(colon - h) : hl;
    if (!name_len || name_len >= sizeof x.host) goto bad;
    memcpy(x.host, h, name_len);
    x.port = 80;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end != h + hl || end == colon + 1 || p < 1 || p > 65535) goto bad;
        x.port = (int)p;
    }
    if (slash) {
        size_t pl = strlen(slash);
        while (pl && slash[pl - 1] == '/')
            pl--;
        if (pl >= sizeof x.prefix) goto bad;
        memcpy(x.prefix, slash, pl);
        /* "/v1" given as part of the URL: the API paths add it again */
        if (pl >= 3 && !strcmp(x.prefix + pl - 3, "/v1")) x.prefix[pl - 3] = 0;
    }
    *t = x;
    return 0;
bad:
    return kl_errf(err, KL_EINVAL, "%s: expected http://HOST[:PORT][/prefix]", url);
}
