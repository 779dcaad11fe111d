/* gguf/internal.h: the reader's state, shared by read.c and split.c only. */
#ifndef KILN_GGUF_INTERNAL_H
#define KILN_GGUF_INTERNAL_H
#include "gguf/gguf.h"

struct gguf_file {
    char *path;
    const uint8_t *base; /* mapping or caller bytes */
    uint64_t size;
    bool mapped;
    gguf_identity id; /* of a mapped file */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int64_t n_kv, n_tensors;
    gguf_kv *kvs;         /* (n_kv) */
    gguf_tensor *tensors; /* (n_tensors); of a split model: every shard's, data in its shard */
    char **owned;         /* NUL-terminated copies and string tables, freed at close */
    size_t n_owned, cap_owned;
    gguf_file **shards; /* (n_shards) shards 2..N of a split model, closed with this one */
    int n_shards;
    int guard; /* its slot in the SIGBUS guard (guard.c), -1: none */
};

/* guard.c: registers a file mapping; returns its slot, or -1 when every slot is taken. */
int gguf_guard_add(const void *base, size_t size);
void gguf_guard_remove(int slot); /* -1 is fine */
/* Pages of the slot's mapping that went missing (read as zeros) since it was added. */
uint64_t gguf_guard_faults(int slot);

/* Maps and validates one file (gguf_open without the split handling). */
int gguf_open_one(gguf_file **out, const char *path, kl_err *err);
/* Sorts names and returns the index of a name equal to its predecessor, or 0 when all differ. */
int gguf_find_duplicate(const char **names, int64_t n);
/* When f is the first shard of a split model (split.count > 1), opens the other shards next
 * to it and adopts their tensors. Returns 0 (also for a file that is not split), or KL_E*
 * with the reason in err and f unchanged apart from shards it may have opened (closed with f). */
int gguf_join_split(gguf_file *f, kl_err *err);
#endif
