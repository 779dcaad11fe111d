/* tests/unit/grammar_match.c: token masks on real vocabularies (Llama 3's 128k tokens,
 * Llama 2's SentencePiece 32k), against a brute force that tries every token; the cache's
 * byte cap; the compile budgets on hostile input. */
#include "t.h"
#include "t_grammar.h"

#include "base/rng.h"
#include "tok/tok.h"

/* Walks steps tokens through g, at each step comparing the mask with accept() of every
 * token (accepted ones rolled back). The walk picks a random allowed token, preferring
 * long ones and avoiding end tokens, so it goes deep into the language. Returns the number
 * of steps done (fewer when the output ended). */
static int check_walk(gram *g, gram_vocab *v, const tok *tk, int steps, uint64_t seed)
{
    gram_matcher *m;
    kl_err err = {0};
    T_EQ(gram_matcher_create(&m, g, v, &err), 0);
    int32_t n = gram_vocab_n(v);
    uint32_t *mask = malloc(sizeof *mask * (size_t)gram_mask_words(v));
    int32_t *allowed = malloc(sizeof *allowed * (size_t)n);
    kl_rng r;
    kl_rng_seed(&r, seed);
    int step = 0;
    for (; step < steps; step++) {
        int32_t count = gram_matcher_mask(m, mask), n_allowed = 0;
        for (int32_t t = 0; t < n; t++) {
            bool ok = gram_matcher_accept(m, t);
            if (ok) T_ASSERT(gram_matcher_rollback(m, 1));
            if (ok != gram_mask_has(mask, t))
                t_fail(__FILE__, __LINE__, "step %d: token %d '%s': mask %d, accept %d", step,
                       (int)t, tok_text(tk, t), gram_mask_has(mask, t), ok);
            if (ok && !tok_is_eog(tk, t)) allowed[n_allowed++] = t;
        }
        int32_t bits = 0;
        for (int32_t t = 0; t < n; t++)
            bits += gram_mask_has(mask, t);
        T_EQ(count, bits);
        if (!n_allowed) break;
        int32_t pick = allowed[kl_rng_next(&r) % (uint64_t)n_allowed];
        for (int k = 0; k < 3; k++) { /* of a few candidates, the longest */
            int32_t c = allowed[kl_rng_next(&r) % (uint64_t)n_allowed];
            if (strlen(tok_text(tk, c)) > strlen(tok_text(tk, pick))) pick = c;
        }
        T_ASSERT(gram_matcher_accept(m, pick));
    }
    free(allowed);
    free(mask);
    gram_matcher_free(m);
    return step;
}

static const char *nested_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bb\",\"ccc\"]},\"maxItems\":4},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]{5}$\"}},\"required\":[\"city\"]},"
    "\"score\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"address\"],\"additionalProperties\":false}";

TEST(grammar_mask_matches_brute_force_llama3)
{
    tok *tk;
    gram_vocab *v = t_gram_vocab("vocab/ggml-vocab-llama3.gguf", &tk);
    T_ASSERT(gram_vocab_n(v) > 128000);
    gram *g = t_schema(nested_schema);
    int done = check_walk(g, v, tk, 14, 1);
    T_ASSERT(done >= 8);
    gram_unref(g);
    kl_err err = {0};
    T_EQ(gram_compile_json(&g, false, NULL, &err), 0);
    check_walk(g, v, tk, 10, 2);
    gram_unref(g);
    gram_vocab_free(v);
    tok_free(tk);
}

