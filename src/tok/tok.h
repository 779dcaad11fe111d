/* tok/tok.h: the tokenizer of a GGUF model, built from its tokenizer.ggml.* metadata:
 * SentencePiece-style ("llama") and byte-level BPE ("gpt2", with the pre-tokenizer that
 * tokenizer.ggml.pre names). Immutable after tok_load, so any thread may use it.
 *
 * Pieces: the bytes a token stands for when detokenizing (SentencePiece "▁" becomes a space,
 * <0xNN> byte tokens become the byte, byte-level BPE maps back through bytes_to_unicode).
 * Control tokens (BOS, EOS, <|eot_id|> ...) have an empty piece unless TOK_RENDER_SPECIAL. */
#ifndef KILN_TOK_TOK_H
#define KILN_TOK_TOK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "gguf/gguf.h"

typedef struct tok tok; /* opaque */

enum {
    TOK_ADD_BOS = 1u << 0,        /* encode: prepend BOS (if the vocab has one), and append EOS
                                     when the vocab sets tokenizer.ggml.add_eos_token */
    TOK_PARSE_SPECIAL = 1u << 1,  /* encode: "<|eot_id|>" in the text becomes that token */
    TOK_RENDER_SPECIAL = 1u << 2, /* piece/decode: control tokens print their text */
};

/* Builds the tokenizer of f (f may be closed afterwards: everything is copied). Returns 0
 * and sets *out, or a negative KL_E* code with "<path>: <what is wrong>" in err (unknown
 * tokenizer.ggml.model or .pre, missing or malformed arrays). */
int tok_load(tok **out, const gguf_file *f, kl_err *err);
void tok_free(tok *t); /* NULL is fine */

int32_t tok_n_vocab(const tok *t);
int32_t tok_bos(const tok *t);    /* -1 when the vocab has none */
int32_t tok_eos(const tok *t);    /* -1 when the vocab has none */
bool tok_wants_bos(const tok *t); /* tokenizer.ggml.add_bos_token (default per model type) */
/* True for tokens that end a generation: EOS, EOT, EOM and the like. */
bool tok_is_eog(const tok *t, int32_t id);
bool tok_is_control(const tok *t, int32_t id);
/* True for user-defined tokens (GGUF token type 4: Qwen's <tool_call> ...), which tok_encode
 * always cuts out of a text. */
bool tok_is_user_defined(const tok *t, int32_t id);
/* The special tokens (control, user-defined and unknown ones whose text is 2 bytes or more:
 * what tok_encode may cut out of a text), longest text first; *n of them. Owned by t. */
const int32_t *tok_specials(const tok *t, int32_t *n);
/* The vocabulary string of id as stored in the file (NUL-terminated), NULL if out of range. */
const char *tok_text(const tok *t, int32_t id);
/* The id of the token whose vocabulary string is exactly text, or -1. */
int32_t tok_find(const tok *t, const char *text);

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is tokenized, never refused). Writes at
 * most cap ids to out and returns how many there are in all (call again with a bigger out
 * when the result exceeds cap; out may be NULL when cap is 0). flags: TOK_ADD_BOS,
 * TOK_PARSE_SPECIAL. User-defined tokens (token type 4) are always split out of the text,
 * as llama.cpp and Hugging Face do. Allocates its scratch per call; safe from any thread. */
int64_t tok_encode(const tok *t, const char *text, size_t len, unsigned flags, int32_t *out,
                   int64_t cap);

/* Writes the piece of id (at most cap bytes) and returns its full length (0 for an unknown
 * id). flags: TOK_RENDER_SPECIAL. */
size_t tok_piece(const tok *t, int32_t id, unsigned flags, char *buf, size_t cap);

/* Detokenizes ids: the concatenated pieces, minus the one leading space SentencePiece adds
 * (dropped from the first token that is not a control token, so decode(encode(s)) == s; for
 * Qwen 2 vocabs, which normalize to NFC, it gives NFC(s)). Like snprintf: writes at most
 * cap - 1 bytes and a NUL when cap > 0 (out may be NULL when cap is 0), and returns the full
 * length. Streaming a generation token by token uses tok_piece instead: there the first
 * generated piece's leading space is real text. */
size_t tok_decode(const tok *t, const int32_t *ids, int64_t n, unsigned flags, char *out,
                  size_t cap);

/* Length of the longest prefix of s[0..len) that does not end inside a UTF-8 sequence that
 * could still be completed: streaming emits that prefix and holds back the rest. Invalid
 * bytes count as complete, so nothing is held back forever. */
size_t tok_utf8_complete(const char *s, size_t len);
#endif
