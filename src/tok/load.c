/* tok/load.c: tok_load builds a tokenizer from a GGUF file's tokenizer.ggml.* metadata and
 * copies everything it needs, so the file may be closed afterwards. Also the small getters.
 *
 * Defaults follow llama.cpp: SentencePiece vocabs have BOS 1, EOS 2, UNK 0, add BOS and a
 * prefix space; BPE vocabs have no defaults. tokenizer.ggml.*_token_id keys override ids
 * (ids out of range are ignored), add_bos_token / add_eos_token / add_space_prefix override
 * the flags. Tokens whose text marks them as ending a turn (<|eot_id|>, <|im_end|> ...) are
 * treated as control tokens that end generation, as llama.cpp does. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "base/log.h"
#include "tok/internal.h"

/* Texts of tokens that end a generation (llama.cpp's list). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>",     "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
};

void tok_free(tok *t)
{
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->score);
    free(t->type);
    free(t->attr);
    free(t->piece);
    free(t->piece_off);
    free(t->map.slots);
    free(t->map.hash);
    tok_pairmap_free(&t->merges);
    tok_pretok_free(&t->pre);
    free(t->special);
    free(t);
}

/* Reads an optional token id key into *id (kept when absent; its type is checked by
 * gguf_open). An id outside the vocabulary is ignored, with a warning. */
static void get_id(const gguf_file *f, const char *key, int32_t n_vocab, int32_t *id)
{
    uint32_t v;
    if (gguf_get_u32(f, key, &v, NULL) != 0) return;
    if (v < (uint32_t)n_vocab)
        *id = (int32_t)v;
    else
        kl_warn("%s: %s = %u is not a token of the vocabulary (%d tokens): ignored", gguf_path(f),
                key, v, n_vocab);
}

static void get_flag(const gguf_file *f, const char *key, bool *b)
{
    bool v;
    if (gguf_get_bool(f, key, &v, NULL) == 0) *b = v;
}

/* Copies the token texts, scores and types. Returns 0 or a KL_E* code with err filled. */
static int load_tokens(tok *t, const gguf_file *f, const char *path, kl_err *err)
{
    const gguf_arr *toks, *scores = NULL, *types = NULL;
    int rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err);
    if (rc == KL_ENOTFOUND)
        return kl_errf(err, KL_EBADFILE, "%s: tokenizer.ggml.tokens is missing", path);
    if (rc) return rc;
    if (toks->n == 0 || toks->n > INT32_MAX - 1)
        return kl_errf(err, KL_EBADFILE, "%s: tokenizer.ggml.tokens has %llu entries", path,
                       (unsigned long long)toks->n);
    t->n_vocab = (int32_t)toks->n;
    rc = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_F32, &scores, err);
    if (rc && rc != KL_ENOTFOUND) return rc;
    if (scores && scores->n != toks->n)
        return kl_errf(err, KL_EBADFILE, "%s: tokenizer.ggml.scores has %llu entries, not %d", path,
                       (unsigned long long)scores->n, t->n_vocab);
    rc = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32, &types, err);
    if (rc && rc != KL_ENOTFOUND) return rc;
    if (types && types->n != toks->n)
        return kl_errf(err, KL_EBADFILE, "%s: tokenizer.ggml.token_type has %llu entries, not %d",
                       path, (unsigned long long)types->n, t->n_vocab);

    size_t n = (size_t)t->n_vocab;
    uint64_t total = n;
    for (size_t i = 0; i < n; i++)
        if (ckd_add_u64(&total, total, toks->strs[i].len) || total > UINT32_MAX)
            return kl_errf(err, KL_EBADFILE, "%s: token texts exceed 4 GiB", path);
    t->text = malloc(total);
    t->text_off = malloc(sizeof *t->text_off * (n + 1));
    t->score = calloc(n, sizeof *t->score);
    t->type = malloc(n);
    t->attr = calloc(n, 1);
    if (!t->text || !t->text_off || !t->score || !t->type || !t->attr)
        return kl_errf(err, KL_ENOMEM, "%s: out of memory for %d tokens", path, t->n_vocab);
    uint32_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t->text_off[i] = off;
        memcpy(t->text + off, toks->strs[i].ptr, toks->strs[i].len);
        off += (uint32_t)toks->strs[i].len;
        t->text[off++] = 0;
        if (scores) memcpy(&t->score[i], (const char *)scores->data + 4 * i, 4);
        int32_t ty = TOK_T_NORMAL;
        if (types) memcpy(&ty, (const char *)types->data + 4 * i, 4);
        t->type[i] = (ty >= TOK_T_UNDEFINED && ty <= TOK_T_BYTE) ? (uint8_t)ty : TOK_T_UNDEFINED;
    }
    t->text_off[n] = off;
    for (size_t i = 0; i < n; i++)
        if (t->text_off[i + 1] - t->text_off[i] - 1 > t->max_token_len)
            t->max_token_len = t->text_off[i + 1] - t->text_off[i] - 1;
    return 0;
}

