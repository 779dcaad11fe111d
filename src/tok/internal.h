/* tok/internal.h: the tokenizer's private state, shared by the files of src/tok/ only.
 *
 * Everything here is built once by tok_load and never written again, so any number of threads
 * may encode and decode with one tok at the same time. Per-call scratch lives in tok_scratch,
 * which each tok_encode call owns. */
#ifndef KILN_TOK_INTERNAL_H
#define KILN_TOK_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tok/tok.h"

/* GGUF tokenizer.ggml.token_type values. */
enum {
    TOK_T_UNDEFINED = 0,
    TOK_T_NORMAL = 1,
    TOK_T_UNKNOWN = 2,
    TOK_T_CONTROL = 3,
    TOK_T_USER = 4, /* user-defined: split out of text even without TOK_PARSE_SPECIAL */
    TOK_T_UNUSED = 5,
    TOK_T_BYTE = 6,
};

/* Per-token flags beside the type. */
enum {
    TOK_A_RSTRIP = 1u << 0, /* spaces after this special token in the text are dropped */
    TOK_A_LSTRIP = 1u << 1, /* spaces before it are dropped */
    TOK_A_EOG = 1u << 2,    /* ends a generation */
};

typedef enum tok_kind { TOK_KIND_SPM, TOK_KIND_BPE, TOK_KIND_WPM } tok_kind;

/* Open-addressing map from a token's text to its id. slots[i] is an id or -1; the text is read
 * back from the tok's arena. Capacity is a power of two, at least twice the entries. */
typedef struct tok_strmap {
    int32_t *slots; /* (cap) */
    uint32_t *hash; /* (cap) low 32 bits of the key's hash, to skip most string compares */
    uint32_t cap;
} tok_strmap;

/* Open-addressing map from a merge (left id, right id) to (rank, merged id). */
typedef struct tok_pair {
    uint64_t key; /* (uint64)left << 32 | right; UINT64_MAX marks an empty slot */
    int32_t rank;
    int32_t merged;
} tok_pair;
typedef struct tok_pairmap {
    tok_pair *slots; /* (cap) */
    uint32_t cap;
} tok_pairmap;

/* The pre-tokenizer: a list of regexes applied in sequence, each splitting every piece the
 * previous one left into its matches and the gaps between them (Hugging Face "Isolated"). */
#define TOK_MAX_REGEX 6
typedef struct tok_pretok {
    const char *name;
    int n_re;
    void *re[TOK_MAX_REGEX]; /* pcre2_code_8 *, compiled once with JIT */
    bool nfc;                /* apply Unicode NFC to text fragments first (Qwen 2) */
    bool ignore_merges;      /* a whole word that is a token is emitted as is (Llama 3) */
} tok_pretok;

struct tok {
    tok_kind kind;
    int32_t n_vocab;
    char *text;          /* arena: every token's text, NUL-terminated */
    uint32_t *text_off;  /* (n_vocab + 1) offsets into text; length = off[i+1] - off[i] - 1 */
    float *score;        /* (n_vocab) SentencePiece scores (0 when absent) */
    uint8_t *type;       /* (n_vocab) TOK_T_* */
    uint8_t *attr;       /* (n_vocab) TOK_A_* */
    char *piece;         /* arena: every token's detokenized bytes (not NUL-terminated) */
    uint32_t *piece_off; /* (n_vocab + 1) */
    tok_strmap map;
    tok_pairmap merges;    /* BPE only */
    int32_t byte_tok[256]; /* SPM: <0xNN> (or the byte itself, or unk); BPE: the mapped char */
    tok_pretok pre;        /* BPE only */
    int32_t *special;      /* ids split out of text first, longest text first */
    int32_t n_special;
    uint8_t special_first[256]; /* 1 when some special token's text starts with this byte */
    bool add_space_prefix;      /* SPM: "▁" before the first text fragment */
    bool spm_split;             /* SPM: no token has "▁" right after another character, so
                                   a fragment can be merged word by word (same result) */
    bool add_bos, add_eos;
    int32_t bos, eos, unk, eot, eom; /* -1 when absent */
    uint32_t max_token_len;          /* bytes of the longest token text */
};

/* The (ptr, len) text of a token. */
static inline const char *tok_text_of(const tok *t, int32_t id, size_t *len)
{
    *len = t->text_off[id + 1] - t->text_off[id] - 1;
    return t->text + t->text_off[id];
}

