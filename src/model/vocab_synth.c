/* model/vocab_synth.c: the synthetic SentencePiece vocabulary of `kiln model make --vocab N`.
 * Pieces are unique by construction: the enumerated letter strings skip the word list. */
#include "model/vocab_synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static const char *const words[] = {
    "the",    "a",     "and",     "to",    "of",    "was",    "he",   "she",  "it",   "in",
    "is",     "that",  "they",    "her",   "his",   "with",   "you",  "for",  "on",   "said",
    "had",    "day",   "one",     "there", "big",   "little", "but",  "so",   "not",  "be",
    "at",     "all",   "very",    "we",    "happy", "play",   "time", "mom",  "up",   "saw",
    "friend", "went",  "were",    "what",  "can",   "do",     "have", "this", "are",  "from",
    "an",     "or",    "by",      "as",    "will",  "my",     "me",   "no",   "yes",  "go",
    "out",    "like",  "when",    "him",   "them",  "then",   "did",  "get",  "see",  "come",
    "would",  "could", "about",   "into",  "over",  "after",  "good", "new",  "old",  "make",
    "made",   "know",  "want",    "look",  "find",  "home",   "tree", "dog",  "cat",  "ball",
    "sun",    "red",   "blue",    "once",  "upon",  "named",  "girl", "boy",  "park", "loved",
    "asked",  "help",  "because", "some",  "other", "more",   "how",  "too",
};

/* Writes the k-th string of `len` lowercase letters (base 26, most significant first). */
static void letters(char *out, int len, long k)
{
    for (int i = len - 1; i >= 0; i--) {
        out[i] = (char)('a' + k % 26);
        k /= 26;
    }
    out[len] = 0;
}

static int is_word(const char *piece)
{
    if (strncmp(piece, SP, 3)) return 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(piece + 3, words[i])) return 1;
    return 0;
}

int vocab_synth_write(gguf_writer *w, int n)
{
    static const char singles[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789.,!?'\":;-()";
    char **toks = calloc((size_t)n, sizeof *toks);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    int rc = KL_ENOMEM, i = 0;
    if (!toks || !scores || !types) goto out;
    const char *ctl[3] = {"<unk>", "<s>", "</s>"};
    for (; i < 3 && i < n; i++) {
        if (!(toks[i] = strdup(ctl[i]))) goto out;
        types[i] = i == 0 ? 2 : 3; /* unknown, control */
    }
    for (int b = 0; b < 256 && i < n; b++, i++) {
        if (!(toks[i] = malloc(8))) goto out;
        snprintf(toks[i], 8, "<0x%02X>", b);
        types[i] = 6;
    }
    char piece[64];
    size_t nw = sizeof words / sizeof words[0], ns = sizeof singles - 1;
    int len = 2; /* enumerated strings start at two letters */
    long k = 0, stage = 0;
    while (i < n) {
        if (stage < (long)nw)
            snprintf(piece, sizeof piece, SP "%s", words[stage++]);
        else if (stage == (long)nw)
            snprintf(piece, sizeof piece, SP), stage++;
        else if (stage < (long)(nw + 1 + ns)) {
            char c = singles[stage - (long)nw - 1];
            snprintf(piece, sizeof piece, "%c", c);
            stage++;
        } else if (stage < (long)(nw + 1 + ns + 26)) {
            snprintf(piece, sizeof piece, SP "%c", (char)('a' + stage - (long)(nw + 1 + ns)));
            stage++;
            if (is_word(piece)) continue;
        } else {
            /* Alternate "▁xy" and "xy" through every string of this length, then the next. */
            long total = 1;
            for (int j = 0; j < len; j++)
                total *= 26;
            char l[40];
            letters(l, len, k / 2);
            snprintf(piece, sizeof piece, "%s%s", k % 2 ? "" : SP, l);
            if (++k == 2 * total) k = 0, len++;
            if (is_word(piece)) continue;
        }
        if (!(toks[i] = strdup(piece))) goto out;
        types[i] = 1;
        scores[i] = -(float)(i - 259);
        i++;
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL,
                            (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
out:
    for (int j = 0; toks && j < n; j++)
        free(toks[j]);
    free(toks);
    free(scores);
    free(types);
    return rc;
}
