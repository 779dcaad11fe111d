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

static int usage_tokenize(void)
{
    fprintf(stderr, "usage: kiln tokenize -m FILE [--no-bos] [--special] [--pieces] [--bench]"
                    " < text\n");
    return 2;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL;
    bool no_bos = false, special = false, pieces = false, do_bench = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--no-bos"))
            no_bos = true;
        else if (!strcmp(argv[i], "--special"))
            special = true;
        else if (!strcmp(argv[i], "--pieces"))
            pieces = true;
        else if (!strcmp(argv[i], "--bench"))
            do_bench = true;
        else
            return usage_tokenize();
    }
    if (!path) return usage_tokenize();
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
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--special"))
            special = true;
        else
            path = NULL, i = argc;
    }
    if (!path) {
        fprintf(stderr, "usage: kiln detokenize -m FILE [--special] < ids\n");
        return 2;
    }
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
