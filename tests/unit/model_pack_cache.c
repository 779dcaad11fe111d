/* The packed-weights cache (model/packcache.c): the first load writes an entry, the next maps
 * it; both compute the same bits as packing in memory. A corrupted entry fails its checksum
 * and is rewritten; an entry whose model file changed is not used, and is pruned when the new
 * one is written. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "model/internal.h"
#include "model/make.h"
#include "t.h"
#include "t_model.h"

/* Files of dir ending in ext; one gets the path of the last. */
static int count_ext(const char *dir, const char *ext, char *one, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > strlen(ext) && !strcmp(e->d_name + l - strlen(ext), ext)) {
            k++;
            if (one) snprintf(one, n, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return k;
}

static int count_entries(const char *dir, char *one, size_t n)
{
    return count_ext(dir, ".kpk", one, n);
}

/* Loads path (cache in dir, or none), runs a 5-token prompt and returns its logits (malloc'd);
 * *cached says whether the packed weights came from the cache. */
static float *logits_of(const char *path, const char *dir, bool *cached)
{
    gguf_file *f;
    model *m;
    kl_err err = {0};
    T_EQ(gguf_open(&f, path, &err), 0);
    model_opts o = {
        .max_batch_tokens = 8, .max_ctx = 64, .pack_cache_dir = dir, .pack_cache_min = 1};
    T_EQ(model_load(&m, f, &o, &err), 0);
    const model_hparams *hp = model_hparams_of(m);
    kv_store *kv;
    kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, 16, KL_F16, 1u << 20};
    T_EQ(kv_store_create(&kv, &kc, &err), 0);
    int32_t blocks[1] = {0}, tok[5] = {1, 7, 42, 300, 5};
    model_seq sq = {blocks, 1};
    t_batch tb;
    float *lg = malloc(sizeof(float) * 5 * (size_t)hp->n_vocab);
    T_EQ(model_forward(m, NULL, kv, t_batch_seq(&tb, &sq, tok, 5, 0), lg, &err), 0);
    *cached = m->packed_cached;
    kv_store_destroy(kv);
    model_free(m);
    gguf_close(f);
    return lg;
}

TEST(model_pack_cache_writes_maps_and_revalidates)
{
    if (!kl_pack_bytes(KL_Q8_0, 16, 64)) t_skip("no packed matmul on this CPU");
    char path[4096], dir[4096], entry[4096];
    snprintf(path, sizeof path, "%s/m.gguf", t_tmpdir());
    snprintf(dir, sizeof dir, "%s/cache/packed", t_tmpdir());
    model_make_opts mo;
    model_make_defaults(&mo);
    mo.type = KL_Q8_0;
    mo.tied = true;
    kl_err err = {0};
    T_EQ(model_make(&mo, path, &err), 0);
    size_t n = sizeof(float) * 5 * 512;
    bool cached = true;
    float *plain = logits_of(path, NULL, &cached);
    T_ASSERT(!cached);
    T_EQ(count_entries(dir, NULL, 0), 0);

    float *first = logits_of(path, dir, &cached); /* packs, writes the entry */
    T_ASSERT(!cached);
    T_EQ(count_entries(dir, entry, sizeof entry), 1);
    T_MEMEQ(first, plain, n);
    float *second = logits_of(path, dir, &cached); /* maps it */
    T_ASSERT(cached);
    T_MEMEQ(second, plain, n);

    /* one flipped payload byte: refused, repacked and rewritten */
    int fd = open(entry, O_RDWR);
    T_ASSERT(fd >= 0);
    uint8_t byte;
    T_EQ(pread(fd, &byte, 1, 1000), 1);
    byte ^= 1;
    T_EQ(pwrite(fd, &byte, 1, 1000), 1);
    close(fd);
    float *third = logits_of(path, dir, &cached);
    T_ASSERT(!cached);
    T_MEMEQ(third, plain, n);
    free(logits_of(path, dir, &cached));
    T_ASSERT(cached);

    /* a truncated entry: refused too */
    T_EQ(truncate(entry, 4096), 0);
    free(logits_of(path, dir, &cached));
    T_ASSERT(!cached);

    /* the model file changes (new mtime): a new entry, the old one pruned */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1000000, 0}};
    T_EQ(utimensat(AT_FDCWD, path, ts, 0), 0);
    float *fourth = logits_of(path, dir, &cached);
    T_ASSERT(!cached);
    T_MEMEQ(fourth, plain, n);
    char now[4096];
    T_EQ(count_entries(dir, now, sizeof now), 1);
    T_ASSERT(strcmp(now, entry) != 0);
    T_EQ(count_ext(dir, ".lock", NULL, 0), 1);
    T_EQ(count_ext(dir, ".tmp", NULL, 0), 0);
    free(logits_of(path, dir, &cached));
    T_ASSERT(cached);
    free(plain), free(first), free(second), free(third), free(fourth);
}

