/* libFuzzer target: hub references, path checks and the file choice on arbitrary bytes
 * (names a user types and names a hub's listing sends). Lines are the candidate paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    hub_ref r;
    kl_err err;
    if (hub_is_ref(s) && hub_ref_parse(&r, s, &err) == 0 && r.file[0] && !hub_safe_path(r.file))
        abort(); /* a parsed file must be a safe path */
    const char *paths[64];
    int n = 0;
    for (char *p = s; p && n < 64;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        paths[n++] = p;
        (void)hub_safe_path(p);
        p = nl ? nl + 1 : NULL;
    }
    int i = hub_pick(paths, n, n > 1 ? paths[0] : "");
    if (i >= n) abort();
    free(s);
    return 0;
}
