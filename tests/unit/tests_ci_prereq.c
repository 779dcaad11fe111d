/* With CI set (.ci/run does), a test whose prerequisite is missing fails instead of skipping,
 * in each suite: the C runner (t_shared, t_kiln), `make e2e` without node or its packages,
 * and the node tests' needs() (tests/e2e/prereq.mjs). Otherwise they skip, saying why. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "t.h"

/* `make e2e` in DIR with CI=VALUE, the kiln binary given and never rebuilt */
#define MAKE_E2E "cd '%s' && %s make -s -f '%s/Makefile' -o '%s' KILN='%s' e2e"
/* needs(false, ...) of tests/e2e/prereq.mjs, run from the source tree with CI=VALUE */
#define NEEDS_JS                                                                                   \
    "cd '%s' && %s node --input-type=module -e \"import { needs } from "                           \
    "'./tests/e2e/prereq.mjs'; console.log(needs(false, 'the data'))\""

TEST(tests_ci_missing_shared_data_fails_not_skips)
{
    char self[PATH_MAX], cmd[PATH_MAX * 2], *out, *err;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    T_ASSERT(n > 0);
    self[n] = 0;
    /* this runner again, on one test that reads ../shared, with the data nowhere */
    snprintf(cmd, sizeof cmd, "CI= KILN_SHARED=/nonexistent '%s' cli_perplexity_reproduces", self);
    T_EQ(t_run(cmd, &out, &err), 0);
    T_CONTAINS(out, "# SKIP");
    T_CONTAINS(out, "0 failed, 1 skipped");
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "CI=1 KILN_SHARED=/nonexistent '%s' cli_perplexity_reproduces", self);
    T_EQ(t_run(cmd, &out, &err), 1);
    T_CONTAINS(out, "not present (CI is set: a failure, not a skip)");
    T_CONTAINS(out, "1 failed, 0 skipped");
    free(out), free(err);
}

TEST(tests_ci_make_e2e_without_node_packages_fails)
{
    char root[PATH_MAX], cmd[PATH_MAX * 3], *out, *err;
    T_ASSERT(getcwd(root, sizeof root)); /* make unit runs from the source tree */
    snprintf(cmd, sizeof cmd, "%s/Makefile", root);
    if (access(cmd, R_OK)) t_skip("not run from the source tree");
    /* a tree with an e2e test but no tests/e2e/node_modules; the kiln binary as it is */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/tests/e2e' && touch '%s/tests/e2e/a.test.mjs'",
             t_tmpdir(), t_tmpdir());
    T_EQ(t_run(cmd, NULL, NULL), 0);
    snprintf(cmd, sizeof cmd, MAKE_E2E, t_tmpdir(), "CI=", root, t_kiln(), t_kiln());
    T_EQ(t_run(cmd, &out, &err), 0);
    T_CONTAINS(out, "e2e: skipped");
    free(out), free(err);
    snprintf(cmd, sizeof cmd, MAKE_E2E, t_tmpdir(), "CI=1", root, t_kiln(), t_kiln());
    T_ASSERT(t_run(cmd, &out, &err) != 0);
    T_CONTAINS(out, "CI is set");
    free(out), free(err);
}

TEST(tests_ci_node_prerequisite_fails_not_skips)
{
    char root[PATH_MAX], cmd[PATH_MAX * 2], *out, *err;
    T_ASSERT(getcwd(root, sizeof root));
    if (t_run("command -v node", NULL, NULL)) t_skip("no node");
    snprintf(cmd, sizeof cmd, NEEDS_JS, root, "CI=");
    T_EQ(t_run(cmd, &out, &err), 0);
    T_STREQ(out, "the data\n"); /* the skip reason */
    free(out), free(err);
    snprintf(cmd, sizeof cmd, NEEDS_JS, root, "CI=1");
    T_ASSERT(t_run(cmd, &out, &err) != 0);
    T_CONTAINS(err, "missing prerequisite, and CI is set");
    free(out), free(err);
}
