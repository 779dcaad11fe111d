/* cli/loaded.c: opening a model for a command, and option value parsing. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/loaded.h"

int cli_load(cli_loaded *l, const char *path, const model_opts *opts, bool with_tok)
{
    kl_err err = {0};
    *l = (cli_loaded){0};
    char local[PATH_MAX];
    if (cli_model_path(path, local, sizeof local)) return 1;
    if (gguf_open(&l->f, local, &err)) return cli_fail(&err);
    if (with_tok && tok_load(&l->tk, l->f, &err)) goto fail;
    model_opts mo = *opts;
    mo.no_repack = mo.no_repack || cli_no_repack();
    char dir[4096];
    if (!mo.pack_cache_dir && model_pack_cache_default(dir, sizeof dir)) mo.pack_cache_dir = dir;
    if (model_load(&l->m, l->f, &mo, &err)) goto fail;
    return 0;
fail:
    cli_unload(l);
    return cli_fail(&err);
}

bool cli_no_repack(void)
{
    const char *v = getenv("KILN_NO_REPACK");
    return v && *v && *v != '0';
}

void cli_unload(cli_loaded *l)
{
    model_free(l->m);
    tok_free(l->tk);
    gguf_close(l->f);
    *l = (cli_loaded){0};
}

bool cli_int(const char *opt, const char *val, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || errno || *end || end == val || v < lo || v > hi) {
        fprintf(stderr, "kiln: %s: expected an integer in %d..%d, got '%s'\n", opt, lo, hi,
                val ? val : "");
        return false;
    }
    *out = (int)v;
    return true;
}

bool cli_float(const char *opt, const char *val, float *out)
{
    char *end;
    float v = val ? strtof(val, &end) : 0.f;
    if (!val || *end || end == val || !isfinite(v)) {
        fprintf(stderr, "kiln: %s: expected a number, got '%s'\n", opt, val ? val : "");
        return false;
    }
    *out = v;
    return true;
}
