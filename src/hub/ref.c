/* hub/ref.c: model references (hf://ORG/REPO/FILE.gguf, ORG/REPO:TAG), the checks every name
 * from the user or the network passes before it becomes part of a path or URL, and the
 * choice of the model file among a repository's files. */
#include "hub/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gguf/gguf.h"

/* An ORG or REPO name as the hub allows them: [A-Za-z0-9._-], starting with a letter or
 * digit, without ".." or "--" (the cache uses "--" between ORG and REPO). */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > HUB_NAME_MAX || !isalnum((unsigned char)s[0])) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') return false;
        if (i > 0 && (c == '.' || c == '-') && s[i - 1] == c) return false;
    }
    return true;
}

static bool tag_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof((hub_ref *)0)->tag) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i])) return false;
    return true;
}

static bool path_char_ok(unsigned char c)
{
    return isalnum(c) || strchr("._-+=@,~ ()", c);
}

bool hub_safe_path(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n >= HUB_PATH_MAX) return false;
    const char *c = p;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && !memcmp(c, "..", 2)))
            return false;
        for (size_t i = 0; i < len; i++)
            if (!path_char_ok((unsigned char)c[i])) return false;
        if (!e) break;
        c = e + 1;
        if (!*c) return false; /* a trailing '/' */
    }
    return true;
}

bool hub_hex_ok(const char *s, size_t n)
{
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f')) return false;
    return true;
}

static bool ends_with_gguf(const char *s)
{
    size_t n = strlen(s);
    return n >= 5 && !strcasecmp(s + n - 5, ".gguf");
}

/* Splits "ORG/REPO..." at the end of REPO; returns the length of "ORG/REPO" or 0. */
static size_t repo_len(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || !name_ok(s, (size_t)(slash - s))) return 0;
    const char *r = slash + 1;
    size_t rn = strcspn(r, "/:");
    if (!name_ok(r, rn)) return 0;
    return (size_t)(r + rn - s);
}

bool hub_is_ref(const char *s)
{
    if (!strncmp(s, "hf://", 5)) return true;
    size_t n = repo_len(s);
    if (!n || ends_with_gguf(s)) return false;
    return s[n] == 0 || (s[n] == ':' && tag_ok(s + n + 1));
}

int hub_ref_parse(hub_ref *r, const char *s, kl_err *err)
{
    memset(r, 0, sizeof *r);
    snprintf(r->revision, sizeof r->revision, "main");
    const char *in = s;
    if (!strncmp(s, "hf://", 5)) s += 5;
    size_t n = repo_len(s);
    if (!n)
        return kl_errf(err, KL_EINVAL,
                       "%s: expected hf://ORG/REPO/FILE.gguf or ORG/REPO[:TAG] (names of letters, "
                       "digits, '.', '_', '-')",
                       in);
    memcpy(r->repo, s, n);
    s += n;
    if (*s == '/') {
        if (!hub_safe_path(s + 1) || !ends_with_gguf(s + 1))
            return kl_errf(err, KL_EINVAL,
                           "%s: the file must be a plain relative path ending in .gguf", in);
        snprintf(r->file, sizeof r->file, "%s", s + 1);
    } else if (*s == ':') {
        if (!tag_ok(s + 1))
            return kl_errf(err, KL_EINVAL, "%s: the tag must be letters, digits, '.', '_', '-'",
                           in);
        snprintf(r->tag, sizeof r->tag, "%s", s + 1);
    }
    return 0;
}

int hub_revision_check(const char *rev, kl_err *err)
{
    if (strlen(rev) >= sizeof((hub_ref *)0)->revision || !hub_safe_path(rev))
        return kl_errf(err, KL_EINVAL, "revision '%.100s': expected a branch, tag or commit name",
                       rev);
    return 0;
}

/* ---- picking the model file, as llama.cpp's -hf does ---- */

static bool is_model_file(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!ends_with_gguf(base)) return false;
    if (strstr(base, "mmproj") || strstr(base, "imatrix") || strstr(base, "mtp-")) return false;
    size_t pl;
    int no, count;
    return !gguf_split_name_parse(base, &pl, &no, &count) || no == 1;
}

/* The tag followed by '.', '_' or '-' anywhere in path, ignoring case. */
static bool has_tag(const char *path, const char *tag)
{
    size_t tn = strlen(tag);
    for (const char *p = path; *p; p++)
        if (!strncasecmp(p, tag, tn) && p[tn] && strchr("._-", p[tn])) return true;
    return false;
}

int hub_pick(const char *const *paths, int n, const char *tag)
{
    static const char *const defaults[] = {"Q4_K_M", "Q8_0"};
    const char *const *tags = tag && *tag ? &tag : defaults;
    int n_tags = tag && *tag ? 1 : 2;
    for (int t = 0; t < n_tags; t++)
        for (int i = 0; i < n; i++)
            if (is_model_file(paths[i]) && has_tag(paths[i], tags[t])) return i;
    if (tag && *tag) return -1;
    for (int i = 0; i < n; i++)
        if (is_model_file(paths[i])) return i;
    return -1;
}