/* Reads tokenizer.ggml.merges into t->merges as (left id, right id) -> (rank, merged id).
 * Merges naming text that is not in the vocabulary cannot fire and are skipped. */
static int load_merges(tok *t, const gguf_file *f, const char *path, kl_err *err)
{
    const gguf_arr *m;
    int rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_STRING, &m, err);
    if (rc == KL_ENOTFOUND)
        return kl_errf(err, KL_EBADFILE, "%s: tokenizer.ggml.merges is missing", path);
    if (rc) return rc;
    if (m->n > INT32_MAX) return kl_errf(err, KL_EBADFILE, "%s: too many merges", path);
    if (tok_pairmap_init(&t->merges, m->n ? m->n : 1))
        return kl_errf(err, KL_ENOMEM, "%s: out of memory for %llu merges", path,
                       (unsigned long long)m->n);
    size_t cap = 0;
    char *buf = NULL;
    for (uint64_t i = 0; i < m->n; i++) {
        const char *s = m->strs[i].ptr;
        size_t len = m->strs[i].len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) continue;
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        if (ll + rl > cap) {
            char *nb = realloc(buf, ll + rl);
            if (!nb) {
                free(buf);
                return kl_errf(err, KL_ENOMEM, "%s: out of memory reading merges", path);
            }
            buf = nb, cap = ll + rl;
        }
        memcpy(buf, s, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t a = tok_map_find(t, s, ll), b = tok_map_find(t, sp + 1, rl);
        int32_t ab = tok_map_find(t, buf, ll + rl);
        if (a < 0 || b < 0 || ab < 0) continue;
        tok_pairmap_put(&t->merges, a, b, (int32_t)i, ab);
    }
    free(buf);
    return 0;
}

static void set_byte_tokens(tok *t)
{
    for (int b = 0; b < 256; b++) {
        char s[8];
        int32_t id;
        if (t->kind == TOK_KIND_SPM) {
            static const char hex[] = "0123456789ABCDEF";
            char h[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            id = tok_map_find(t, h, 6);
            if (id < 0) {
                s[0] = (char)b;
                id = tok_map_find(t, s, 1);
            }
            if (id < 0) id = t->unk;
        } else {
            id = tok_map_find(t, s, tok_byte_to_utf8((uint8_t)b, s));
        }
        t->byte_tok[b] = id;
    }
}

/* True when no token text has "▁" (E2 96 81) right after a character other than "▁": then
 * no merge can join a word to the "▁" that starts the next one. */
static bool spm_can_split(const tok *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = tok_text_of(t, id, &len);
        for (size_t i = 1; i + 3 <= len; i++) {
            bool at = !memcmp(s + i, "\xe2\x96\x81", 3);
            if (at && (i < 3 || memcmp(s + i - 3, "\xe2\x96\x81", 3))) return false;
        }
    }
    return true;
}

/* Marks end-of-generation tokens and collects the special tokens, longest text first. */
static int set_specials(tok *t, const gguf_file *f)
{
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int32_t id = tok_map_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0) continue;
        t->attr[id] |= TOK_A_EOG;
        t->type[id] = TOK_T_CONTROL;
        if (t->eot < 0 && i < 5) t->eot = id;
        if (t->eom < 0 && !strcmp(eog_texts[i], "<|eom_id|>")) t->eom = id;
    }
    if (t->eos >= 0) t->attr[t->eos] |= TOK_A_EOG;
    if (t->eot >= 0) t->attr[t->eot] |= TOK_A_EOG;
    if (t->eom >= 0) t->attr[t->eom] |= TOK_A_EOG;

    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->type[id];
        if (t->text_off[id + 1] - t->text_off[id] > 1 &&
            (ty == TOK_T_CONTROL || ty == TOK_T_USER || ty == TOK_T_UNKNOWN))
            n++;
    }
    t->special = malloc(sizeof *t->special * (n ? (size_t)n : 1));
    if (!t->special) return KL_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->type[id];
        if (t->text_off[id + 1] - t->text_off[id] > 1 &&
            (ty == TOK_T_CONTROL || ty == TOK_T_USER || ty == TOK_T_UNKNOWN))
            t->special[t->n_special++] = id;
    }
    /* insertion sort by length, descending, then id: the list is short (hundreds) */
    for (int32_t i = 1; i < t->n_special; i++) {
        int32_t id = t->special[i], j = i;
        uint32_t len = t->text_off[id + 1] - t->text_off[id];
        while (j > 0) {
            int32_t p = t->special[j - 1];
            if (t->text_off[p + 1] - t->text_off[p] >= len) break;
            t->special[j] = p;
            j--;
        }
        t->special[j] = id;
    }
    for (int32_t i = 0; i < t->n_special; i++)
        t->special_first[(uint8_t)t->text[t->text_off[t->special[i]]]] = 1;

    /* llama.cpp's per-model rule for Phi-3: spaces after its special tokens are dropped */
    const char *name;
    if (gguf_get_str(f, "general.name", &name, NULL) == 0) {
        char low[64];
        size_t i = 0;
        for (; name[i] && i < sizeof low - 1; i++)
            low[i] = (char)tolower((unsigned char)name[i]);
        low[i] = 0;
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int32_t k = 0; k < t->n_special; k++)
                t->attr[t->special[k]] |= TOK_A_RSTRIP;
            int32_t s = tok_map_find(t, "</s>", 4);
            if (s >= 0) t->attr[s] |= TOK_A_RSTRIP;
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (size_t k = 0; k < 3; k++) {
                s = tok_map_find(t, keep[k], strlen(keep[k]));
                if (s >= 0) t->attr[s] &= (uint8_t)~TOK_A_RSTRIP;
            }
        }
    }
    return 0;
}

