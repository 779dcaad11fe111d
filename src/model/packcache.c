/* model/packcache.c: packed weights saved next to nothing but themselves, so a restart maps
 * them instead of repacking and replicas on one host share one copy in the page cache.
 *
 * One file per (model file, packed layout): DIR/<key>.kpk, key = XXH3-128 of what it was made
 * from (kl_pack_id, the model file's device, inode, size and mtime, the list of packed
 * weights with their types, shapes and sizes). The payload is at offset 0, in exactly the
 * layout model_pack gives an anonymous mapping (so it maps on 2 MiB folios where the page
 * cache has them), followed by a trailer: the key material, a checksum of the payload and the
 * source path (to prune entries whose model is gone). An entry is written under a temporary
 * name and renamed into place, under an flock on DIR/<key>.lock so that replicas starting
 * together pack once. Opening checks the trailer against the model and the payload against
 * its checksum (the pass that faults the weights in); anything wrong is removed and rewritten.
 * No fsync: a torn file after a crash fails its checksum like any other corruption. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/log.h"
#include "model/internal.h"

#define PC_MAGIC "KILNPK01"
#define PC_CHUNK ((size_t)8 << 20) /* bytes per checksummed chunk (split across workers) */

typedef struct pc_trailer {
    pc_key key;
    uint64_t payload_sum; /* XXH3-64 of the chunks' XXH3-64s */
    char source[1024];    /* the model file's path when written */
    uint64_t trailer_sum; /* XXH3-64 of the bytes above */
} pc_trailer;

/* Fills the key for f and the layout. Returns false when f is not a mapped file. */
static bool make_key(pc_key *k, const gguf_file *f, uint64_t layout_hash, size_t bytes)
{
    memset(k, 0, sizeof *k);
    memcpy(k->magic, PC_MAGIC, 8);
    snprintf(k->pack_id, sizeof k->pack_id, "%s", kl_pack_id());
    k->layout_hash = layout_hash;
    k->payload_size = bytes;
    return gguf_identity_of(f, &k->src);
}

static uint64_t trailer_sum(const pc_trailer *t)
{
    return XXH3_64bits(t, offsetof(pc_trailer, trailer_sum));
}

typedef struct {
    const uint8_t *p;
    size_t n;
    uint64_t *sums; /* one per chunk */
} sum_job;

static void sum_part(void *ctx, int ith, int nth)
{
    sum_job *j = ctx;
    size_t chunks = (j->n + PC_CHUNK - 1) / PC_CHUNK;
    for (size_t c = chunks * (size_t)ith / (size_t)nth;
         c < chunks * (size_t)(ith + 1) / (size_t)nth; c++) {
        size_t at = c * PC_CHUNK, len = j->n - at < PC_CHUNK ? j->n - at : PC_CHUNK;
        j->sums[c] = XXH3_64bits(j->p + at, len);
    }
}

/* The payload's checksum, read across the workers. Returns false when out of memory. */
static bool payload_sum(const void *p, size_t n, kl_workers *wk, uint64_t *out)
{
    size_t chunks = (n + PC_CHUNK - 1) / PC_CHUNK;
    sum_job j = {p, n, malloc(sizeof(uint64_t) * (chunks ? chunks : 1))};
    if (!j.sums) return false;
    kl_workers_run(wk, sum_part, &j);
    *out = XXH3_64bits(j.sums, sizeof(uint64_t) * chunks);
    free(j.sums);
    return true;
}

