/* hub/pull.c: hub_pull: resolve a reference to files, fetch each into the cache (or find it
 * there when offline), link the snapshot, record the revision. */
#include "hub/internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"

#define LIST_PAGES_MAX 100 /* pages of the tree listing we follow */

void hub_opts_from_env(hub_opts *o)
{
    static char endpoint[HUB_URL_MAX], cache[PATH_MAX];
    const char *e = getenv("HF_ENDPOINT");
    snprintf(endpoint, sizeof endpoint, "%s", e && *e ? e : "https://huggingface.co");
    for (size_t n = strlen(endpoint); n > 0 && endpoint[n - 1] == '/';)
        endpoint[--n] = 0;
    const char *tok = getenv("HF_TOKEN");
    if (!tok || !*tok) tok = getenv("HUGGING_FACE_HUB_TOKEN");
    const char *off = getenv("HF_HUB_OFFLINE");
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    const char *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
    if (hub && *hub)
        snprintf(cache, sizeof cache, "%s", hub);
    else if (home && *home)
        snprintf(cache, sizeof cache, "%s/hub", home);
    else if (xdg && *xdg)
        snprintf(cache, sizeof cache, "%s/huggingface/hub", xdg);
    else
        snprintf(cache, sizeof cache, "%s/.cache/huggingface/hub", user && *user ? user : "/tmp");
    *o = (hub_opts){
        .endpoint = endpoint,
        .token = tok && *tok ? tok : NULL,
        .cache_dir = cache,
        .offline = off && (!strcmp(off, "1") || !strcasecmp(off, "true") ||
                           !strcasecmp(off, "yes") || !strcasecmp(off, "on")),
        .progress = isatty(2) ? HUB_PROGRESS_BAR : HUB_PROGRESS_LINES,
        .retries = 5,
        .backoff_ms = 500,
    };
}

/* A repository file from the tree listing. */
typedef struct entry {
    char *path;
    char oid[65]; /* lfs.oid (SHA-256) or "" */
} entry;

typedef struct listing {
    entry *v;
    int n, cap;
} listing;

static void listing_free(listing *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
}

static const entry *listing_find(const listing *l, const char *path)
{
    for (int i = 0; l && i < l->n; i++)
        if (!strcmp(l->v[i].path, path)) return &l->v[i];
    return NULL;
}

static bool ends_gguf(const char *s)
{
    size_t n = strlen(s);
    return n >= 5 && !strcasecmp(s + n - 5, ".gguf");
}

/* Adds the .gguf files of one page of the tree API's answer (names that are not safe paths
 * are skipped with a warning: they never reach the file system). */
static int listing_add_page(listing *l, const hub_ref *r, const char *body, kl_err *err)
{
    json_error_t je;
    json_t *arr = json_loads(body, 0, &je);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return kl_errf(err, KL_EIO, "%s: the hub's file listing is not a JSON array", r->repo);
    }
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
    {
        const char *type = json_string_value(json_object_get(it, "type"));
        const char *path = json_string_value(json_object_get(it, "path"));
        if (!type || strcmp(type, "file") || !path || !ends_gguf(path)) continue;
        if (!hub_safe_path(path)) {
            fprintf(stderr, "kiln: pull: %s: skipping a file with an unsafe name in the listing\n",
                    r->repo);
            continue;
        }
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 32;
            entry *v = realloc(l->v, (size_t)cap * sizeof *v);
            if (!v) break;
            l->v = v;
            l->cap = cap;
        }
        entry *e = &l->v[l->n];
        memset(e, 0, sizeof *e);
        const char *oid = json_string_value(json_object_get(json_object_get(it, "lfs"), "oid"));
        if (oid && hub_hex_ok(oid, 64)) memcpy(e->oid, oid, 65);
        if (!(e->path = strdup(path))) break;
        l->n++;
    }
    json_decref(arr);
    return 0;
}

static int list_repo(const hub_opts *o, const hub_ref *r, listing *l, kl_err *err)
{
    char rev[768], url[HUB_URL_MAX];
    if (!hub_url_escape(r->revision, false, rev, sizeof rev))
        return kl_errf(err, KL_EINVAL, "revision too long");
    snprintf(url, sizeof url, "%s/api/models/%s/tree/%s?recursive=true", o->endpoint, r->repo, rev);
    hub_what w = {r->repo, "", r->revision};
    for (int page = 0; page < LIST_PAGES_MAX && url[0]; page++) {
        char *body = NULL;
        hub_resp resp;
        int rc = hub_http_get(o, &w, url, &body, &resp, err);
        if (!rc) rc = listing_add_page(l, r, body, err);
        free(body);
        if (rc) return rc;
        url[0] = 0;
        /* the next page, when the hub says there is one on its own host */
        if (resp.next[0] && !strncmp(resp.next, o->endpoint, strlen(o->endpoint)))
            snprintf(url, sizeof url, "%s", resp.next);
    }
    return 0;
}

