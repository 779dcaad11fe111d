/* engine/spec_opts.c: the speculation setting as text, for `--spec` options and log lines:
 * KIND[:key=value,...] (engine.h, engine_spec_parse). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static const char *const kinds[] = {"off", "ngram", "draft", "layerskip"};

/* Parses a whole decimal int in [lo, hi] from s (len bytes). */
static bool parse_int(const char *s, size_t len, int lo, int hi, int *out)
{
    char buf[16];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* Applies one "key=value" (or "fixed") of len bytes to sp. */
static int parse_item(engine_spec *sp, const char *s, size_t len, kl_err *err)
{
    const char *eq = memchr(s, '=', len);
    size_t kl = eq ? (size_t)(eq - s) : len, vl = eq ? len - kl - 1 : 0;
    const char *v = eq ? eq + 1 : NULL;
    bool ok = false;
    if (sp->kind == ENGINE_SPEC_OFF) {
        ok = false; /* off takes no settings */
    } else if (kl == 5 && !memcmp(s, "fixed", 5) && !eq) {
        sp->fixed = ok = true;
    } else if (kl == 1 && *s == 'k' && v) {
        ok = parse_int(v, vl, 1, ENGINE_SPEC_MAX_K, &sp->k);
    } else if (kl == 1 && *s == 'n' && v && sp->kind == ENGINE_SPEC_NGRAM) {
        ok = parse_int(v, vl, 1, 64, &sp->ngram_max);
    } else if (kl == 3 && !memcmp(s, "min", 3) && v && sp->kind == ENGINE_SPEC_NGRAM) {
        ok = parse_int(v, vl, 1, 64, &sp->ngram_min);
    } else if (kl == 6 && !memcmp(s, "layers", 6) && v && sp->kind == ENGINE_SPEC_SKIP) {
        ok = parse_int(v, vl, 1, 4096, &sp->skip_layers);
    }
    if (!ok)
        return kl_errf(err, KL_EINVAL, "speculation: '%.*s' is not a setting of %s (k=1..%d%s)",
                       (int)len, s, kinds[sp->kind], ENGINE_SPEC_MAX_K,
                       sp->kind == ENGINE_SPEC_NGRAM  ? ", n=MAX, min=MIN, fixed"
                       : sp->kind == ENGINE_SPEC_SKIP ? ", layers=N, fixed"
                                                      : ", fixed");
    return 0;
}

int engine_spec_parse(engine_spec *out, const char *text, kl_err *err)
{
    engine_spec sp = {.k = 8, .ngram_min = 2, .ngram_max = 4};
    size_t kl = strcspn(text, ":");
    int kind = -1;
    for (int i = 0; i < 4; i++)
        if (strlen(kinds[i]) == kl && !memcmp(text, kinds[i], kl)) kind = i;
    if (kind < 0)
        return kl_errf(err, KL_EINVAL,
                       "speculation: '%.*s': expected ngram, layerskip, draft or off", (int)kl,
                       text);
    sp.kind = (engine_spec_kind)kind;
    for (const char *p = text[kl] ? text + kl + 1 : text + kl; *p;) {
        size_t len = strcspn(p, ",");
        int rc = parse_item(&sp, p, len, err);
        if (rc) return rc;
        p += len + (p[len] == ',');
    }
    if (sp.ngram_min > sp.ngram_max)
        return kl_errf(err, KL_EINVAL, "speculation: min=%d is above n=%d", sp.ngram_min,
                       sp.ngram_max);
    sp.draft = out->draft;
    sp.draft_tok = out->draft_tok;
    *out = sp;
    return 0;
}

void engine_spec_format(const engine_spec *sp, char *buf, size_t cap)
{
    int k = (unsigned)sp->kind < 4 ? (int)sp->kind : 0;
    int n = snprintf(buf, cap, "%s", kinds[k]);
    if (k == ENGINE_SPEC_OFF || n < 0 || (size_t)n >= cap) return;
    n += snprintf(buf + n, cap - (size_t)n, ":k=%d", sp->k);
    if (k == ENGINE_SPEC_NGRAM && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, ",n=%d,min=%d", sp->ngram_max, sp->ngram_min);
    if (k == ENGINE_SPEC_SKIP && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, ",layers=%d", sp->skip_layers);
    if (sp->fixed && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ",fixed");
}
