/* tok/pretok.c: byte-level BPE pre-tokenizers, selected by tokenizer.ggml.pre. Each is a list
 * of regexes applied in sequence; every regex splits each piece the previous one produced
 * into its matches and the gaps between them, and the last pieces are the BPE words. The
 * regexes are the ones the models' tokenizer.json files use (as llama.cpp lists them),
 * compiled once at load by PCRE2 in UTF + UCP mode with JIT. Invalid UTF-8 is allowed in the
 * subject (PCRE2_MATCH_INVALID_UTF): such bytes match no class and end up in gaps.
 *
 * One portability fix: Hugging Face runs these through Oniguruma, whose Unicode \s includes
 * U+0085 (NEL); PCRE2's does not, so \s is widened to [\s\x{85}] when compiling. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/internal.h"

/* Contractions, letters, 1-3 digits, punctuation runs, newlines, spaces (Llama 3). */
#define RE_LLAMA3                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"                      \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* The same with single digits (Qwen 2). */
#define RE_QWEN2                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"                           \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* GPT-2. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CJK  "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_DEEPSEEK_LETTERS                                                                        \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-"   \
    "\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"  \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-"        \
    "\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-" \
    "\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"        \
    "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"       \
    "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-"         \
    "\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-"        \
    "\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"         \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-"         \
    "\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}"         \
    "\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"         \
    "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"        \
    "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-"       \
    "\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-"            \
    "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-"         \
    "\\x{1E943}]+"
/* Mistral's tekken (Nemo, Small 3): case-aware words, single digits, punctuation runs that
 * keep trailing newlines and slashes; the regex of its tokenizer.json. */
#define RE_TEKKEN                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"   \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"   \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_NORDIC " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

typedef struct pre_rule {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *re[TOK_MAX_REGEX];
    bool nfc, ignore_merges, add_bos;
} pre_rule;

static const pre_rule rules[] = {
    {"llama3|llama-v3|llama-bpe|falcon3", {RE_LLAMA3}, false, true, true},
    {"dbrx|smaug-bpe|chatglm-bpe", {RE_LLAMA3}, false, false, false},
    {"qwen2|deepseek-r1-qwen|megrez", {RE_QWEN2}, true, false, false},
    {"stablelm2", {RE_QWEN2}, false, false, false},
    {"gpt-2|phi-2|roberta-bpe|jina-es|jina-de|gigachat|jina-v1-en|jina-v2-es|jina-v2-de|"
     "jina-v2-code|mpt|gpt-neox|olmo|jais",
     {RE_GPT2},
     false,
     false,
     false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b",
     {"\\p{N}", RE_GPT2},
     false,
     false,
     false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, false, false, false},
    {"deepseek-llm",
     {"[\r\n]", RE_DEEPSEEK_LETTERS,
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", RE_CJK, "\\p{N}+"},
     false,
     false,
     false},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"},
     false,
     false,
     false},
    {"deepseek-v3",
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./"
      ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     false,
     false,
     false},
    {"poro-chat|bloom|gpt3-finnish", {RE_NORDIC}, false, false, false},
    {"tekken", {RE_TEKKEN}, false, true, true},
    /* Chameleon: sentinel and image tokens, tabs, newlines and space pairs, digits and
     * punctuation one by one, then GPT-2's words */
    {"chameleon",
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]",
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"},
     false,
     false,
     true},
    {"viking", {RE_NORDIC, "\\p{N}"}, false, false, false},
    {"default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     false,
     false,
     false},
};

static bool name_in(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !memcmp(p, name, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* Copies pattern into dst with \s widened by U+0085 (see the file comment); dst holds at
 * least 4 * strlen(pattern) + 1 bytes. */
static void widen_space(const char *pattern, char *dst)
{
    bool in_class = false;
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p[1]) {
            if (p[1] == 's' || p[1] == 'S') {
                const char *w = p[1] == 's' ? (in_class ? "\\s\\x{85}" : "[\\s\\x{85}]")
                                            : "[^\\s\\x{85}]"; /* \S never appears in a class */
                dst = stpcpy(dst, w);
            } else {
                *dst++ = p[0];
                *dst++ = p[1];
            }
            p++;
            continue;
        }
        if (*p == '[' && !in_class)
            in_class = true;
        else if (*p == ']' && in_class)
            in_class = false;
        *dst++ = *p;
    }
    *dst = 0;
}