int tok_load(tok **out, const gguf_file *f, kl_err *err)
{
    const char *path = gguf_path(f), *model, *pre = NULL;
    *out = NULL;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (rc == KL_ENOTFOUND)
        return kl_errf(err, KL_EBADFILE, "%s: no tokenizer (tokenizer.ggml.model is missing)",
                       path);
    if (rc) return rc;
    tok *t = calloc(1, sizeof *t);
    if (!t) return kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
    t->bos = t->eos = t->unk = t->eot = t->eom = -1;
    if (!strcmp(model, "llama")) {
        t->kind = TOK_KIND_SPM;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (!strcmp(model, "gpt2")) {
        t->kind = TOK_KIND_BPE;
        rc = gguf_get_str(f, "tokenizer.ggml.pre", &pre, err);
        if (rc == KL_ENOTFOUND) {
            rc = kl_errf(err, KL_EUNSUP,
                         "%s: tokenizer.ggml.pre is missing: the pre-tokenizer is unknown "
                         "(re-convert the model with a current converter)",
                         path);
            goto fail;
        }
        if (rc) goto fail;
    } else if (!strcmp(model, "bert")) {
        t->kind = TOK_KIND_WPM;
        t->add_bos = t->add_eos = true; /* [CLS] text [SEP] */
    } else {
        rc = kl_errf(err, KL_EUNSUP, "%s: unsupported tokenizer.ggml.model '%s'", path, model);
        goto fail;
    }
    if ((rc = load_tokens(t, f, path, err))) goto fail;
    if (tok_map_build(t)) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory for the vocabulary map", path);
        goto fail;
    }
    if (t->kind == TOK_KIND_SPM) {
        if (t->n_vocab > 2) t->bos = 1, t->eos = 2, t->unk = 0;
    } else if (t->kind == TOK_KIND_WPM) {
        /* BOS is [CLS], EOS is [SEP] */
        if (t->n_vocab > 102) t->bos = 101, t->eos = 102, t->unk = 100;
        get_id(f, "tokenizer.ggml.cls_token_id", t->n_vocab, &t->bos);
        get_id(f, "tokenizer.ggml.seperator_token_id", t->n_vocab, &t->eos);
    } else {
        if ((rc = tok_pretok_init(t, pre, path, err))) goto fail;
        if ((rc = load_merges(t, f, path, err))) goto fail;
    }
    get_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos);
    get_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos);
    get_id(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk);
    get_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot);
    get_id(f, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom);
    get_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos);
    get_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos);
    get_flag(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
    set_byte_tokens(t);
    if (t->kind == TOK_KIND_SPM) t->spm_split = spm_can_split(t);
    if (set_specials(t, f) || tok_pieces_build(t)) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory building the tokenizer", path);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    tok_free(t);
    return rc;
}

int32_t tok_n_vocab(const tok *t)
{
    return t->n_vocab;
}

int32_t tok_bos(const tok *t)
{
    return t->bos;
}

int32_t tok_eos(const tok *t)
{
    return t->eos;
}

bool tok_wants_bos(const tok *t)
{
    return t->add_bos && t->bos >= 0;
}

bool tok_is_eog(const tok *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->attr[id] & TOK_A_EOG);
}

bool tok_is_control(const tok *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->type[id] == TOK_T_CONTROL;
}

bool tok_is_user_defined(const tok *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->type[id] == TOK_T_USER;
}

const int32_t *tok_specials(const tok *t, int32_t *n)
{
    *n = t->n_special;
    return t->special;
}

const char *tok_text(const tok *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    return t->text + t->text_off[id];
}

int32_t tok_find(const tok *t, const char *text)
{
    return text ? tok_map_find(t, text, strlen(text)) : -1;
}
