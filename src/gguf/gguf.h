/* gguf/gguf.h: GGUF v2/v3 files, read through mmap and validated before any use, and written.
 *
 * gguf_open() checks the whole file up front: every count against the bytes left, every
 * string and array inside the file, known value and tensor types, a power-of-two alignment,
 * tensor shapes without overflow, tensor data inside the data section and not overlapping.
 * After it returns 0 every view below is safe to use. Views (gguf_str, tensor data) point
 * into the mapping and live until gguf_close(). */
#ifndef KILN_GGUF_GGUF_H
#define KILN_GGUF_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"
#include "base/err.h"

#define GGUF_MAGIC             0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MIN_ALIGNMENT     8 /* the spec: "a multiple of 8" */
#define GGUF_MAX_ALIGNMENT     (1u << 20)
#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          256 /* bytes in a tensor name */
#define GGUF_MAX_ARRAY_DEPTH   4   /* nesting of arrays of arrays */

typedef enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_VTYPE_COUNT = 13,
} gguf_vtype;

/* A string in the file: not NUL-terminated. */
typedef struct gguf_str {
    uint64_t len;
    const char *ptr;
} gguf_str;

/* An array value. For fixed-size element types, data points at n packed little-endian
 * elements. For strings, strs[i] is element i. For arrays of arrays, data points at the
 * first nested array's bytes (raw; nbytes gives the span) and elements are not indexed. */
typedef struct gguf_arr {
    gguf_vtype type;
    uint64_t n;
    const void *data;
    uint64_t nbytes;
    const gguf_str *strs; /* only for GGUF_STRING arrays */
} gguf_arr;

typedef struct gguf_kv {
    const char *key; /* NUL-terminated copy */
    gguf_vtype type;
    union {
        uint64_t u64; /* any unsigned integer type, widened */
        int64_t i64;  /* any signed integer type, widened */
        double f64;   /* F32 or F64, widened */
        bool b;
        gguf_str str;
        gguf_arr arr;
    } v;
} gguf_kv;

typedef struct gguf_tensor {
    const char *name; /* NUL-terminated copy */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length (fastest-moving); unused dims are 1 */
    kl_dtype type;
    uint64_t offset; /* from the start of the data section */
    uint64_t nbytes;
    const void *data; /* into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file; /* opaque */

/* Maps and validates path. Returns 0 and sets *out, or a negative KL_E* code with
 * "<path>: <what is wrong>" in err and nothing left open. */
int gguf_open(gguf_file **out, const char *path, kl_err *err);
/* The same over bytes the caller keeps alive (fuzzing, tests); name is used in messages. */
int gguf_open_mem(gguf_file **out, const void *data, size_t len, const char *name, kl_err *err);
void gguf_close(gguf_file *f); /* NULL is fine */
/* Pages of f's mapping (all shards) that vanished while it was mapped: the file was truncated
 * on disk. Reading one raised SIGBUS, which would have ended the process; the guard read
 * zeros instead, so anything computed from f since is wrong. 0 while the file is intact. */
uint64_t gguf_faults(const gguf_file *f);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* start of the data section in the file */
uint64_t gguf_file_size(const gguf_file *f);

/* Where the mapped file came from, to tell whether it changed since something was derived
 * from it (the packed-weights cache): device, inode, size and modification time. */
typedef struct gguf_identity {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
} gguf_identity;
/* Fills *id and returns true for a file opened by gguf_open; false for caller bytes and for
 * a split model (several files). */
bool gguf_identity_of(const gguf_file *f, gguf_identity *id);
/* The caller will not read bytes [p, p + n) of the file for a while (weights copied into a
 * packed form): a mapped file gives back the whole pages inside the range, which fault in
 * again from the page cache or the disk if they are read later. Caller bytes are left as they
 * are. */
void gguf_release(const gguf_file *f, const void *p, size_t n);

int64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key); /* NULL when absent */

/* Typed getters. Each returns 0, KL_ENOTFOUND when the key is absent, or KL_EBADFILE (with
 * the reason in err) when its type does not fit or its value is out of range. Integer
 * getters accept any integer type whose value fits; float getters accept F32 and F64. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, kl_err *err);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, kl_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, kl_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, kl_err *err);
/* *out is a NUL-terminated copy owned by the file; strings with a NUL inside are refused. */
int gguf_get_str(const gguf_file *f, const char *key, const char **out, kl_err *err);
/* An array whose elements are of type want (GGUF_VTYPE_COUNT: any type). */
int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype want, const gguf_arr **out,
                 kl_err *err);