/* Compiles the rules tokenizer.ggml.pre names into t->pre. Returns 0, KL_EUNSUP for an unknown
 * name, or KL_EBADFILE/KL_ENOMEM when a regex does not compile (nothing left allocated). */
int tok_pretok_init(tok *t, const char *pre, const char *path, kl_err *err)
{
    const pre_rule *r = NULL;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0] && !r; i++)
        if (name_in(rules[i].names, pre)) r = &rules[i];
    if (!r)
        return kl_errf(err, KL_EUNSUP, "%s: unknown pre-tokenizer tokenizer.ggml.pre = '%s'", path,
                       pre);
    tok_pretok *p = &t->pre;
    p->name = r->names;
    p->nfc = r->nfc;
    p->ignore_merges = r->ignore_merges;
    t->add_bos = r->add_bos;
    for (int i = 0; i < TOK_MAX_REGEX && r->re[i]; i++) {
        char *pat = malloc(4 * strlen(r->re[i]) + 1);
        if (!pat) goto oom;
        widen_space(r->re[i], pat);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile(
            (PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        free(pat);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            tok_pretok_free(p);
            return kl_errf(err, KL_EBADFILE, "%s: pre-tokenizer '%s' regex %d: %s at %zu", path,
                           pre, i, (const char *)msg, (size_t)eo);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted when JIT is unavailable */
        p->re[p->n_re++] = re;
    }
    return 0;
oom:
    tok_pretok_free(p);
    return kl_errf(err, KL_ENOMEM, "%s: out of memory compiling the pre-tokenizer", path);
}

void tok_pretok_free(tok_pretok *p)
{
    for (int i = 0; i < p->n_re; i++)
        pcre2_code_free(p->re[i]);
    p->n_re = 0;
}

/* Sets up o's match data, match context and JIT stack; false when out of memory. */
bool tok_pretok_begin(const tok *t, tok_out *o)
{
    (void)t;
    o->match = pcre2_match_data_create(1, NULL);
    o->mctx = pcre2_match_context_create(NULL);
    o->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!o->match || !o->mctx || !o->jstack) {
        tok_pretok_end(o);
        return false;
    }
    pcre2_jit_stack_assign(o->mctx, NULL, o->jstack);
    return true;
}

void tok_pretok_end(tok_out *o)
{
    pcre2_match_data_free(o->match);
    pcre2_match_context_free(o->mctx);
    pcre2_jit_stack_free(o->jstack);
    o->match = o->mctx = o->jstack = NULL;
}

/* Applies regex lvl (and the ones after it) to s[0..len). Recursion depth <= TOK_MAX_REGEX.
 * A match error (limits) leaves the rest of the piece as one gap, never lost. */
static void split_level(const tok *t, int lvl, const char *s, size_t len, tok_out *o)
{
    if (!len) return;
    if (lvl == t->pre.n_re || !o->match) {
        tok_bpe_word(t, s, len, o);
        return;
    }
    const pcre2_code *re = t->pre.re[lvl];
    size_t pos = 0, gap = 0;
    while (pos < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, o->match, o->mctx);
        if (rc < 0) break;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(o->match);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match splits nothing: step over one character */
            uint32_t cp;
            if (ms >= len) break;
            pos = ms + tok_utf8_decode(s + ms, len - ms, &cp);
            continue;
        }
        if (ms > gap) split_level(t, lvl + 1, s + gap, ms - gap, o);
        split_level(t, lvl + 1, s + ms, me - ms, o);
        gap = pos = me;
    }
    if (len > gap) split_level(t, lvl + 1, s + gap, len - gap, o);
}

void tok_pretok_split(const tok *t, const char *s, size_t len, tok_out *o)
{
    split_level(t, 0, s, len, o);
}