/* A copy of entry src named name whose trailer says pack_id (re-summed, so it reads as valid). */
static void forge_entry(const char *src, const char *dir, const char *name, const char *pack_id)
{
    size_t n;
    FILE *f = fopen(src, "rb");
    T_ASSERT(f);
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n);
    T_EQ(fread(b, 1, n, f), n);
    fclose(f);
    /* the trailer: pc_key, payload sum, source path, then its own sum */
    size_t tsz = sizeof(pc_key) + 8 + 1024 + 8, at = n - tsz;
    char *id = (char *)b + at + offsetof(pc_key, pack_id);
    memset(id, 0, 32);
    snprintf(id, 32, "%s", pack_id);
    uint64_t sum = XXH3_64bits(b + at, tsz - 8);
    memcpy(b + n - 8, &sum, 8);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    T_ASSERT(f);
    T_EQ(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

static bool exists_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* Writing an entry prunes those of an older layout of this kernel set (what an upgrade leaves:
 * a copy of every model), and keeps other kernel sets', newer versions' and live ones. */
TEST(model_pack_cache_prunes_older_layouts)
{
    if (!kl_pack_bytes(KL_Q8_0, 16, 64)) t_skip("no packed matmul on this CPU");
    char a[4096], b[4096], dir[4096], entry[4096];
    snprintf(a, sizeof a, "%s/a.gguf", t_tmpdir());
    snprintf(b, sizeof b, "%s/b.gguf", t_tmpdir());
    snprintf(dir, sizeof dir, "%s/cache/older", t_tmpdir());
    model_make_opts mo;
    model_make_defaults(&mo);
    mo.type = KL_Q8_0, mo.tied = true;
    kl_err err = {0};
    T_EQ(model_make(&mo, a, &err), 0);
    mo.seed = 7;
    T_EQ(model_make(&mo, b, &err), 0);
    bool cached;
    free(logits_of(a, dir, &cached));
    T_EQ(count_entries(dir, entry, sizeof entry), 1);
    char older[32], newer[32];
    const char *mine = kl_pack_id(), *slash = strchr(mine, '/');
    T_ASSERT(slash);
    long v = strtol(slash + 1, NULL, 10);
    snprintf(older, sizeof older, "%.*s/%ld", (int)(slash - mine), mine, v - 1);
    snprintf(newer, sizeof newer, "%.*s/%ld", (int)(slash - mine), mine, v + 1);
    forge_entry(entry, dir, "00000000000000000000000000000001.kpk", older);
    forge_entry(entry, dir, "00000000000000000000000000000002.kpk", newer);
    forge_entry(entry, dir, "00000000000000000000000000000003.kpk", "otherisa/1");
    free(logits_of(b, dir, &cached)); /* writes b's entry, prunes */
    T_ASSERT(!cached);
    T_ASSERT(!exists_in(dir, "00000000000000000000000000000001.kpk"));
    T_ASSERT(exists_in(dir, "00000000000000000000000000000002.kpk"));
    T_ASSERT(exists_in(dir, "00000000000000000000000000000003.kpk"));
    T_ASSERT(access(entry, F_OK) == 0); /* a's own entry: live */
    T_EQ(count_entries(dir, NULL, 0), 4);
    free(logits_of(a, dir, &cached));
    T_ASSERT(cached);
}

/* gguf_release gives back a mapped file's pages (they read back the same) and leaves bytes
 * the caller owns alone. */
TEST(gguf_release_keeps_contents)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/r.gguf", t_tmpdir());
    model_make_opts mo;
    model_make_defaults(&mo);
    kl_err err = {0};
    T_EQ(model_make(&mo, path, &err), 0);
    gguf_file *f;
    T_EQ(gguf_open(&f, path, &err), 0);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    T_ASSERT(t && t->nbytes > 8192);
    uint8_t *copy = malloc(t->nbytes);
    memcpy(copy, t->data, t->nbytes);
    gguf_release(f, t->data, t->nbytes);
    T_MEMEQ(t->data, copy, t->nbytes);
    gguf_identity id;
    T_ASSERT(gguf_identity_of(f, &id));
    T_EQ(id.size, gguf_file_size(f));
    gguf_close(f);

    gguf_file *g;
    T_EQ(gguf_open_mem(&g, copy, 0, "mem", &err) != 0, 1); /* empty: refused, nothing mapped */
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    size_t len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *bytes = malloc(len), *before = malloc(len);
    T_EQ(fread(bytes, 1, len, fp), len);
    fclose(fp);
    memcpy(before, bytes, len);
    T_EQ(gguf_open_mem(&g, bytes, len, "mem", &err), 0);
    T_ASSERT(!gguf_identity_of(g, &id));
    const gguf_tensor *u = gguf_find_tensor(g, "token_embd.weight");
    gguf_release(g, u->data, u->nbytes);
    T_MEMEQ(bytes, before, len);
    gguf_close(g);
    free(copy), free(bytes), free(before);
}