/* The files to fetch for primary: itself, or every shard of its split model. */
static int shard_names(const char *primary, char ***out, int *n, kl_err *err)
{
    size_t pl;
    int no, count;
    if (!gguf_split_name_parse(primary, &pl, &no, &count)) count = 1;
    char **v = calloc((size_t)count, sizeof *v);
    if (!v) return kl_errf(err, KL_ENOMEM, "out of memory");
    for (int i = 0; i < count; i++) {
        char name[HUB_PATH_MAX + 32];
        if (count == 1)
            snprintf(name, sizeof name, "%s", primary);
        else
            snprintf(name, sizeof name, "%.*s-%05d-of-%05d.gguf", (int)pl, primary, i + 1, count);
        if (!(v[i] = strdup(name))) {
            hub_cache_free_list(v, i);
            return kl_errf(err, KL_ENOMEM, "out of memory");
        }
    }
    *out = v;
    *n = count;
    return 0;
}

static bool regular_file(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

/* Fetches one file into the cache and links it into the commit's snapshot. commit is set
 * by the first file and must stay the same for the others. */
static int fetch_one(const hub_opts *o, const hub_cache *c, const hub_ref *r, const char *file,
                     const char *oid_hint, char commit[48], kl_err *err)
{
    char rev[768], path[HUB_PATH_MAX * 3], url[HUB_URL_MAX];
    if (!hub_url_escape(r->revision, false, rev, sizeof rev) ||
        !hub_url_escape(file, true, path, sizeof path) ||
        snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", o->endpoint, r->repo, rev, path) >=
            (int)sizeof url)
        return kl_errf(err, KL_EINVAL, "%s: URL too long", file);
    hub_what w = {r->repo, file, r->revision};
    hub_resp m;
    int rc = hub_http_head(o, &w, url, &m, err);
    if (rc) return rc;
    if (!hub_hex_ok(m.commit, 40))
        return kl_errf(err, KL_EIO, "%s: %s: the hub sent no valid X-Repo-Commit", r->repo, file);
    if (commit[0] && strcmp(commit, m.commit))
        return kl_errf(err, KL_EIO, "%s: revision '%s' moved during the pull; run it again",
                       r->repo, r->revision);
    snprintf(commit, 48, "%s", m.commit);
    if (!hub_hex_ok(m.etag, 64) && !hub_hex_ok(m.etag, 40))
        return kl_errf(err, KL_EBADFILE,
                       "%s: %s: the hub published no checksum (X-Linked-Etag); an unverifiable "
                       "file is not used",
                       r->repo, file);
    if (oid_hint && *oid_hint && strcmp(oid_hint, m.etag))
        return kl_errf(err, KL_EBADFILE,
                       "%s: %s: the file listing (lfs.oid %s) and the download (X-Linked-Etag %s) "
                       "disagree on its checksum",
                       r->repo, file, oid_hint, m.etag);
    char blob[PATH_MAX], part[PATH_MAX];
    hub_cache_blob(c, m.etag, NULL, blob, sizeof blob);
    if (!regular_file(blob)) {
        int lock = hub_cache_lock(c, m.etag, err);
        if (lock < 0) return lock;
        if (!regular_file(blob)) { /* another process may have finished it meanwhile */
            hub_cache_blob(c, m.etag, ".incomplete", part, sizeof part);
            rc = hub_http_download(o, &w, m.location[0] ? m.location : url, part, m.size, m.etag,
                                   err);
            if (!rc && rename(part, blob))
                rc = kl_errf(err, KL_EIO, "%s: cannot rename: %s", part, strerror(errno));
        }
        close(lock);
        if (rc) return rc;
    } else if (o->progress != HUB_PROGRESS_NONE) {
        fprintf(stderr, "kiln: pull: %s: in the cache\n", file);
    }
    return hub_cache_link(c, commit, file, m.etag, err);
}

static int pick(const hub_ref *r, char *const *paths, int n, char *out, kl_err *err)
{
    int i = hub_pick((const char *const *)paths, n, r->tag);
    if (i >= 0) {
        snprintf(out, HUB_PATH_MAX, "%s", paths[i]);
        return 0;
    }
    char names[400] = "";
    size_t len = 0;
    for (int k = 0; k < n && len < sizeof names - 80; k++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", k ? ", " : "", paths[k]);
    if (r->tag[0])
        return kl_errf(err, KL_ENOTFOUND, "%s: no GGUF file with tag %s (GGUF files: %s)", r->repo,
                       r->tag, n ? names : "none");
    return kl_errf(err, KL_ENOTFOUND, "%s: no GGUF model file in the repository", r->repo);
}

static int pull_offline(const hub_opts *o, const hub_cache *c, const hub_ref *r, char *out,
                        size_t cap, kl_err *err)
{
    char commit[41], primary[HUB_PATH_MAX], path[PATH_MAX];
    if (hub_cache_get_ref(c, r->revision, commit))
        return kl_errf(err, KL_ENOTFOUND,
                       "%s: revision '%s' is not in the cache %s (HF_HUB_OFFLINE is set: nothing "
                       "is downloaded)",
                       r->repo, r->revision, o->cache_dir);
    int rc = 0;
    if (r->file[0]) {
        snprintf(primary, sizeof primary, "%s", r->file);
    } else {
        char **files;
        int n;
        if ((rc = hub_cache_list(c, commit, &files, &n, err))) return rc;
        rc = pick(r, files, n, primary, err);
        hub_cache_free_list(files, n);
        if (rc) return rc;
    }
    char **shards;
    int n;
    if ((rc = shard_names(primary, &shards, &n, err))) return rc;
    for (int i = 0; i < n && !rc; i++) {
        hub_cache_snapshot(c, commit, shards[i], path, sizeof path);
        if (!regular_file(path))
            rc = kl_errf(err, KL_ENOTFOUND,
                         "%s: %s is not in the cache (HF_HUB_OFFLINE is set: nothing is "
                         "downloaded)",
                         r->repo, shards[i]);
    }
    if (!rc) {
        hub_cache_snapshot(c, commit, shards[0], path, sizeof path);
        if (snprintf(out, cap, "%s", path) >= (int)cap)
            rc = kl_errf(err, KL_EINVAL, "path too long");
    }
    hub_cache_free_list(shards, n);
    return rc;
}

int hub_pull(const hub_ref *r, const hub_opts *o, char *out, size_t cap, kl_err *err)
{
    int rc = hub_revision_check(r->revision, err);
    if (rc) return rc;
    if (r->file[0] && !hub_safe_path(r->file))
        return kl_errf(err, KL_EINVAL, "%s: not a safe relative path", r->file);
    if (strncmp(o->endpoint, "http://", 7) && strncmp(o->endpoint, "https://", 8))
        return kl_errf(err, KL_EINVAL, "HF_ENDPOINT '%s': expected http:// or https://",
                       o->endpoint);
    hub_cache c;
    if ((rc = hub_cache_open(&c, o->cache_dir, r->repo, err))) return rc;
    if (o->offline) return pull_offline(o, &c, r, out, cap, err);

    listing l = {0};
    char primary[HUB_PATH_MAX];
    if (r->file[0]) {
        snprintf(primary, sizeof primary, "%s", r->file);
    } else {
        rc = list_repo(o, r, &l, err);
        char **paths = rc ? NULL : calloc((size_t)l.n + 1, sizeof *paths);
        if (!rc && !paths) rc = kl_errf(err, KL_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < l.n; i++)
            paths[i] = l.v[i].path;
        if (!rc) rc = pick(r, paths, l.n, primary, err);
        free(paths);
        if (rc) {
            listing_free(&l);
            return rc;
        }
    }
    char **shards = NULL;
    int n = 0;
    rc = shard_names(primary, &shards, &n, err);
    char commit[48] = "";
    for (int i = 0; i < n && !rc; i++) {
        const entry *e = listing_find(r->file[0] ? NULL : &l, shards[i]);
        if (!r->file[0] && !e)
            rc = kl_errf(err, KL_ENOTFOUND, "%s: %s is missing from the repository (%d shards)",
                         r->repo, shards[i], n);
        else
            rc = fetch_one(o, &c, r, shards[i], e ? e->oid : NULL, commit, err);
    }
    if (!rc) rc = hub_cache_set_ref(&c, r->revision, commit, err);
    if (!rc) {
        char path[PATH_MAX];
        hub_cache_snapshot(&c, commit, shards[0], path, sizeof path);
        if (snprintf(out, cap, "%s", path) >= (int)cap)
            rc = kl_errf(err, KL_EINVAL, "path too long");
    }
    hub_cache_free_list(shards, n);
    listing_free(&l);
    return rc;
}
