/* Corrupted GGUF files, built byte by byte: each must be refused with its exact message. */
#include "t.h"

#include "gguf/gguf.h"

typedef struct bb {
    uint8_t p[8192];
    size_t n;
} bb;

static void put(bb *b, const void *src, size_t n)
{
    T_ASSERT(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(bb *b, uint32_t v)
{
    put(b, &v, 4);
}
static void u64(bb *b, uint64_t v)
{
    put(b, &v, 8);
}
static void str(bb *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    u32(b, GGUF_MAGIC);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bb *b, const char *key, uint32_t v)
{
    str(b, key);
    u32(b, GGUF_U32);
    u32(b, v);
}
/* A 1-D or 2-D tensor info. */
static void tinfo(bb *b, const char *name, uint32_t nd, uint64_t ne0, uint64_t ne1, uint32_t type,
                  uint64_t off)
{
    str(b, name);
    u32(b, nd);
    u64(b, ne0);
    if (nd > 1) u64(b, ne1);
    u32(b, type);
    u64(b, off);
}
static void pad_data(bb *b, size_t align, size_t data_bytes)
{
    while (b->n % align)
        b->p[b->n++] = 0;
    T_ASSERT(b->n + data_bytes <= sizeof b->p);
    memset(b->p + b->n, 0, data_bytes);
    b->n += data_bytes;
}

/* Opens b and checks it fails with exactly msg. */
static void refused(const bb *b, const char *msg)
{
    gguf_file *f = NULL;
    kl_err err = {0};
    int rc = gguf_open_mem(&f, b->p, b->n, "bad.gguf", &err);
    if (rc == 0) gguf_close(f);
    T_EQ(rc, KL_EBADFILE);
    T_ASSERT(f == NULL);
    T_STREQ(err.msg, msg);
}

TEST(gguf_corrupt_valid_base_opens)
{
    bb b;
    hdr(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 32);
    tinfo(&b, "a", 1, 8, 0, KL_F32, 0);
    tinfo(&b, "b", 2, 32, 2, KL_Q8_0, 32);
    pad_data(&b, 32, 32 + 68);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open_mem(&f, b.p, b.n, "ok.gguf", &err), 0);
    T_EQ(gguf_n_tensors(f), 2);
    gguf_close(f);
    /* No metadata and no tensors is valid too. */
    hdr(&b, 3, 0, 0);
    T_EQ(gguf_open_mem(&f, b.p, b.n, "empty.gguf", &err), 0);
    T_EQ(gguf_n_kv(f), 0);
    gguf_close(f);
}

TEST(gguf_corrupt_empty_and_truncated_header)
{
    bb b = {.n = 0};
    refused(&b, "bad.gguf: file too small to be GGUF (at byte 0)");
    hdr(&b, 3, 0, 0);
    b.n = 12;
    refused(&b, "bad.gguf: header truncated (at byte 8)");
}

TEST(gguf_corrupt_bad_magic)
{
    bb b;
    hdr(&b, 3, 0, 0);
    memcpy(b.p, "GGML", 4);
    refused(&b, "bad.gguf: not a GGUF file (bad magic)");
}

TEST(gguf_corrupt_versions)
{
    bb b;
    hdr(&b, 1, 0, 0);
    refused(&b, "bad.gguf: GGUF version 1 is not supported (legacy format with 32-bit counts); "
                "convert it to GGUF v3 with a current llama.cpp");
    hdr(&b, 4, 0, 0);
    refused(&b, "bad.gguf: unsupported GGUF version 4 (2 and 3 are supported)");
    hdr(&b, 0x03000000u, 0, 0);
    refused(&b, "bad.gguf: big-endian GGUF is not supported");
}

TEST(gguf_corrupt_huge_counts)
{
    bb b;
    hdr(&b, 3, UINT64_C(1) << 40, 0);
    pad_data(&b, 1, 64);
    refused(&b, "bad.gguf: tensor count larger than the file (at byte 24)");
    hdr(&b, 3, 0, UINT64_C(1) << 40);
    pad_data(&b, 1, 64);
    refused(&b, "bad.gguf: metadata count larger than the file (at byte 24)");
    hdr(&b, 3, UINT64_MAX, 0);
    refused(&b, "bad.gguf: count in header out of range (at byte 24)");
}

TEST(gguf_corrupt_string_past_eof)
{
    bb b;
    hdr(&b, 3, 0, 1);
    u64(&b, 1000); /* key length */
    pad_data(&b, 1, 40);
    refused(&b, "bad.gguf: metadata key: length 1000 runs past end of file (at byte 32)");
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_STRING);
    u64(&b, UINT64_MAX);
    refused(&b, "bad.gguf: string value: length 18446744073709551615 runs past end of file "
                "(at byte 45)");
}

