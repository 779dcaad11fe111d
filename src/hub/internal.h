/* hub/internal.h: the pieces of hub_pull (hub/pull.c): names (ref.c), the cache layout
 * (cache.c), HTTP with libcurl (http.c) and the progress display (progress.c). */
#ifndef KILN_HUB_INTERNAL_H
#define KILN_HUB_INTERNAL_H
#include <stdint.h>
#include "hub/hub.h"

#define HUB_URL_MAX 4096

/* s is exactly n lowercase hex digits. */
bool hub_hex_ok(const char *s, size_t n);
/* A revision name usable in a path and a URL; KL_EINVAL otherwise. */
int hub_revision_check(const char *rev, kl_err *err);

/* ---- cache.c: models--ORG--REPO/{blobs,snapshots,refs} under o->cache_dir ---- */
typedef struct hub_cache {
    char repo_dir[2048]; /* <root>/models--ORG--REPO */
    char lock_dir[2048]; /* <root>/.locks/models--ORG--REPO */
} hub_cache;

int hub_cache_open(hub_cache *c, const char *root, const char *repo, kl_err *err);
/* <repo_dir>/blobs/<oid>[suffix] */
void hub_cache_blob(const hub_cache *c, const char *oid, const char *suffix, char *out, size_t cap);
/* <repo_dir>/snapshots/<commit>/<file> */
void hub_cache_snapshot(const hub_cache *c, const char *commit, const char *file, char *out,
                        size_t cap);
/* Links snapshots/<commit>/<file> to blobs/<oid> (relative, replacing what is there). */
int hub_cache_link(const hub_cache *c, const char *commit, const char *file, const char *oid,
                   kl_err *err);
/* Writes refs/<revision> = commit (nothing when the revision is the commit). */
int hub_cache_set_ref(const hub_cache *c, const char *revision, const char *commit, kl_err *err);
/* The commit a revision points to in the cache (a commit names itself when its snapshot
 * exists). Returns 0 or KL_ENOTFOUND. */
int hub_cache_get_ref(const hub_cache *c, const char *revision, char commit[41]);
/* The files of a snapshot whose links resolve, as paths relative to it, sorted; *out and
 * every string are malloc'd (hub_cache_free_list). */
int hub_cache_list(const hub_cache *c, const char *commit, char ***out, int *n, kl_err *err);
void hub_cache_free_list(char **list, int n);
/* An exclusive lock on <lock_dir>/<oid>.lock (waits), the blobs directory made; returns the fd
 * or KL_EIO. */
int hub_cache_lock(const hub_cache *c, const char *oid, kl_err *err);

/* ---- http.c ---- */
typedef struct hub_resp {
    long status;
    char commit[48]; /* X-Repo-Commit */
    char etag[80];   /* X-Linked-Etag, else ETag; quotes and W/ removed, lowercase */
    long long size;  /* X-Linked-Size, else Content-Length; -1 unknown */
    char location[HUB_URL_MAX];
    char next[HUB_URL_MAX]; /* Link: <...>; rel="next" */
    char error_code[64];    /* X-Error-Code */
    char error_msg[256];    /* X-Error-Message */
    long retry_after;       /* seconds, -1 */
} hub_resp;

/* What a request is about, for messages: "ORG/REPO" and a file or "". */
typedef struct hub_what {
    const char *repo, *file, *revision;
} hub_what;

/* HEAD url: follows redirects within the endpoint (a renamed repository), stops at one to
 * another host (the download URL is then in location). Retries 429, 5xx and network errors.
 * Returns 0 with r filled for a 2xx/3xx answer, or KL_E* with the reason in err. */
int hub_http_head(const hub_opts *o, const hub_what *w, const char *url, hub_resp *r, kl_err *err);
/* GET url (a JSON API call): body (malloc'd, NUL-terminated, at most 64 MiB). */
int hub_http_get(const hub_opts *o, const hub_what *w, const char *url, char **body, hub_resp *r,
                 kl_err *err);
/* Downloads url into path (resuming from its length) until it holds size bytes whose
 * checksum is oid (64 hex: SHA-256; 40 hex: git's blob SHA-1). Returns 0, or KL_E* with err;
 * a checksum that does not match removes path (KL_EBADFILE). */
int hub_http_download(const hub_opts *o, const hub_what *w, const char *url, const char *path,
                      long long size, const char *oid, kl_err *err);
/* Percent-encodes s into out (keeping '/' when keep_slash). False when it does not fit. */
bool hub_url_escape(const char *s, bool keep_slash, char *out, size_t cap);

/* ---- progress.c ---- */
typedef struct hub_progress {
    int mode;
    const char *label;
    long long total, done, start_at;
    double t0, last;
    int last_decile;
} hub_progress;

void hub_progress_start(hub_progress *p, int mode, const char *label, long long total,
                        long long already);
void hub_progress_update(hub_progress *p, long long done);
void hub_progress_end(hub_progress *p, bool ok);
#endif