TEST(grammar_mask_matches_brute_force_spm)
{
    tok *tk;
    gram_vocab *v = t_gram_vocab("vocab/ggml-vocab-llama-spm.gguf", &tk);
    kl_err err = {0};
    gram *g = t_schema(nested_schema);
    for (uint64_t seed = 1; seed <= 3; seed++)
        check_walk(g, v, tk, 30, seed);
    gram_unref(g);
    const char *re = "(yes|no|maybe)( [0-9]{1,3}(\\.[0-9]+)?)*";
    T_EQ(gram_compile_regex(&g, re, strlen(re), NULL, &err), 0);
    check_walk(g, v, tk, 20, 4);
    gram_unref(g);
    const char *gb = "root ::= \"(\" list \")\"\nlist ::= item (\", \" item)*\n"
                     "item ::= [a-z]+ | \"(\" list \")\"\n";
    T_EQ(gram_compile_gbnf(&g, gb, strlen(gb), NULL, &err), 0);
    for (uint64_t seed = 5; seed <= 6; seed++)
        check_walk(g, v, tk, 30, seed);
    gram_unref(g);
    const char *c[] = {"Paris", "London", "Lisbon"};
    size_t l[] = {5, 6, 6};
    T_EQ(gram_compile_choice(&g, c, l, 3, NULL, &err), 0);
    T_ASSERT(check_walk(g, v, tk, 10, 7) < 10); /* ends: only the end token is left */
    gram_unref(g);
    gram_vocab_free(v);
    tok_free(tk);
}

/* When the output is complete and nothing may follow, only the end tokens are allowed; an
 * end token ends the matcher. */
TEST(grammar_end_forces_end_token)
{
    tok *tk;
    gram_vocab *v = t_gram_vocab("vocab/ggml-vocab-llama-spm.gguf", &tk);
    kl_err err = {0};
    gram *g;
    T_EQ(gram_compile_regex(&g, "ab", 2, NULL, &err), 0);
    gram_matcher *m;
    T_EQ(gram_matcher_create(&m, g, v, &err), 0);
    T_ASSERT(!gram_matcher_can_end(m));
    T_ASSERT(gram_matcher_accept_bytes(m, "ab", 2));
    T_ASSERT(gram_matcher_must_end(m));
    uint32_t *mask = calloc((size_t)gram_mask_words(v), sizeof *mask);
    int32_t n = gram_matcher_mask(m, mask);
    T_ASSERT(n >= 1);
    for (int32_t t = 0; t < gram_vocab_n(v); t++)
        T_EQ(gram_mask_has(mask, t), tok_is_eog(tk, t));
    int32_t eos = tok_eos(tk);
    T_ASSERT(gram_matcher_accept(m, eos));
    T_EQ(gram_matcher_mask(m, mask), 0);
    T_ASSERT(!gram_matcher_accept(m, eos));
    /* masked logits: -inf exactly where the mask is clear */
    float *logits = malloc(sizeof *logits * (size_t)gram_vocab_n(v));
    T_ASSERT(gram_matcher_rollback(m, 1));
    gram_matcher_mask(m, mask);
    for (int32_t t = 0; t < gram_vocab_n(v); t++)
        logits[t] = (float)t;
    gram_mask_apply(mask, logits, gram_vocab_n(v));
    for (int32_t t = 0; t < gram_vocab_n(v); t++)
        T_ASSERT(tok_is_eog(tk, t) ? logits[t] == (float)t : isinf(logits[t]));
    free(logits);
    free(mask);
    gram_matcher_free(m);
    gram_unref(g);
    gram_vocab_free(v);
    tok_free(tk);
}

