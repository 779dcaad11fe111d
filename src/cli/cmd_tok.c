/* cli/cmd_tok.c: `kiln tokenize` and `kiln detokenize`, the tokenizer of a GGUF file on
 * standard input and output.
 *
 *   kiln tokenize -m FILE [--no-bos] [--special] [--pieces] [--bench]
 *       reads all of stdin as text; prints the ids on one line, separated by single spaces
 *       (--pieces: each token's piece as a JSON string instead). BOS is added when the vocab
 *       asks for it unless --no-bos; --special parses special tokens in the text.
 *       --bench tokenizes the input (repeated up to at least 1 MiB) several times and prints
 *       the throughput in MB/s.
 *   kiln detokenize -m FILE [--special]
 *       reads whitespace-separated ids from stdin and prints the text (--special: control
 *       tokens print their text). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

/* Reads all of f; returns a malloc'd buffer (NUL-terminated) or NULL when out of memory. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b) return NULL;
    for (;;) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (r == 0) break;
            continue;
        }
        char *nb = realloc(b, cap * 2 + 1);
        if (!nb) {
            free(b);
            return NULL;
        }
        b = nb, cap *= 2;
    }
    b[n] = 0;
    *len = n;
    return b;
}

/* Opens path and builds its tokenizer; returns 0 or prints the error and returns 1. */
static int open_tok(const char *path, tok **t)
{
    kl_err err = {0};
    gguf_file *f;
    if (gguf_open(&f, path, &err)) return cli_fail(&err);
    int rc = tok_load(t, f, &err);
    gguf_close(f);
    return rc ? cli_fail(&err) : 0;
}

static void print_json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c); /* bytes >= 0x80 as they are: a piece may be part of a character */
    }
    putchar('"');
}

/* Tokenizes text (repeated to >= 1 MiB) and prints MB/s over the best of 5 runs. */
static int bench(const tok *t, const char *text, size_t len, unsigned flags)
{
    if (!len) {
        fprintf(stderr, "kiln: tokenize --bench: no input text on stdin\n");
        return 1;
    }
    size_t reps = (((size_t)1 << 20) + len - 1) / len, n = reps * len;
    char *big = malloc(n);
    int32_t *ids = NULL;
    if (!big) goto oom;
    for (size_t i = 0; i < reps; i++)
        memcpy(big + i * len, text, len);
    int64_t cnt = tok_encode(t, big, n, flags, NULL, 0);
    ids = malloc(sizeof *ids * (size_t)(cnt ? cnt : 1));
    if (!ids) goto oom;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = kl_now_s();
        tok_encode(t, big, n, flags, ids, cnt);
        double dt = kl_now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("%zu bytes -> %lld tokens in %.1f ms: %.2f MB/s\n", n, (long long)cnt, best * 1e3,
           (double)n / best / 1e6);
    free(big);
    free(ids);
    return 0;
oom:
    free(big);
    fprintf(stderr, "kiln: tokenize --bench: out of memory\n");
    return 1;
}

enum { O_NO_BOS = CLI_LONG, O_SPECIAL, O_PIECES, O_BENCH };

static const cli_opt tokenize_opts[] = {
    {'m', "model", "FILE", "the GGUF file whose tokenizer to use (required)"},
    {O_NO_BOS, "no-bos", NULL, "never add BOS (default: added when the vocab asks for it)"},
    {O_SPECIAL, "special", NULL,
     "special-token text such as <|eot_id|> becomes that token (default: plain text)"},
    {O_PIECES, "pieces", NULL, "print each token's bytes as a JSON string instead of its id"},
    {O_BENCH, "bench", NULL,
     "tokenize the input (repeated to at least 1 MiB) 5 times and print the best MB/s"},
    {0},
};

static const cli_cmd tokenize_cmd = {
    "tokenize", "-m FILE [options] < text",
    "Reads all of standard input as text and prints its token ids on one line.\n", tokenize_opts,
    NULL};

static const cli_opt detokenize_opts[] = {
    {'m', "model", "FILE", "the GGUF file whose tokenizer to use (required)"},
    {O_SPECIAL, "special", NULL,
     "print control tokens (BOS, <|eot_id|> ...) as their text (default: nothing)"},
    {0},
};

