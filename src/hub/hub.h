/* hub/hub.h: GGUF files from a Hugging Face compatible hub, in the huggingface_hub cache.
 *
 * A model reference names a repository and either a file or a quantization tag:
 *     hf://ORG/REPO/PATH/FILE.gguf     one file (the first shard of a split model: all shards)
 *     hf://ORG/REPO:Q4_K_M, ORG/REPO:Q4_K_M
 *                                      the repository's GGUF file with that tag, picked as
 *                                      llama.cpp's -hf does (no tag: Q4_K_M, else Q8_0, else
 *                                      the first model file)
 * hub_pull() downloads what the reference names into the cache (HF_HUB_CACHE, or
 * $HF_HOME/hub, or ~/.cache/huggingface/hub):
 *     models--ORG--REPO/blobs/<sha256>                 the file, verified before it gets its name
 *     models--ORG--REPO/snapshots/<commit>/<path>      a relative link to the blob
 *     models--ORG--REPO/refs/<revision>                the commit the revision pointed to
 * so other tools (huggingface_hub, llama.cpp) share the files. Downloads resume from
 * blobs/<sha256>.incomplete with Range requests, retry dropped connections, 429 and 5xx with
 * backoff, and are checked against the SHA-256 the hub publishes (X-Linked-Etag, the tree
 * API's lfs.oid) before the blob is named: a file that fails never enters the cache.
 * Everything that comes from the network (file names, commits, checksums) is validated
 * before it is used in a path. */
#ifndef KILN_HUB_HUB_H
#define KILN_HUB_HUB_H
#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"

#define HUB_NAME_MAX 96   /* an ORG or REPO name */
#define HUB_PATH_MAX 1024 /* a file's path in the repository */

typedef struct hub_ref {
    char repo[2 * HUB_NAME_MAX + 2]; /* "ORG/REPO" */
    char file[HUB_PATH_MAX];         /* path in the repository; "" picks by tag */
    char tag[64];                    /* quantization tag; "" is the default order */
    char revision[256];              /* branch, tag or commit ("main") */
} hub_ref;

typedef struct hub_opts {
    const char *endpoint;  /* "https://huggingface.co" or HF_ENDPOINT (a mirror) */
    const char *token;     /* HF_TOKEN: Bearer token for gated and private repos, or NULL */
    const char *cache_dir; /* the hub cache root */
    bool offline;          /* HF_HUB_OFFLINE=1: the cache only, no request */
    int progress;          /* HUB_PROGRESS_* on stderr */
    int retries;           /* attempts after the first for a failing request (5) */
    int backoff_ms;        /* first retry delay, doubled each time (500) */
} hub_opts;

enum { HUB_PROGRESS_NONE, HUB_PROGRESS_LINES, HUB_PROGRESS_BAR };

/* True when s must be a hub reference: it starts with hf://, or it has the ORG/REPO[:TAG]
 * shape and does not end in .gguf (callers check for a local file of that name first). */
bool hub_is_ref(const char *s);
/* Parses a reference (see above). Returns 0, or KL_EINVAL naming what is wrong. */
int hub_ref_parse(hub_ref *r, const char *s, kl_err *err);

/* Options from the environment: HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN),
 * HF_HUB_OFFLINE, HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME; a bar when stderr is a terminal,
 * plain lines otherwise. The strings point into the environment or static storage. */
void hub_opts_from_env(hub_opts *o);

/* Makes the file(s) r names present in the cache and writes the local path of the model
 * (the first shard of a split model; the others are beside it) to path. Returns 0, or KL_E*
 * with a message that says what failed and what to do (KL_ENOTFOUND: no such repository,
 * file or tag, or not cached when offline; KL_EINVAL: HF_TOKEN missing or refused, a hostile
 * name; KL_EBADFILE: a checksum that does not match; KL_EIO: network or disk). */
int hub_pull(const hub_ref *r, const hub_opts *o, char *path, size_t cap, kl_err *err);

/* ---- parts, exposed for tests ---- */

/* A repository-relative path that is safe under a cache directory: components of
 * [A-Za-z0-9._+=@,~ ()-] (no "." or "..", no leading '-'), '/'-separated, at most
 * HUB_PATH_MAX bytes. */
bool hub_safe_path(const char *p);
/* llama.cpp's choice of the model file among n repository paths for tag ("" for the
 * default order Q4_K_M, Q8_0, then the first model file); mmproj/imatrix/mtp- files are not
 * models; of a split model only the first shard is a candidate. Returns its index or -1. */
int hub_pick(const char *const *paths, int n, const char *tag);
#endif