TEST(grammar_cache_hits_and_byte_cap)
{
    gram_cache *c = gram_cache_create(256 << 10, NULL);
    T_ASSERT(c);
    kl_err err = {0};
    char src[256];
    for (int i = 0; i < 200; i++) { /* a flood of distinct schemas */
        snprintf(src, sizeof src,
                 "{\"type\":\"object\",\"properties\":{\"k%d\":{\"type\":\"string\"},"
                 "\"n\":{\"type\":\"integer\"}},\"required\":[\"k%d\"]}",
                 i, i);
        gram *g;
        T_EQ(gram_cache_get(c, GRAM_SCHEMA, src, strlen(src), &g, &err), 0);
        T_ASSERT(gram_matches(g, "{\"k0\": \"x\"}", 11) == (i == 0));
        gram_unref(g);
        gram_cache_stats st;
        gram_cache_stats_get(c, &st);
        T_ASSERT(st.bytes <= (256 << 10));
    }
    gram_cache_stats st;
    gram_cache_stats_get(c, &st);
    T_EQ(st.misses, 200);
    T_ASSERT(st.evictions > 0);
    T_ASSERT(st.entries < 200);
    gram *a, *b;
    T_EQ(gram_cache_get(c, GRAM_SCHEMA, src, strlen(src), &a, &err), 0); /* the last: kept */
    T_EQ(gram_cache_get(c, GRAM_SCHEMA, src, strlen(src), &b, &err), 0);
    T_ASSERT(a == b);
    gram_cache_stats_get(c, &st);
    T_EQ(st.hits, 2);
    gram_unref(a), gram_unref(b);
    /* failures are errors each time, never cached */
    T_ASSERT(gram_cache_get(c, GRAM_SCHEMA, "{\"type\":1}", 10, &a, &err) != 0);
    T_ASSERT(gram_cache_get(c, GRAM_CHOICE, "[1]", 3, &a, &err) != 0);
    T_CONTAINS(err.msg, "strings");
    T_EQ(gram_cache_get(c, GRAM_CHOICE, "[\"x\",\"y\"]", 9, &a, &err), 0);
    T_ASSERT(gram_matches(a, "y", 1) && !gram_matches(a, "z", 1));
    gram_unref(a);
    gram_cache_free(c);
}

/* Hostile input is refused with a message, inside the budget. */
TEST(grammar_budget_refuses_hostile_input)
{
    kl_err err = {0};
    gram *g = NULL;
    /* a schema nested 10,000 deep */
    size_t cap = 10000 * 40 + 16, n = 0;
    char *s = malloc(cap);
    for (int i = 0; i < 10000; i++)
        n += (size_t)sprintf(s + n, "{\"type\":\"array\",\"items\":");
    n += (size_t)sprintf(s + n, "{}");
    for (int i = 0; i < 10000; i++)
        s[n++] = '}';
    T_ASSERT(gram_compile_schema(&g, s, n, NULL, &err) != 0);
    T_ASSERT(!g);
    printf("# 10000 deep: %s\n", err.msg);
    T_CONTAINS(err.msg, "depth");
    /* 100 deep: valid JSON, over the schema nesting limit (64) */
    n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(s + n, "{\"type\":\"array\",\"items\":");
    n += (size_t)sprintf(s + n, "{}");
    for (int i = 0; i < 100; i++)
        s[n++] = '}';
    T_ASSERT(gram_compile_schema(&g, s, n, NULL, &err) != 0);
    printf("# 100 deep: %s\n", err.msg);
    T_ASSERT(strstr(err.msg, "deep") || strstr(err.msg, "nest"));
    free(s);
    /* a regex with a million states */
    const char *re = "((a{1000}){1000}){1000}";
    T_ASSERT(gram_compile_regex(&g, re, strlen(re), NULL, &err) != 0);
    printf("# regex: %s\n", err.msg);
    T_ASSERT(strstr(err.msg, "too large") || strstr(err.msg, "budget"));
    /* catastrophic backtracking shapes are fine for an automaton */
    re = "(a+)+b";
    T_EQ(gram_compile_regex(&g, re, strlen(re), NULL, &err), 0);
    T_ASSERT(!gram_matches(g, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 44));
    gram_unref(g);
    /* a grammar whose determinization explodes: (a|b)* a (a|b){20} */
    const char *gb = "root ::= [ab]* \"a\" [ab]{20}\n";
    int rc = gram_compile_gbnf(&g, gb, strlen(gb), NULL, &err);
    if (!rc) {
        gram_unref(g);
        t_fail(__FILE__, __LINE__, "compiled a 2^20-state grammar");
    }
    printf("# gbnf: %s\n", err.msg);
    /* a small limit is honoured */
    gram_limits lim;
    gram_limits_defaults(&lim);
    lim.max_states = 50;
    T_ASSERT(gram_compile_schema(&g, nested_schema, strlen(nested_schema), &lim, &err) != 0);
    T_CONTAINS(err.msg, "50");
}
