/* base/secret.c: see secret.h. */
#include "base/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX 4095

/* Copies the n bytes of s into *out if they make a usable secret. */
static int take(const char *s, size_t n, const char *quote, const char *src, char **out,
                kl_err *err)
{
    if (!n) return kl_errf(err, KL_EINVAL, "%s%s: empty (expected an API key)", quote, src);
    if (n > SECRET_MAX)
        return kl_errf(err, KL_EINVAL, "%s%s: longer than %d bytes", quote, src, SECRET_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return kl_errf(err, KL_EINVAL, "%s%s: the key has a control character", quote, src);
    if (!(*out = strndup(s, n))) return kl_errf(err, KL_ENOMEM, "out of memory");
    return 0;
}

int kl_secret_from_file(const char *path, char **out, kl_err *err)
{
    *out = NULL;
    /* non-blocking: a FIFO must not hang the start */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return kl_errf(err, KL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return kl_errf(err, KL_EIO, "%s: not a regular file", path);
    }
    char buf[SECRET_MAX + 2];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return kl_errf(err, KL_EIO, "%s: %s", path, strerror(e));
        }
        n += (size_t)r;
    }
    close(fd);
    size_t len = 0; /* the first line, without its CR LF or LF */
    while (len < n && buf[len] != '\n')
        len++;
    if (len && buf[len - 1] == '\r') len--;
    int rc = take(buf, len, "", path, out, err);
    explicit_bzero(buf, sizeof buf);
    return rc;
}

int kl_secret_from_env(const char *name, char **out, kl_err *err)
{
    *out = NULL;
    const char *v = getenv(name);
    if (!v) return kl_errf(err, KL_EINVAL, "$%s: not set", name);
    return take(v, strlen(v), "$", name, out, err);
}

void kl_secret_free(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}