TEST(gguf_corrupt_bad_value_types)
{
    bb b;
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, 13);
    u32(&b, 0);
    refused(&b, "bad.gguf: metadata 'k' has unknown value type 13 (at byte 37)");
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_ARRAY);
    u32(&b, 77);
    u64(&b, 0);
    refused(&b, "bad.gguf: unknown array element type (at byte 41)");
    hdr(&b, 3, 0, 1);
    str(&b, "flag");
    u32(&b, GGUF_BOOL);
    put(&b, "\x02", 1);
    refused(&b, "bad.gguf: bool value is not 0 or 1 (at byte 41)");
}

TEST(gguf_corrupt_array_past_eof_and_truncated_value)
{
    bb b;
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_ARRAY);
    u32(&b, GGUF_U32);
    u64(&b, UINT64_C(1) << 62);
    put(&b, "abcdefgh", 8);
    refused(&b, "bad.gguf: array length runs past end of file (at byte 49)");
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_U64);
    put(&b, "abc", 3);
    refused(&b, "bad.gguf: value truncated (at byte 37)");
}

TEST(gguf_corrupt_nested_array_too_deep)
{
    bb b;
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_ARRAY);
    for (int d = 0; d < 6; d++) {
        u32(&b, GGUF_ARRAY);
        u64(&b, 1);
    }
    u32(&b, GGUF_U8);
    u64(&b, 0);
    pad_data(&b, 1, 64);
    refused(&b, "bad.gguf: arrays nested too deeply (at byte 97)");
}

TEST(gguf_corrupt_bad_alignment)
{
    bb b;
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    refused(&b, "bad.gguf: general.alignment 48 is not a power of two up to 1048576");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    refused(&b, "bad.gguf: general.alignment 0 is not a power of two up to 1048576");
    hdr(&b, 3, 0, 1);
    str(&b, "general.alignment");
    u32(&b, GGUF_STRING);
    str(&b, "32");
    refused(&b, "bad.gguf: general.alignment has type string, expected u32");
}

TEST(gguf_corrupt_tensor_outside_data)
{
    bb b;
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, 16, 16, KL_F32, 0);
    pad_data(&b, 32, 1000); /* 1024 needed */
    refused(&b, "bad.gguf: tensor 'w' (offset 0, 1024 bytes) ends past end of file");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 8, 0, KL_F32, UINT64_MAX - 31);
    pad_data(&b, 32, 64);
    refused(&b, "bad.gguf: tensor 'w' (offset 18446744073709551584, 32 bytes) ends past end of "
                "file");
}

TEST(gguf_corrupt_overlapping_tensors)
{
    bb b;
    hdr(&b, 3, 2, 0);
    tinfo(&b, "a", 1, 16, 0, KL_F32, 0);
    tinfo(&b, "b", 1, 8, 0, KL_F32, 32);
    pad_data(&b, 32, 128);
    refused(&b, "bad.gguf: tensors 'a' and 'b' overlap");
}

TEST(gguf_corrupt_dims)
{
    bb b;
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, UINT64_C(1) << 32, UINT64_C(1) << 32, KL_F32, 0);
    pad_data(&b, 32, 32);
    refused(&b, "bad.gguf: tensor 'w' has an invalid shape (dimension 1 is 4294967296) "
                "(at byte 53)");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, 8, 0, KL_F32, 0);
    pad_data(&b, 32, 32);
    refused(&b, "bad.gguf: tensor 'w' has an invalid shape (dimension 1 is 0) (at byte 53)");
    hdr(&b, 3, 1, 0);
    str(&b, "w");
    u32(&b, 5);
    pad_data(&b, 1, 64);
    refused(&b, "bad.gguf: tensor 'w' has 5 dimensions (1 to 4 allowed) (at byte 37)");
    /* 2^62 F32 elements: the element count fits, the byte size does not. */
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, UINT64_C(1) << 31, UINT64_C(1) << 31, KL_F32, 0);
    pad_data(&b, 32, 32);
    refused(&b, "bad.gguf: tensor 'w' size overflows (at byte 57)");
}

/* A type id Kiln does not know is named as such (KL_EUNSUP), not called corruption: GGUF
 * gains types (llama.cpp's IQ and TQ families, 16 to 39 and on). */
static void unsupported(const bb *b, const char *msg)
{
    gguf_file *f = NULL;
    kl_err err = {0};
    T_EQ(gguf_open_mem(&f, b->p, b->n, "new.gguf", &err), KL_EUNSUP);
    T_ASSERT(f == NULL);
    T_STREQ(err.msg, msg);
}

TEST(gguf_corrupt_tensor_types)
{
    bb b;
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 32, 0, 4, 0); /* 4 was Q4_2, removed from GGUF */
    pad_data(&b, 32, 128);
    unsupported(&b, "new.gguf: tensor 'w' has type 4, which this version of Kiln does not support");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 32, 0, 39, 0);
    pad_data(&b, 32, 128);
    unsupported(&b,
                "new.gguf: tensor 'w' has type 39, which this version of Kiln does not support");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 33, 0, KL_Q8_0, 0);
    pad_data(&b, 32, 128);
    refused(&b, "bad.gguf: tensor 'w': row length 33 is not a multiple of q8_0's block of 32 "
                "(at byte 49)");
}

