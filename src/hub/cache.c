/* hub/cache.c: the huggingface_hub cache layout. Every name that reaches a path here has
 * passed hub_safe_path / hub_hex_ok (hub/pull.c checks them first); files are written under
 * a temporary name and renamed, so a reader never sees half of one. */
#include "hub/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIST_MAX 10000 /* files of one snapshot we look at */

/* mkdir -p of path's directories (of path itself when whole). */
static int mkdirs(const char *path, bool whole, kl_err *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return kl_errf(err, KL_EINVAL, "%s: path too long", path);
    if (!whole) {
        char *slash = strrchr(p, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char keep = *s;
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST)
                return kl_errf(err, KL_EIO, "%s: cannot create: %s", p, strerror(errno));
            *s = keep;
            if (!keep) break;
        }
    }
    return 0;
}

int hub_cache_open(hub_cache *c, const char *root, const char *repo, kl_err *err)
{
    const char *slash = strchr(repo, '/');
    if (!slash) return kl_errf(err, KL_EINVAL, "%s: not ORG/REPO", repo);
    int n1 = snprintf(c->repo_dir, sizeof c->repo_dir, "%s/models--%.*s--%s", root,
                      (int)(slash - repo), repo, slash + 1);
    int n2 = snprintf(c->lock_dir, sizeof c->lock_dir, "%s/.locks/models--%.*s--%s", root,
                      (int)(slash - repo), repo, slash + 1);
    if (n1 >= (int)sizeof c->repo_dir || n2 >= (int)sizeof c->lock_dir)
        return kl_errf(err, KL_EINVAL, "%s: cache path too long", root);
    return 0;
}

void hub_cache_blob(const hub_cache *c, const char *oid, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs/%s%s", c->repo_dir, oid, suffix ? suffix : "");
}

void hub_cache_snapshot(const hub_cache *c, const char *commit, const char *file, char *out,
                        size_t cap)
{
    snprintf(out, cap, "%s/snapshots/%s/%s", c->repo_dir, commit, file);
}

int hub_cache_link(const hub_cache *c, const char *commit, const char *file, const char *oid,
                   kl_err *err)
{
    char link[PATH_MAX], target[PATH_MAX], tmp[PATH_MAX + 32];
    hub_cache_snapshot(c, commit, file, link, sizeof link);
    int rc = mkdirs(link, false, err);
    if (rc) return rc;
    /* from snapshots/<commit>/<dirs...>/ up to the repository directory */
    size_t n = 0;
    n += (size_t)snprintf(target, sizeof target, "../../");
    for (const char *p = file; (p = strchr(p, '/')); p++)
        n += (size_t)snprintf(target + n, sizeof target - n, "../");
    snprintf(target + n, sizeof target - n, "blobs/%s", oid);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", link, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, link)) {
        rc = kl_errf(err, KL_EIO, "%s: cannot link: %s", link, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

int hub_cache_set_ref(const hub_cache *c, const char *revision, const char *commit, kl_err *err)
{
    if (!strcmp(revision, commit)) return 0;
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/refs/%s", c->repo_dir, revision);
    int rc = mkdirs(path, false, err);
    if (rc) return rc;
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(commit, f) < 0 || fclose(f) || rename(tmp, path)) {
        rc = kl_errf(err, KL_EIO, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

int hub_cache_get_ref(const hub_cache *c, const char *revision, char commit[41])
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/snapshots/%s", c->repo_dir, revision);
    if (hub_hex_ok(revision, 40) && !stat(path, &st)) {
        memcpy(commit, revision, 41);
        return 0;
    }
    snprintf(path, sizeof path, "%s/refs/%s", c->repo_dir, revision);
    FILE *f = fopen(path, "r");
    if (!f) return KL_ENOTFOUND;
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (!hub_hex_ok(buf, 40)) return KL_ENOTFOUND;
    memcpy(commit, buf, 41);
    return 0;
}

void hub_cache_free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

typedef struct walk {
    char **v;
    int n, cap;
} walk;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the entries of base/rel (recursively, depth-bounded) whose targets exist. */
static int walk_dir(walk *w, const char *base, const char *rel, int depth)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s%s%s", base, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) && w->n < LIST_MAX) {
        if (e->d_name[0] == '.') continue;
        char sub[PATH_MAX], full[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof sub)
            continue;
        if (snprintf(full, sizeof full, "%s/%s", base, sub) >= (int)sizeof full) continue;
        struct stat st;
        if (stat(full, &st)) continue; /* a dangling link: not a usable file */
        if (S_ISDIR(st.st_mode)) {
            if (depth < 8) rc = walk_dir(w, base, sub, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        if (w->n == w->cap) {
            int cap = w->cap ? 2 * w->cap : 64;
            char **v = realloc(w->v, (size_t)cap * sizeof *v);
            if (!v) return KL_ENOMEM;
            w->v = v;
            w->cap = cap;
        }
        if (!(w->v[w->n] = strdup(sub))) return KL_ENOMEM;
        w->n++;
    }
    closedir(d);
    return rc;
}

int hub_cache_list(const hub_cache *c, const char *commit, char ***out, int *n, kl_err *err)
{
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%s/snapshots/%s", c->repo_dir, commit);
    walk w = {0};
    if (walk_dir(&w, base, "", 0)) {
        hub_cache_free_list(w.v, w.n);
        return kl_errf(err, KL_ENOMEM, "out of memory");
    }
    if (w.n) qsort(w.v, (size_t)w.n, sizeof *w.v, cmp_str);
    *out = w.v;
    *n = w.n;
    return 0;
}

int hub_cache_lock(const hub_cache *c, const char *oid, kl_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blobs", c->repo_dir);
    int rc = mkdirs(path, true, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/%s.lock", c->lock_dir, oid);
    if ((rc = mkdirs(path, false, err))) return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return kl_errf(err, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        fprintf(stderr, "kiln: pull: waiting for another download of the same file (%s)\n", path);
        if (flock(fd, LOCK_EX)) {
            close(fd);
            return kl_errf(err, KL_EIO, "%s: cannot lock: %s", path, strerror(errno));
        }
    }
    return fd;
}
