/* cli/cmd_pull.c: `kiln pull REF` and the hub references that -m takes (hub/hub.h). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

int cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {{"revision", required_argument, NULL, 'r'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"retries", required_argument, NULL, 'R'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *revision = NULL;
    bool quiet = false;
    int c, retries = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        if (c == 'r')
            revision = optarg;
        else if (c == 'q')
            quiet = true;
        else if (c == 'R') {
            if (!cli_int("--retries", optarg, 0, 20, &retries)) return 2;
        } else {
            FILE *f = c == 'h' ? stdout : stderr;
            fprintf(f,
                    "usage: kiln pull hf://ORG/REPO/FILE.gguf | ORG/REPO[:TAG] [--revision REV] "
                    "[--retries N] [--quiet]\n"
                    "Downloads into the Hugging Face cache and prints the file's path.\n"
                    "Environment: HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_CACHE, HF_HOME\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: kiln pull REF [--revision REV] [--quiet]\n");
        return 2;
    }
    char path[PATH_MAX];
    int rc = pull(argv[optind], revision, quiet, retries, path, sizeof path);
    if (!rc) printf("%s\n", path);
    return rc;
}
