/* cli/loaded.c: opening a model for a command, and option value parsing. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/loaded.h"
#include "model/lora.h"

int cli_open(engine_stack *st, const char *path, const model_opts *mo, bool with_tok,
             const engine_config *ec)
{
    kl_err err = {0};
    char local[PATH_MAX];
    memset(st, 0, sizeof *st);
    if (cli_model_path(path, local, sizeof local)) return 1;
    engine_open_config c;
    engine_open_defaults(&c);
    c.model_path = local;
    c.model = *mo;
    c.with_tok = with_tok;
    c.with_engine = ec != NULL;
    if (ec) c.engine = *ec;
    if (engine_open(st, &c, &err)) return cli_fail(&err);
    return 0;
}

int cli_load_lora(const engine_stack *st, const char *path, float scale, model_lora **out)
{
    kl_err err = {0};
    return engine_lora_open(st, path, scale, out, &err) ? cli_fail(&err) : 0;
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

bool cli_seed(const char *val, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (end == val || *end || errno) {
        fprintf(stderr, "kiln: --seed: '%s' is not a number\n", val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_dtype(const char *val, kl_dtype *out)
{
    int t = kl_dtype_from_name(val);
    if (t < 0) {
        fprintf(stderr, "kiln: --type: unknown type '%s'\n", val);
        return false;
    }
    *out = (kl_dtype)t;
    return true;
}