TEST(gguf_corrupt_duplicates)
{
    bb b;
    hdr(&b, 3, 0, 2);
    kv_u32(&b, "general.x", 1);
    kv_u32(&b, "general.x", 2);
    refused(&b, "bad.gguf: duplicate metadata key 'general.x'");
    hdr(&b, 3, 2, 0);
    tinfo(&b, "w", 1, 8, 0, KL_F32, 0);
    tinfo(&b, "w", 1, 8, 0, KL_F32, 32);
    pad_data(&b, 32, 64);
    refused(&b, "bad.gguf: duplicate tensor name 'w'");
}

TEST(gguf_corrupt_misaligned_offset)
{
    bb b;
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 8, 0, KL_F32, 4);
    pad_data(&b, 32, 64);
    refused(&b, "bad.gguf: tensor 'w' offset 4 is not a multiple of the alignment 32 (at byte 57)");
}

TEST(gguf_corrupt_names_and_keys)
{
    bb b;
    hdr(&b, 3, 0, 1);
    str(&b, "");
    u32(&b, GGUF_U32);
    u32(&b, 0);
    refused(&b, "bad.gguf: empty metadata key (at byte 32)");
    char longname[300];
    memset(longname, 'n', 299);
    longname[299] = 0;
    hdr(&b, 3, 1, 0);
    tinfo(&b, longname, 1, 8, 0, KL_F32, 0);
    pad_data(&b, 32, 64);
    refused(&b, "bad.gguf: tensor name too long (at byte 331)");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "a\0b", 1, 8, 0, KL_F32, 0); /* str() stops at the NUL: name "a" */
    b.p[24] = 3;                           /* length 3: "a\0b" with the NUL inside */
    memmove(b.p + 35, b.p + 33, b.n - 33);
    b.p[33] = 0;
    b.p[34] = 'b';
    b.n += 2;
    pad_data(&b, 32, 64);
    refused(&b, "bad.gguf: string contains a NUL byte");
}

TEST(gguf_corrupt_data_section_past_eof)
{
    bb b;
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, 8, 0, KL_F32, 0);
    /* The infos end at byte 57; the data would start at 64 but the file stops first. */
    refused(&b, "bad.gguf: data section starts past end of file (at byte 57)");
}

TEST(gguf_corrupt_alignment_below_what_kernels_need)
{
    /* a power of two, but tensor data could then sit at any address: the spec asks for a
     * multiple of 8, and a kernel reading floats must not read them misaligned */
    for (uint32_t a = 1; a <= 4; a *= 2) {
        bb b;
        hdr(&b, 3, 0, 1);
        kv_u32(&b, "general.alignment", a);
        char msg[200];
        snprintf(msg, sizeof msg,
                 "bad.gguf: general.alignment %u is below 8 (GGUF asks for a multiple of 8: "
                 "tensor data must be aligned for the kernels)",
                 a);
        refused(&b, msg);
    }
    bb b;
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 8);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open_mem(&f, b.p, b.n, "ok.gguf", &err), 0);
    T_EQ(gguf_alignment(f), 8);
    gguf_close(f);
}

TEST(gguf_corrupt_key_that_is_not_text)
{
    static const char *const keys[] = {"general.na\xffme", "general.\xc0\xaf", "a\nb", "a\x1b[2Jb"};
    for (size_t i = 0; i < 4; i++) {
        bb b;
        hdr(&b, 3, 0, 1);
        kv_u32(&b, keys[i], 1);
        refused(&b, "bad.gguf: metadata key is not UTF-8 text (bad bytes or a control "
                    "character) (at byte 24)");
    }
    bb b; /* UTF-8 beyond ASCII is text */
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.caf\xc3\xa9", 1);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open_mem(&f, b.p, b.n, "ok.gguf", &err), 0);
    gguf_close(f);
}

TEST(gguf_corrupt_well_known_key_of_the_wrong_type)
{
    bb b;
    hdr(&b, 3, 0, 1);
    str(&b, "tokenizer.ggml.bos_token_id");
    u32(&b, GGUF_STRING);
    str(&b, "1");
    refused(&b, "bad.gguf: tokenizer.ggml.bos_token_id has type string, expected an integer");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "tokenizer.chat_template", 7);
    refused(&b, "bad.gguf: tokenizer.chat_template has type u32, expected string");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "tokenizer.ggml.add_bos_token", 1);
    refused(&b, "bad.gguf: tokenizer.ggml.add_bos_token has type u32, expected bool");
    hdr(&b, 3, 0, 1);
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, GGUF_ARRAY);
    u32(&b, GGUF_U32);
    u64(&b, 1);
    u32(&b, 5);
    refused(&b, "bad.gguf: tokenizer.ggml.tokens has type array of u32, expected an array of "
                "strings");
    hdr(&b, 3, 0, 1); /* any integer type is an integer */
    str(&b, "tokenizer.ggml.eos_token_id");
    u32(&b, GGUF_I32);
    u32(&b, 2);
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open_mem(&f, b.p, b.n, "ok.gguf", &err), 0);
    gguf_close(f);
}
