#include <stdio.h>

#include "cli/cli.h"

int cli_fail(const kl_err *err)
{
    fprintf(stderr, "kiln: %s\n", err->msg[0] ? err->msg : kl_strerror(err->code));
    return 1;
}
