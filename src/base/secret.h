/* base/secret.h: secrets (API keys) read from a file or the environment, never written in a
 * config or on a command line that `ps` shows. A secret is the first line of its source: not
 * empty, at most 4095 bytes, no control characters (it goes into an HTTP header). Error
 * messages name the source, never the content. */
#ifndef KILN_BASE_SECRET_H
#define KILN_BASE_SECRET_H
#include "base/err.h"

/* The first line of the regular file at path, malloc'd into *out. 0, or KL_EIO / KL_EINVAL /
 * KL_ENOMEM with "<path>: <what is wrong>" in err. */
int kl_secret_from_file(const char *path, char **out, kl_err *err);
/* The value of environment variable name; the same errors, "$NAME: <what is wrong>". */
int kl_secret_from_env(const char *name, char **out, kl_err *err);
/* Overwrites the secret, then frees it. NULL is fine. */
void kl_secret_free(char *s);
#endif