int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL when absent */

const char *gguf_vtype_name(gguf_vtype t);
/* Bytes of one element of a fixed-size type; 0 for STRING and ARRAY. */
size_t gguf_vtype_size(gguf_vtype t);

/* ---- split models (gguf/split.c) ----
 * llama.cpp's gguf-split layout: PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf,
 * each a GGUF file with split.no (0-based), split.count and split.tensors.count; the first
 * holds all the metadata, every shard some of the tensors. gguf_open() on the first shard
 * opens the others from the same directory and presents one model: the first shard's
 * metadata and every shard's tensors (each checked as any file's). Opening another shard
 * than the first is an error that names the first. */
#define GGUF_SPLIT_MAX 99999

/* Parses the "-NNNNN-of-NNNNN.gguf" ending of a file name (five digits each, 1 <= no <=
 * count). Returns true with the length of the part before it, the 1-based shard number and
 * the shard count; false for a name without that ending. */
bool gguf_split_name_parse(const char *name, size_t *prefix_len, int *no, int *count);
/* Number of files the model was opened from (1 unless split). */
int gguf_n_shards(const gguf_file *f);
/* Writes f (any model, split or not) as a split model of at most max_tensors tensors a shard:
 * "<out_prefix>-00001-of-0000N.gguf" and so on. Returns 0 with *n_shards set, or KL_E* with
 * err (shards already written are removed). */
int gguf_write_split(const gguf_file *f, const char *out_prefix, int max_tensors, int *n_shards,
                     kl_err *err);

/* ---- writer (gguf/write.c) ----
 * Writes GGUF v3. Usage: gguf_writer_open; gguf_writer_set_* for metadata (a key set twice
 * keeps its first position and takes the last value); gguf_writer_add_tensor for each tensor
 * (shape and type only); gguf_writer_begin_data writes the header, metadata and tensor table;
 * then the tensors' bytes are streamed in the order they were added with gguf_writer_write
 * (any chunking: padding between tensors is inserted by the writer); gguf_writer_finish checks
 * every byte arrived and closes. Alignment is general.alignment (a u32 set before
 * begin_data) or GGUF_DEFAULT_ALIGNMENT. Errors are sticky: after the first failure every
 * call returns the same code, and finish reports it in err and removes the partial file.
 * Nothing but the metadata and the tensor table is held in memory. */
typedef struct gguf_writer gguf_writer;

/* Starts writing path: the bytes go to "<path>.partial-<pid>", renamed to path by a successful
 * finish (so path may be a file the caller is reading). Returns 0 and sets *out, or a negative
 * KL_E* with "<path>: <what is wrong>" in err and nothing left behind. */
int gguf_writer_open(gguf_writer **out, const char *path, kl_err *err);
/* Metadata setters; each returns 0 or the (sticky) error code. */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s); /* NUL-terminated */
int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t len);
/* An array of n fixed-size elements of type et, packed little-endian in data. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype et, const void *data,
                        uint64_t n);
/* An array of n strings (NUL-terminated, or with lens[i] bytes when lens is not NULL). */
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const uint64_t *lens, uint64_t n);
/* An array of n elements of type et given as their raw serialized bytes (for arrays of
 * arrays: each element is "u32 type, u64 count, elements"). The bytes are not checked. */
int gguf_writer_set_arr_raw(gguf_writer *w, const char *key, gguf_vtype et, uint64_t n,
                            const void *raw, uint64_t nbytes);
/* Copies a key and value read by gguf_open (any type, nested arrays included). */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Declares a tensor (ne[0] the row length; dims past n_dims ignored). Returns 0 or a code
 * (bad shape, row length not a multiple of the type's block, duplicate name). */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, kl_dtype type, int n_dims,
                           const int64_t *ne);
/* Writes everything before the tensor data. */
int gguf_writer_begin_data(gguf_writer *w);
/* Appends n bytes of tensor data (after begin_data), continuing the current tensor. */
int gguf_writer_write(gguf_writer *w, const void *data, size_t n);
/* Flushes, closes and renames the file into place. Returns 0, or the first error with its
 * message in err (the partial file is removed, path untouched). Frees w in both cases. */
int gguf_writer_finish(gguf_writer *w, kl_err *err);
/* Abandons a writer: closes and removes the partial file, frees w. NULL is fine. */
void gguf_writer_abort(gguf_writer *w);
#endif
