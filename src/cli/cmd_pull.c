/* cli/cmd_pull.c: `kiln pull REF` and the hub references that -m takes (hub/hub.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/loaded.h"
#include "hub/hub.h"

static int pull(const char *ref, const char *revision, bool quiet, int retries, char *out,
                size_t cap)
{
    hub_ref r;
    hub_opts o;
    kl_err err = {0};
    hub_opts_from_env(&o);
    if (quiet) o.progress = HUB_PROGRESS_NONE;
    if (retries >= 0) o.retries = retries;
    if (hub_ref_parse(&r, ref, &err)) return cli_fail(&err);
    if (revision) snprintf(r.revision, sizeof r.revision, "%s", revision);
    if (hub_pull(&r, &o, out, cap, &err)) return cli_fail(&err);
    return 0;
}

int cli_model_path(const char *arg, char *out, size_t cap)
{
    struct stat st;
    if (strncmp(arg, "hf://", 5) && (!stat(arg, &st) || !hub_is_ref(arg))) {
        snprintf(out, cap, "%s", arg);
        return 0;
    }
    return pull(arg, NULL, false, -1, out, cap);
}

enum { O_REVISION = CLI_LONG, O_RETRIES };

static const cli_opt opts[] = {
    {O_REVISION, "revision", "REV", "a branch, tag or commit of the repository (default main)"},
    {O_RETRIES, "retries", "N",
     "attempts after the first for a failing request, 0..20 (default 5)"},
    {'q', "quiet", NULL, "no progress line on stderr"},
    {0},
};

static const cli_cmd cmd = {
    "pull", "hf://ORG/REPO/FILE.gguf | ORG/REPO[:TAG] [options]",
    "Downloads a GGUF model into the Hugging Face cache (or finds it there) and prints the\n"
    "file's path. Every -m takes the same references.\n",
    opts, "Environment: HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_CACHE, HF_HOME.\n"};

int cmd_pull(int argc, char **argv)
{
    const char *revision = NULL, *ref = NULL;
    bool quiet = false;
    int retries = -1;
    cli_args a;
    cli_args_init(&a, &cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            if (ref) return cli_usage_error(&cmd, "unexpected argument '%s'", val);
            ref = val;
            break;
        case O_REVISION:
            revision = val;
            break;
        case 'q':
            quiet = true;
            break;
        case O_RETRIES:
            if (!cli_int("--retries", val, 0, 20, &retries)) return 2;
            break;
        }
    }
    if (!ref) return cli_usage_error(&cmd, "which model? (ORG/REPO[:TAG] or hf://...)");
    char path[PATH_MAX];
    int rc = pull(ref, revision, quiet, retries, path, sizeof path);
    if (!rc) printf("%s\n", path);
    return rc;
}