static const cli_cmd detokenize_cmd = {
    "detokenize", "-m FILE [--special] < ids",
    "Reads whitespace-separated token ids from standard input and prints their text.\n",
    detokenize_opts, NULL};

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool no_bos = false, special = false, pieces = false, do_bench = false;
    cli_args a;
    cli_args_init(&a, &tokenize_cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&tokenize_cmd,
                                   "unexpected argument '%s' (the text is read from stdin)", val);
        case 'm':
            path = val;
            break;
        case O_NO_BOS:
            no_bos = true;
            break;
        case O_SPECIAL:
            special = true;
            break;
        case O_PIECES:
            pieces = true;
            break;
        case O_BENCH:
            do_bench = true;
            break;
        }
    }
    if (!path) return cli_usage_error(&tokenize_cmd, "-m FILE is required");
    tok *t;
    if (open_tok(path, &t)) return 1;
    size_t len;
    char *text = read_all(stdin, &len);
    if (!text) {
        tok_free(t);
        fprintf(stderr, "kiln: stdin: out of memory\n");
        return 1;
    }
    unsigned flags =
        (special ? TOK_PARSE_SPECIAL : 0) | (!no_bos && tok_wants_bos(t) ? TOK_ADD_BOS : 0);
    int rc = 0;
    if (do_bench) {
        rc = bench(t, text, len, flags);
    } else {
        int64_t n = tok_encode(t, text, len, flags, NULL, 0);
        int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        if (!ids) {
            fprintf(stderr, "kiln: stdin: out of memory\n");
            rc = 1;
        } else {
            tok_encode(t, text, len, flags, ids, n);
            for (int64_t i = 0; i < n; i++) {
                if (i) putchar(' ');
                if (pieces) {
                    char buf[512];
                    size_t l = tok_piece(t, ids[i], TOK_RENDER_SPECIAL, buf, sizeof buf);
                    print_json_str(buf, l < sizeof buf ? l : sizeof buf);
                } else {
                    printf("%d", ids[i]);
                }
            }
            putchar('\n');
            free(ids);
        }
    }
    free(text);
    tok_free(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool special = false;
    cli_args a;
    cli_args_init(&a, &detokenize_cmd, argc, argv);
    const char *val;
    for (int k; (k = cli_args_next(&a, &val)) != CLI_END;) {
        switch (k) {
        case CLI_EXIT:
            return a.status;
        case CLI_ARG:
            return cli_usage_error(&detokenize_cmd,
                                   "unexpected argument '%s' (the ids are read from stdin)", val);
        case 'm':
            path = val;
            break;
        case O_SPECIAL:
            special = true;
            break;
        }
    }
    if (!path) return cli_usage_error(&detokenize_cmd, "-m FILE is required");
    tok *t;
    if (open_tok(path, &t)) return 1;
    size_t len;
    char *text = read_all(stdin, &len);
    int32_t *ids = text ? malloc(sizeof *ids * (len / 2 + 1)) : NULL; /* ids need >= 2 bytes */
    int rc = 0;
    if (!ids) {
        fprintf(stderr, "kiln: stdin: out of memory\n");
        rc = 1;
        goto out;
    }
    int64_t n = 0;
    for (char *p = text;;) {
        p += strspn(p, " \t\r\n");
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && !strchr(" \t\r\n", *end)) || v < 0 ||
            v >= tok_n_vocab(t)) {
            int wl = (int)strcspn(p, " \t\r\n");
            fprintf(stderr, "kiln: stdin: '%.*s' is not a token id of %s (0..%d)\n",
                    wl > 32 ? 32 : wl, p, path, tok_n_vocab(t) - 1);
            rc = 1;
            goto out;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    unsigned flags = special ? TOK_RENDER_SPECIAL : 0;
    size_t need = tok_decode(t, ids, n, flags, NULL, 0);
    char *out = malloc(need + 1);
    if (!out) {
        fprintf(stderr, "kiln: stdin: out of memory\n");
        rc = 1;
        goto out;
    }
    tok_decode(t, ids, n, flags, out, need + 1);
    fwrite(out, 1, need, stdout);
    free(out);
out:
    free(ids);
    free(text);
    tok_free(t);
    return rc;
}
