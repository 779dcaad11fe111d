/* tests/unit/t_grammar.c: see tests/t_grammar.h. */
#include "t.h"
#include "t_grammar.h"

#include "gguf/gguf.h"
#include "tok/tok.h"

gram *t_schema(const char *text)
{
    gram *g = NULL;
    kl_err err = {0};
    int rc = gram_compile_schema(&g, text, strlen(text), NULL, &err);
    if (rc) printf("# %s\n", err.msg);
    T_EQ(rc, 0);
    return g;
}

gram *t_gbnf(const char *text)
{
    gram *g = NULL;
    kl_err err = {0};
    int rc = gram_compile_gbnf(&g, text, strlen(text), NULL, &err);
    if (rc) printf("# %s\n", err.msg);
    T_EQ(rc, 0);
    return g;
}

gram_vocab *t_gram_vocab(const char *rel, tok **tk_out)
{
    gguf_file *f;
    kl_err err = {0};
    T_EQ(gguf_open(&f, t_shared(rel), &err), 0);
    tok *tk = NULL;
    T_EQ(tok_load(&tk, f, &err), 0);
    gguf_close(f);
    int32_t n = tok_n_vocab(tk);
    char **piece = calloc((size_t)n, sizeof *piece);
    uint32_t *len = calloc((size_t)n, sizeof *len);
    bool *end = calloc((size_t)n, sizeof *end);
    T_ASSERT(piece && len && end);
    for (int32_t i = 0; i < n; i++) {
        char buf[1024];
        size_t l = tok_piece(tk, i, 0, buf, sizeof buf);
        end[i] = tok_is_eog(tk, i);
        if (l > sizeof buf || end[i]) continue;
        piece[i] = malloc(l + 1);
        T_ASSERT(piece[i]);
        memcpy(piece[i], buf, l);
        len[i] = (uint32_t)l;
    }
    gram_vocab *v = NULL;
    T_EQ(gram_vocab_create(&v, n, (const char *const *)piece, len, end, &err), 0);
    for (int32_t i = 0; i < n; i++)
        free(piece[i]);
    free(piece), free(len), free(end);
    *tk_out = tk;
    return v;
}