/* mkdir -p dir. Returns true when it exists afterwards. */
static bool make_dirs(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return false;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads and checks the trailer of an entry of size bytes. */
static bool read_trailer(int fd, off_t size, pc_trailer *t)
{
    if (size < (off_t)sizeof *t) return false;
    if (pread(fd, t, sizeof *t, size - (off_t)sizeof *t) != (ssize_t)sizeof *t) return false;
    t->source[sizeof t->source - 1] = 0;
    t->key.pack_id[sizeof t->key.pack_id - 1] = 0;
    return !memcmp(t->key.magic, PC_MAGIC, 8) && t->trailer_sum == trailer_sum(t) &&
           (uint64_t)size == t->key.payload_size + sizeof *t;
}

/* Whether pack_id ("avx512/2") names an older layout of this Kiln's kernel set ("avx512/3"):
 * an entry no reader of this version or a newer one opens. Other kernel sets' entries and newer
 * versions' belong to other Kilns sharing the directory (hosts, a rolling upgrade), and stay. */
static bool superseded(const char *pack_id)
{
    const char *mine = kl_pack_id(), *ms = strchr(mine, '/'), *ts = strchr(pack_id, '/');
    if (!ms || !ts || ms - mine != ts - pack_id || strncmp(mine, pack_id, (size_t)(ms - mine)))
        return false;
    return strtol(ts + 1, NULL, 10) < strtol(ms + 1, NULL, 10);
}

/* Whether the entry at path is readable, of a layout still read, and its model file is still
 * the one it was made from. */
static bool entry_live(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true; /* not ours to judge */
    struct stat st, src;
    pc_trailer t;
    bool ok = !fstat(fd, &st) && read_trailer(fd, st.st_size, &t);
    close(fd);
    return ok && !superseded(t.key.pack_id) && stat(t.source, &src) == 0 &&
           (uint64_t)src.st_dev == t.key.src.dev && (uint64_t)src.st_ino == t.key.src.ino &&
           (uint64_t)src.st_size == t.key.src.size &&
           (int64_t)src.st_mtim.tv_sec * 1000000000 + src.st_mtim.tv_nsec == t.key.src.mtime_ns;
}

/* Removes the entries of dir whose model file is gone or changed, entries of an older packed
 * layout of this kernel set (a Kiln upgrade left them: a copy of every model), unreadable
 * entries, and
 * temporary files over a day old (a writer killed midway), and lock files without an entry;
 * keep names the entry just written (its key prefix). Bounded by the directory's size; runs
 * only when a new entry is written. */
static void prune(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[PATH_MAX];
    for (int pass = 0; pass < 2; pass++, rewinddir(d)) /* entries, then the locks left bare */
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            bool entry = l > 4 && !strcmp(e->d_name + l - 4, ".kpk"),
                 tmp = l > 4 && !strcmp(e->d_name + l - 4, ".tmp"),
                 lock = l > 5 && !strcmp(e->d_name + l - 5, ".lock");
            if ((pass == 0 && !entry && !tmp) || (pass == 1 && !lock) ||
                !strncmp(e->d_name, keep, 32) ||
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
                continue;
            if (lock) { /* a writer still holding it only races another: harmless */
                char kpk[PATH_MAX];
                snprintf(kpk, sizeof kpk, "%.*s.kpk", (int)(strlen(path) - 5), path);
                if (access(kpk, F_OK)) unlink(path);
            } else if (tmp) {
                struct stat st;
                if (!stat(path, &st) && st.st_mtime < time(NULL) - 86400) unlink(path);
            } else if (!entry_live(path)) {
                unlink(path);
            }
        }
    closedir(d);
}

void pack_cache_close(pack_cache *pc)
{
    if (pc->fd >= 0) close(pc->fd);
    if (pc->tmp[0]) unlink(pc->tmp);
    if (pc->lock_fd >= 0) close(pc->lock_fd); /* releases the flock */
    pc->fd = pc->lock_fd = -1;
    pc->tmp[0] = 0;
}

int pack_cache_lookup(pack_cache *pc, const char *dir, const gguf_file *f, uint64_t layout_hash,
                      size_t bytes, kl_workers *wk, void **out)
{
    *out = NULL;
    memset(pc, 0, sizeof *pc);
    pc->fd = pc->lock_fd = -1;
    pc_key key;
    if (!make_key(&key, f, layout_hash, bytes) || !make_dirs(dir)) return 0;
    XXH128_hash_t h = XXH3_128bits(&key, sizeof key);
    char name[64], lock[PATH_MAX];
    snprintf(name, sizeof name, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    if (snprintf(pc->path, sizeof pc->path, "%s/%s.kpk", dir, name) >= (int)sizeof pc->path ||
        snprintf(lock, sizeof lock, "%s/%s.lock", dir, name) >= (int)sizeof lock)
        return 0;
    snprintf(pc->dir, sizeof pc->dir, "%s", dir);
    snprintf(pc->source, sizeof pc->source, "%s", gguf_path(f));
    pc->key = key;
    pc->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pc->lock_fd >= 0) flock(pc->lock_fd, LOCK_EX); /* another replica may be writing it */
    int fd = open(pc->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    pc_trailer t;
    const char *why = NULL;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) || !read_trailer(fd, st.st_size, &t))
        why = "unreadable trailer";
    else if (memcmp(&t.key, &key, sizeof key))
        why = "made from something else";
    else if ((p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)
        why = strerror(errno);
    close(fd);
    if (!why) {
        madvise(p, bytes, MADV_HUGEPAGE);
        uint64_t sum = 0;
        if (!payload_sum(p, bytes, wk, &sum) || sum != t.payload_sum) why = "checksum mismatch";
    }
    if (why) {
        if (p != MAP_FAILED) munmap(p, bytes);
        kl_warn("model: packed-weights cache %s: %s; repacking", pc->path, why);
        unlink(pc->path);
        return 0;
    }
    *out = p;
    return 1;
}

void *pack_cache_create(pack_cache *pc, size_t bytes)
{
    if (!pc->path[0]) return NULL;
    struct statvfs vfs;
    size_t need = bytes + sizeof(pc_trailer);
    if (statvfs(pc->dir, &vfs) || (uint64_t)vfs.f_bavail * vfs.f_frsize < need + (need >> 4)) {
        kl_info("model: not enough disk space in %s for the packed-weights cache (%zu MiB)",
                pc->dir, need >> 20);
        return NULL;
    }
    if (snprintf(pc->tmp, sizeof pc->tmp, "%s.%ld.tmp", pc->path, (long)getpid()) >=
        (int)sizeof pc->tmp)
        return pc->tmp[0] = 0, NULL;
    pc->fd = open(pc->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (pc->fd < 0) return pc->tmp[0] = 0, NULL;
    /* blocks reserved now: a disk that fills up later would be SIGBUS on a mapped write */
    void *p = MAP_FAILED;
    if (posix_fallocate(pc->fd, 0, (off_t)need) == 0)
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, pc->fd, 0);
    if (p == MAP_FAILED) {
        kl_info("model: cannot write the packed-weights cache %s; packing in memory", pc->tmp);
        pack_cache_close(pc);
        return NULL;
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

void pack_cache_commit(pack_cache *pc, void *p, size_t bytes, kl_workers *wk)
{
    pc_trailer t;
    memset(&t, 0, sizeof t);
    t.key = pc->key;
    snprintf(t.source, sizeof t.source, "%s", pc->source);
    bool ok = payload_sum(p, bytes, wk, &t.payload_sum);
    t.trailer_sum = trailer_sum(&t);
    mprotect(p, bytes, PROT_READ);
    ok = ok && pwrite(pc->fd, &t, sizeof t, (off_t)bytes) == (ssize_t)sizeof t &&
         rename(pc->tmp, pc->path) == 0;
    if (ok) {
        pc->tmp[0] = 0; /* renamed: nothing to remove */
        const char *base = strrchr(pc->path, '/');
        prune(pc->dir, base ? base + 1 : pc->path);
        kl_info("model: packed weights saved to %s (%zu MiB)", pc->path, bytes >> 20);
    }
    pack_cache_close(pc); /* the mapping stays valid whether the file was renamed or not */
}
