/* The tekken (Mistral Nemo / Small 3) and chameleon pre-tokenizers, on the Llama 3 vocab with
 * tokenizer.ggml.pre changed (no public vocab of either is in ../shared): the expected ids are
 * Hugging Face's (transformers.js with the models' pre-tokenizer regexes over the same
 * tokenizer.json). llama.cpp (Feb 2025) gives the same ids for all of them but the one with
 * combining marks, where its tekken regex approximates the case classes (\p{Lu}, \p{Ll}) and
 * splits "'ve" from the word's marks: there Kiln follows the model's own tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "t.h"
#include "t_gguf.h"
#include "tok/tok.h"

static void expect(tok *t, const char *text, const char *want)
{
    int32_t ids[64];
    int64_t n = tok_encode(t, text, strlen(text), TOK_PARSE_SPECIAL, ids, 64);
    T_ASSERT(n > 0 && n <= 64);
    char got[1024] = "";
    for (int64_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), i ? " %d" : "%d", ids[i]);
    if (strcmp(got, want)) t_fail(__FILE__, __LINE__, "'%s': got %s, want %s", text, got, want);
}

static tok *load_as(const char *pre, gguf_file **f)
{
    const char *path = t_tmp("v.gguf");
    t_kv kv = {"tokenizer.ggml.pre", 's', pre, 0};
    t_gguf_copy(t_shared("vocab/ggml-vocab-llama3.gguf"), path, &kv, 1, NULL);
    kl_err err = {0};
    tok *t;
    T_EQ(gguf_open(f, path, &err), 0);
    T_EQ(tok_load(&t, *f, &err), 0);
    T_ASSERT(tok_wants_bos(t)); /* both add BOS, as llama.cpp sets them */
    return t;
}

TEST(tok_pretok_tekken)
{
    gguf_file *f;
    tok *t = load_as("tekken", &f);
    expect(t, "12345 apples", "16 17 18 19 20 41776"); /* digits one by one */
    expect(t, "path/to/file\n\nx", "2398 33529 24849 271 87");
    expect(t, "HelloWorld ABCdef", "9906 10343 19921 755");
    expect(t, "\xe0\xa4\xa6\xe0\xa5\x81\xe0\xa4\xa8\xe0\xa4\xbf\xe0\xa4\xaf\xe0\xa4\xbe've",
           "100296 101391 100322 24810 3077"); /* "दुनिया've": llama.cpp ends 24810 6 588 */
    tok_free(t);
    gguf_close(f);
}

TEST(tok_pretok_chameleon)
{
    gguf_file *f;
    tok *t = load_as("chameleon", &f);
    expect(t, "a  b    c\td\ne", "64 256 65 257 66 197 67 198 68"); /* space runs isolated */
    expect(t, "x1y,z.w", "87 16 88 11 89 13 86");                   /* punctuation alone */
    expect(t, "don't   stop\t!", "15357 6 83 256 3009 197 0");
    expect(t, "path/to/file\n\nx", "2398 14 998 14 1213 198 198 87");
    tok_free(t);
    gguf_close(f);
}