/* ---- maps (tok/map.c) ---- */
int32_t tok_map_find(const tok *t, const char *s, size_t len); /* id or -1 */
/* Builds t->map over all tokens (a later duplicate text wins, like llama.cpp). */
int tok_map_build(tok *t);
void tok_pairmap_free(tok_pairmap *m);
/* Sized for n entries; 0 or KL_ENOMEM. */
int tok_pairmap_init(tok_pairmap *m, uint64_t n);
/* Inserts unless the pair is present (the first, lowest rank, wins). */
void tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
const tok_pair *tok_pairmap_get(const tok_pairmap *m, int32_t left, int32_t right);

/* ---- output and scratch of one encode call (tok/encode.c) ---- */
typedef struct tok_sym {
    int32_t prev, next; /* neighbours in the live chain, -1 at the ends */
    uint32_t off, len;  /* bytes of the input this symbol covers; len 0 once merged away */
    int32_t id;         /* BPE: the symbol's token id */
} tok_sym;

typedef struct tok_heap_item {
    uint64_t key;  /* smaller pops first; ties are impossible (the left index is in the key) */
    int32_t right; /* symbol index of the right side */
    int32_t aux;   /* SPM: merged length; BPE: right id at push time */
} tok_heap_item;

typedef struct tok_out {
    int32_t *ids; /* (cap) caller's buffer */
    int64_t cap;
    int64_t n; /* ids produced so far (may exceed cap) */
    /* scratch, grown on demand and freed at the end of the call */
    tok_sym *sym;
    size_t sym_cap;
    tok_heap_item *heap;
    size_t heap_n, heap_cap;
    char *buf;
    size_t buf_cap;
    bool oom;     /* an allocation failed: encode falls back to byte tokens */
    void *match;  /* pcre2_match_data_8 * */
    void *mctx;   /* pcre2_match_context_8 * */
    void *jstack; /* pcre2_jit_stack_8 * */
} tok_out;

static inline void tok_out_push(tok_out *o, int32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}
/* Grows o's scratch to hold n symbols / heap items / buffer bytes; false when out of memory. */
bool tok_out_syms(tok_out *o, size_t n);
bool tok_out_heap(tok_out *o, size_t n);
bool tok_out_buf(tok_out *o, size_t n);
void tok_heap_push(tok_out *o, tok_heap_item it);
tok_heap_item tok_heap_pop(tok_out *o);

/* ---- the two models ---- */
/* SentencePiece: tokenizes one text fragment s[0..len) (already escaped: spaces are "▁"). */
void tok_spm_encode(const tok *t, const char *s, size_t len, tok_out *o);
/* WordPiece: normalizes, splits and tokenizes one raw fragment. */
void tok_wpm_encode(const tok *t, const char *s, size_t len, tok_out *o);
/* Byte-level BPE: tokenizes one pre-tokenized word (raw bytes, not yet byte-mapped). */
void tok_bpe_word(const tok *t, const char *s, size_t len, tok_out *o);

/* ---- pieces (tok/decode.c) ---- */
/* Builds t->piece / t->piece_off from the texts and types; 0 or KL_ENOMEM. */
int tok_pieces_build(tok *t);

/* ---- pre-tokenizer (tok/pretok.c) ---- */
/* Finds tokenizer.ggml.pre's rules and compiles them into t->pre; 0 or a negative KL_E* code
 * with the reason in err (path is used in the message). */
int tok_pretok_init(tok *t, const char *pre, const char *path, kl_err *err);
void tok_pretok_free(tok_pretok *p);
/* Splits s[0..len) and calls tok_bpe_word on every word, in order. */
void tok_pretok_split(const tok *t, const char *s, size_t len, tok_out *o);
/* Per-call regex state in o (match data, JIT stack); false when out of memory. */
bool tok_pretok_begin(const tok *t, tok_out *o);
void tok_pretok_end(tok_out *o);

/* ---- bytes_to_unicode of byte-level BPE (tok/bytemap.c) ---- */
/* Writes the UTF-8 of byte b's stand-in character (1 or 2 bytes) to dst; returns its length. */
size_t tok_byte_to_utf8(uint8_t b, char dst[2]);
/* The byte a code point stands for, or -1 when it is not one of the 256 stand-ins. */
int tok_cp_to_byte(uint32_t cp);
/* Decodes one UTF-8 sequence at s[0..len); returns its length (1 for an invalid byte, with
 * *cp = 0xFFFD). len > 0. */
size_t tok_utf8_decode(const char *s, size_t len, uint32_t *cp);
/* Length of the UTF-8 character starting with byte c, by its high bits (as llama.cpp). */
static inline size_t tok_utf8_len(uint8_t c)
{
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}
#endif
