/* hub/http.c: the hub's HTTP calls over libcurl: HEAD for a file's metadata, GET for the
 * JSON API, and resumable, verified downloads. Transient failures (network errors, a
 * connection dropped mid-file, 429, 5xx) are retried with backoff (Retry-After when the hub
 * gives one); the hub's answers that will not change (401, 403, 404) end at once with a
 * message that says what to do. */
#include "hub/internal.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/version.h"

#define BODY_MAX     (64u << 20) /* a JSON answer */
#define ERR_BODY_MAX 2048        /* kept of an error answer's body */
#define RETRY_MAX_S  60          /* longest wait between attempts */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool hub_url_escape(const char *s, bool keep_slash, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c) || (keep_slash && c == '/')) {
            if (n + 1 >= cap) return false;
            out[n++] = (char)c;
        } else {
            if (n + 3 >= cap) return false;
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", c);
        }
    }
    if (n >= cap) return false;
    out[n] = 0;
    return true;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ---- response headers ---- */

static void header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n && *v == ' ') {
        v++;
        n--;
    }
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

/* An ETag as a bare lowercase hex string: W/ and quotes removed. */
static void etag_norm(char *e)
{
    char *s = e;
    if (!strncmp(s, "W/", 2)) s += 2;
    if (*s == '"') s++;
    size_t n = strlen(s);
    if (n && s[n - 1] == '"') n--;
    memmove(e, s, n);
    e[n] = 0;
    for (char *p = e; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

typedef struct xfer {
    hub_resp *r;
    bool linked_etag, linked_size;
    /* body: to memory (API calls, error answers) or to a file (downloads) */
    char *body;
    size_t len, cap, max;
    int fd;            /* -1: memory */
    long long offset;  /* bytes already in the file when the request started */
    bool truncated;    /* this answer is the whole file (200) though we asked for a range */
    EVP_MD_CTX *md;    /* the checksum of the file's bytes */
    const EVP_MD *alg; /* for restarting it */
    long long have;    /* bytes in the file now */
    bool write_failed;
    hub_progress *prog;
    long long git_size; /* git blob SHA-1: the header is hashed first */
} xfer;

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    hub_resp *r = x->r;
    size_t len = size * n;
    if (len > 5 && !strncmp(buf, "HTTP/", 5)) { /* a new response (after a redirect) */
        const char *sp = memchr(buf, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->location[0] = r->next[0] = 0;
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon) return len;
    size_t kn = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vn = len - kn - 1;
#define IS(name) (kn == sizeof name - 1 && !strncasecmp(buf, name, kn))
    if (IS("x-repo-commit")) {
        header_value(r->commit, sizeof r->commit, v, vn);
    } else if (IS("x-linked-etag")) {
        header_value(r->etag, sizeof r->etag, v, vn);
        etag_norm(r->etag);
        x->linked_etag = true;
    } else if (IS("etag") && !x->linked_etag) {
        header_value(r->etag, sizeof r->etag, v, vn);
        etag_norm(r->etag);
    } else if (IS("x-linked-size")) {
        char t[32];
        header_value(t, sizeof t, v, vn);
        r->size = strtoll(t, NULL, 10);
        x->linked_size = true;
    } else if (IS("content-length") && !x->linked_size) {
        char t[32];
        header_value(t, sizeof t, v, vn);
        r->size = strtoll(t, NULL, 10);
    } else if (IS("location")) {
        header_value(r->location, sizeof r->location, v, vn);
    } else if (IS("x-error-code")) {
        header_value(r->error_code, sizeof r->error_code, v, vn);
    } else if (IS("x-error-message")) {
        header_value(r->error_msg, sizeof r->error_msg, v, vn);
    } else if (IS("retry-after")) {
        char t[32];
        header_value(t, sizeof t, v, vn);
        r->retry_after = isdigit((unsigned char)t[0]) ? strtol(t, NULL, 10) : -1;
    } else if (IS("link")) {
        char t[HUB_URL_MAX];
        header_value(t, sizeof t, v, vn);
        const char *lt = strchr(t, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        if (lt && gt && strstr(gt, "rel=\"next\""))
            snprintf(r->next, sizeof r->next, "%.*s", (int)(gt - lt - 1), lt + 1);
    }
#undef IS
    return len;
}

static size_t to_memory(xfer *x, const char *buf, size_t len)
{
    if (x->len + len > x->max) return x->max == ERR_BODY_MAX ? len : 0; /* error bodies: cut */
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + len + 1)
            cap *= 2;
        char *b = realloc(x->body, cap);
        if (!b) return 0;
        x->body = b;
        x->cap = cap;
    }
    memcpy(x->body + x->len, buf, len);
    x->len += len;
    x->body[x->len] = 0;
    return len;
}

static void hash_restart(xfer *x)
{
    EVP_DigestInit_ex(x->md, x->alg, NULL);
    if (x->git_size >= 0) {
        char h[48];
        int n = snprintf(h, sizeof h, "blob %lld", x->git_size);
        EVP_DigestUpdate(x->md, h, (size_t)n + 1); /* with its NUL */
    }
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    long st = x->r->status;
    if (x->fd < 0 || (st != 200 && st != 206)) return to_memory(x, buf, len);
    if (st == 200 && x->offset > 0 && !x->truncated) { /* the whole file, not the range */
        if (ftruncate(x->fd, 0)) {
            x->write_failed = true;
            return 0;
        }
        x->have = 0;
        x->truncated = true;
        hash_restart(x);
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(x->fd, buf + done, len - done, (off_t)x->have);
        if (w <= 0) {
            x->write_failed = true;
            return 0;
        }
        EVP_DigestUpdate(x->md, buf + done, (size_t)w);
        done += (size_t)w;
        x->have += w;
    }
    if (x->prog) hub_progress_update(x->prog, x->have);
    return len;
}

static bool same_origin(const char *a, const char *b)
{
    /* scheme://host[:port] of each, compared */
    const char *ea = strstr(a, "://"), *eb = strstr(b, "://");
    if (!ea || !eb) return false;
    size_t la = (size_t)(ea + 3 - a) + strcspn(ea + 3, "/?#");
    size_t lb = (size_t)(eb + 3 - b) + strcspn(eb + 3, "/?#");
    return la == lb && !strncasecmp(a, b, la);
}

/* A handle with the options every request shares. */
static CURL *handle(const hub_opts *o, const char *url, xfer *x, struct curl_slist **hdrs)
{
    pthread_once(&curl_once, curl_init);
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    /* a connection that stalls for a minute is dropped (and resumed) */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    *hdrs = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (o->token && *o->token && same_origin(url, o->endpoint)) {
        /* The token goes to the hub only: not to a download URL on another host (the CDN),
         * and curl sends a custom Authorization header to no host a redirect leads to. */
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        *hdrs = curl_slist_append(*hdrs, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    return c;
}

static void resp_reset(hub_resp *r)
{
    memset(r, 0, sizeof *r);
    r->size = -1;
    r->retry_after = -1;
}

static const char *what_file(const hub_what *w)
{
    return w->file && *w->file ? w->file : "";
}

/* The message for an HTTP status that ends the request. */
static int status_error(const hub_opts *o, const hub_what *w, const hub_resp *r, kl_err *err)
{
    char subject[1400];
    snprintf(subject, sizeof subject, "%s%s%s", w->repo, *what_file(w) ? ": " : "", what_file(w));
    const char *hub_says = r->error_msg[0] ? r->error_msg : "";
    if (r->status == 401) {
        if (o->token && *o->token)
            return kl_errf(err, KL_EINVAL,
                           "%s: 401 Unauthorized: the hub refused HF_TOKEN (check the token; for "
                           "a gated repository, request access on its page) %s",
                           subject, hub_says);
        return kl_errf(err, KL_EINVAL,
                       "%s: 401 Unauthorized: the repository does not exist, or it is private "
                       "or gated: set HF_TOKEN to an access token that can read it %s",
                       subject, hub_says);
    }
    if (r->status == 403)
        return kl_errf(err, KL_EINVAL,
                       "%s: 403 Forbidden: this account has no access (a gated repository: "
                       "request access on its page, then use that account's HF_TOKEN) %s",
                       subject, hub_says);
    if (r->status == 404) {
        if (!strcasecmp(r->error_code, "RepoNotFound"))
            return kl_errf(err, KL_ENOTFOUND, "%s: 404: no such repository", w->repo);
        if (!strcasecmp(r->error_code, "RevisionNotFound"))
            return kl_errf(err, KL_ENOTFOUND, "%s: 404: no revision '%s'", w->repo, w->revision);
        if (!strcasecmp(r->error_code, "EntryNotFound") || *what_file(w))
            return kl_errf(err, KL_ENOTFOUND, "%s: 404: no such file at revision '%s'", subject,
                           w->revision);
        return kl_errf(err, KL_ENOTFOUND, "%s: 404 Not Found %s", subject, hub_says);
    }
    if (r->status == 429)
        return kl_errf(err, KL_EBUSY,
                       "%s: 429 Too Many Requests: the hub kept refusing after %d attempts; try "
                       "again later",
                       subject, o->retries + 1);
    return kl_errf(err, KL_EIO, "%s: HTTP %ld from the hub %s", subject, r->status, hub_says);
}

static bool transient_status(long st)
{
    return st == 429 || st == 408 || st >= 500;
}

/* Waits before attempt (1-based retry) and says why. */
static void backoff(const hub_opts *o, const hub_what *w, int attempt, const hub_resp *r,
                    const char *why)
{
    long ms = (long)o->backoff_ms << (attempt - 1 < 10 ? attempt - 1 : 10);
    if (r->retry_after >= 0) ms = r->retry_after * 1000;
    if (ms > RETRY_MAX_S * 1000) ms = RETRY_MAX_S * 1000;
    fprintf(stderr, "kiln: pull: %s%s%s: %s; retrying in %.1f s (%d of %d)\n", w->repo,
            *what_file(w) ? "/" : "", what_file(w), why, (double)ms / 1000, attempt, o->retries);
    sleep_ms(ms);
}

/* One request with retries. method: "HEAD" or "GET"; x->body collects a GET's answer. */
static int request(const hub_opts *o, const hub_what *w, const char *url, bool head, xfer *x,
                   kl_err *err)
{
    char cur[HUB_URL_MAX];
    snprintf(cur, sizeof cur, "%s", url);
    int redirects = 0;
    for (int attempt = 0;; attempt++) {
        resp_reset(x->r);
        x->len = 0;
        x->linked_etag = x->linked_size = false;
        struct curl_slist *hdrs = NULL;
        CURL *c = handle(o, cur, x, &hdrs);
        if (!c) return kl_errf(err, KL_ENOMEM, "out of memory");
        if (head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        char ebuf[CURL_ERROR_SIZE] = {0};
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        curl_slist_free_all(hdrs);
        hub_resp *r = x->r;
        if (cc == CURLE_OK && r->status >= 300 && r->status < 400 && r->location[0]) {
            char next[HUB_URL_MAX];
            int len;
            if (r->location[0] == '/') { /* relative: the same host */
                const char *e = strstr(cur, "://");
                size_t ol = (size_t)(e + 3 - cur) + strcspn(e + 3, "/?#");
                len = snprintf(next, sizeof next, "%.*s%s", (int)ol, cur, r->location);
            } else {
                len = snprintf(next, sizeof next, "%s", r->location);
            }
            if (len >= (int)sizeof next)
                return kl_errf(err, KL_EIO, "%s: a redirect to a URL too long", w->repo);
            if (!same_origin(next, o->endpoint)) {
                snprintf(r->location, sizeof r->location, "%s", next);
                return 0; /* a download URL elsewhere (the CDN) */
            }
            if (++redirects > 10)
                return kl_errf(err, KL_EIO, "%s: too many redirects from the hub", w->repo);
            snprintf(cur, sizeof cur, "%s", next);
            attempt--;
            continue;
        }
        bool retry = cc != CURLE_OK ? cc != CURLE_WRITE_ERROR : transient_status(r->status);
        if (!retry || attempt >= o->retries) {
            if (cc == CURLE_WRITE_ERROR)
                return kl_errf(err, KL_EIO, "%s: the hub's answer is over %u bytes", w->repo,
                               BODY_MAX);
            if (cc != CURLE_OK)
                return kl_errf(err, KL_EIO, "%s: %s (after %d attempts)", cur,
                               ebuf[0] ? ebuf : curl_easy_strerror(cc), attempt + 1);
            if (r->status >= 200 && r->status < 300) return 0;
            return status_error(o, w, r, err);
        }
        char why[CURL_ERROR_SIZE + 32];
        if (cc != CURLE_OK)
            snprintf(why, sizeof why, "%s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
        else
            snprintf(why, sizeof why, "HTTP %ld", r->status);
        backoff(o, w, attempt + 1, r, why);
    }
}

int hub_http_head(const hub_opts *o, const hub_what *w, const char *url, hub_resp *r, kl_err *err)
{
    xfer x = {.r = r, .fd = -1, .max = ERR_BODY_MAX};
    int rc = request(o, w, url, true, &x, err);
    free(x.body);
    return rc;
}

int hub_http_get(const hub_opts *o, const hub_what *w, const char *url, char **body, hub_resp *r,
                 kl_err *err)
{
    xfer x = {.r = r, .fd = -1, .max = BODY_MAX};
    int rc = request(o, w, url, false, &x, err);
    if (!rc && r->status >= 300) rc = status_error(o, w, r, err);
    if (rc) {
        free(x.body);
        return rc;
    }
    if (!x.body) x.body = calloc(1, 1);
    *body = x.body;
    return x.body ? 0 : kl_errf(err, KL_ENOMEM, "out of memory");
}

/* Hashes the first n bytes already in fd. */
static int hash_existing(xfer *x, long long n)
{
    char buf[1 << 16];
    for (long long off = 0; off < n;) {
        ssize_t r = pread(x->fd, buf, sizeof buf, (off_t)off);
        if (r <= 0) return -1;
        EVP_DigestUpdate(x->md, buf, (size_t)r);
        off += r;
    }
    return 0;
}

int hub_http_download(const hub_opts *o, const hub_what *w, const char *url, const char *path,
                      long long size, const char *oid, kl_err *err)
{
    bool sha256 = strlen(oid) == 64;
    hub_resp r;
    xfer x = {.r = &r, .max = ERR_BODY_MAX, .git_size = sha256 ? -1 : size};
    x.alg = sha256 ? EVP_sha256() : EVP_sha1();
    x.md = EVP_MD_CTX_new();
    x.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (!x.md || x.fd < 0) {
        int rc = kl_errf(err, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
        if (x.fd >= 0) close(x.fd);
        EVP_MD_CTX_free(x.md);
        return rc;
    }
    struct stat st;
    x.have = fstat(x.fd, &st) ? 0 : st.st_size;
    if (size >= 0 && x.have > size) { /* longer than the file: not a prefix of it */
        if (ftruncate(x.fd, 0)) x.have = -1;
        x.have = 0;
    }
    hash_restart(&x);
    if (x.have > 0 && hash_existing(&x, x.have)) {
        if (ftruncate(x.fd, 0)) x.have = -1;
        x.have = 0;
        hash_restart(&x);
    }
    hub_progress prog;
    hub_progress_start(&prog, o->progress, what_file(w), size, x.have);
    x.prog = &prog;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        if (size >= 0 && x.have == size) break;
        resp_reset(&r);
        x.len = 0;
        x.offset = x.have;
        x.truncated = false;
        struct curl_slist *hdrs = NULL;
        CURL *c = handle(o, url, &x, &hdrs);
        if (!c) {
            rc = kl_errf(err, KL_ENOMEM, "out of memory");
            break;
        }
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        char range[64];
        if (x.have > 0) {
            snprintf(range, sizeof range, "%lld-", x.have);
            curl_easy_setopt(c, CURLOPT_RANGE, range);
        }
        char ebuf[CURL_ERROR_SIZE] = {0};
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        curl_slist_free_all(hdrs);
        if (x.write_failed) {
            rc = kl_errf(err, KL_EIO, "%s: cannot write: %s", path, strerror(errno));
            break;
        }
        if (cc == CURLE_OK && (r.status == 200 || r.status == 206)) {
            if (size < 0 || x.have >= size) break;
            cc = CURLE_PARTIAL_FILE; /* a short answer: resume */
        }
        if (cc == CURLE_OK && r.status == 416) { /* nothing left to send from our offset */
            if (size < 0 || x.have == size) break;
            if (ftruncate(x.fd, 0)) x.have = -1;
            x.have = 0;
            hash_restart(&x);
        }
        bool retry = cc != CURLE_OK || r.status == 416 || transient_status(r.status);
        if (!retry || attempt >= o->retries) {
            if (cc != CURLE_OK)
                rc = kl_errf(err, KL_EIO, "%s: %s (after %d attempts; run again to resume)",
                             what_file(w), ebuf[0] ? ebuf : curl_easy_strerror(cc), attempt + 1);
            else
                rc = status_error(o, w, &r, err);
            break;
        }
        char why[CURL_ERROR_SIZE + 64];
        if (cc != CURLE_OK)
            snprintf(why, sizeof why, "%s at byte %lld", ebuf[0] ? ebuf : curl_easy_strerror(cc),
                     x.have);
        else
            snprintf(why, sizeof why, "HTTP %ld", r.status);
        backoff(o, w, attempt + 1, &r, why);
    }
    if (!rc && size >= 0 && x.have != size)
        rc = kl_errf(err, KL_EIO, "%s: got %lld bytes, the hub said %lld", what_file(w), x.have,
                     size);
    if (!rc) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdn = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        EVP_DigestFinal_ex(x.md, md, &mdn);
        for (unsigned i = 0; i < mdn; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        hex[2 * mdn] = 0;
        if (strcmp(hex, oid)) {
            unlink(path);
            rc = kl_errf(err, KL_EBADFILE,
                         "%s: checksum mismatch: the file's %s is %s, the hub published %s; the "
                         "download was discarded (run again to retry)",
                         what_file(w), sha256 ? "SHA-256" : "git SHA-1", hex, oid);
        } else if (fsync(x.fd)) {
            rc = kl_errf(err, KL_EIO, "%s: cannot write: %s", path, strerror(errno));
        }
    }
    hub_progress_end(&prog, rc == 0);
    close(x.fd);
    EVP_MD_CTX_free(x.md);
    free(x.body);
    return rc;
}
