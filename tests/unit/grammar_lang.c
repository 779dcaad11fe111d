/* tests/unit/grammar_lang.c: the languages the grammar compilers produce, against
 * references: jansson for JSON (everything accepted parses; every compact dump of a random
 * value is accepted), PCRE2 for regular expressions (full-match agreement on random
 * strings), and accept/reject sets for JSON Schema, GBNF and choices. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "t.h"
#include "t_grammar.h"

#include "base/rng.h"
#include "grammar/grammar.h"

static bool m(const gram *g, const char *s)
{
    return gram_matches(g, s, strlen(s));
}

TEST(grammar_json_accepts_and_rejects)
{
    gram *g;
    kl_err err = {0};
    T_EQ(gram_compile_json(&g, false, NULL, &err), 0);
    const char *yes[] = {"{}",
                         "[]",
                         "0",
                         "-0.5e+10",
                         "\"\"",
                         "true",
                         "null",
                         "{\"a\": [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\n\"}",
                         "[\n  1,\n  2\n]",
                         "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
                         "1234567890123456",
                         "{\"a\":{\"a\":{\"a\":[[[]]]}}}"};
    const char *no[] = {"",
                        "{",
                        "{'a': 1}",
                        "[1,]",
                        "01",
                        "1.",
                        "+1",
                        "\"\\x\"",
                        "\"\\ud800\"",
                        "[1 2]",
                        "{\"a\" 1}",
                        " {}",
                        "{} ",
                        "\"\x01\"",
                        "\"\xc3\"",
                        "\"\xed\xa0\x80\"",
                        "tru",
                        "12345678901234567" /* 17 digits: over the bound */};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!m(g, yes[i])) t_fail(__FILE__, __LINE__, "rejected %s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (m(g, no[i])) t_fail(__FILE__, __LINE__, "accepted %s", no[i]);
    gram_unref(g);
    T_EQ(gram_compile_json(&g, true, NULL, &err), 0); /* objects only */
    T_ASSERT(m(g, "{\"x\": 1}"));
    T_ASSERT(!m(g, "[1]"));
    T_ASSERT(!m(g, "1"));
    gram_unref(g);
}

/* A random JSON value of depth <= d. */
static json_t *random_value(kl_rng *r, int d)
{
    int k = (int)(kl_rng_next(r) % (d > 0 ? 7 : 5));
    switch (k) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(kl_rng_next(r) & 1);
    case 2:
        return json_integer((json_int_t)(kl_rng_next(r) % 2000000) - 1000000);
    case 3:
        return json_real((double)(int64_t)(kl_rng_next(r) % 20001 - 10000) / 64.0);
    case 4: {
        char s[12];
        int n = (int)(kl_rng_next(r) % 10);
        for (int i = 0; i < n; i++)
            s[i] = "ab\"\\\n\t/ z"[kl_rng_next(r) % 10];
        return json_stringn(s, (size_t)n);
    }
    case 5: {
        json_t *a = json_array();
        int n = (int)(kl_rng_next(r) % 4);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, random_value(r, d - 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        int n = (int)(kl_rng_next(r) % 4);
        for (int i = 0; i < n; i++) {
            char key[4] = {'k', (char)('a' + i), 0};
            json_object_set_new(o, key, random_value(r, d - 1));
        }
        return o;
    }
    }
}

TEST(grammar_json_against_jansson)
{
    gram *g;
    kl_err err = {0};
    T_EQ(gram_compile_json(&g, false, NULL, &err), 0);
    kl_rng r;
    kl_rng_seed(&r, 7);
    int accepted = 0;
    for (int i = 0; i < 400; i++) {
        json_t *v = random_value(&r, 4);
        size_t flags = JSON_ENCODE_ANY | ((i & 1) ? JSON_COMPACT : JSON_INDENT(2));
        char *txt = json_dumps(v, flags);
        T_ASSERT(txt);
        if (!m(g, txt)) t_fail(__FILE__, __LINE__, "rejected %s", txt);
        /* mutations: whatever the grammar accepts, jansson parses */
        size_t n = strlen(txt);
        for (int k = 0; k < 8; k++) {
            char buf[4096];
            if (n + 2 > sizeof buf) break;
            memcpy(buf, txt, n + 1);
            size_t at = n ? kl_rng_next(&r) % n : 0;
            int op = (int)(kl_rng_next(&r) % 3);
            if (op == 0 && n) {
                memmove(buf + at, buf + at + 1, n - at);
            } else if (op == 1) {
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = "{}[],:\"0-e. \\"[kl_rng_next(&r) % 14];
            } else if (n) {
                buf[at] = "{}[],:\"1-E.a"[kl_rng_next(&r) % 12];
            }
            if (m(g, buf)) {
                accepted++;
                json_error_t je;
                json_t *p = json_loads(buf, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
                /* RFC 8259 allows numbers past a double's range (979e434); jansson does not */
                if (!p && !strstr(je.text, "overflow"))
                    t_fail(__FILE__, __LINE__, "accepted invalid JSON %s (%s)", buf, je.text);
                json_decref(p);
            }
        }
        free(txt);
        json_decref(v);
    }
    T_ASSERT(accepted > 50); /* the mutations did reach the grammar's language */
    gram_unref(g);
}

/* ---- regular expressions against PCRE2 ---- */

static bool pcre_full(const char *re, const char *s)
{
    char pat[512];
    snprintf(pat, sizeof pat, "(?:%s)\\z", re);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *c = pcre2_compile(
        (PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
        PCRE2_UTF | PCRE2_ANCHORED | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX, &ec, &eo, NULL);
    T_ASSERT(c);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
    int rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(c);
    return rc >= 0;
}

TEST(grammar_regex_against_pcre2)
{
    static const char *res[] = {
        "[a-c]+",
        "a|b|cc",
        "(ab)*c?",
        "a{2,4}b{3}",
        "[^ab]*",
        "\\d{1,3}(\\.\\d{1,3}){3}",
        "(a|ab)(c|bcd)d*",
        "x(a+)+y",
        "[\\w-]+@[a-z]+\\.(com|org)",
        ".{0,3}",
        "[a-z&&]+",
        "(?:a|b){0,5}c",
        "\\(\\)\\[\\]",
        "caf\xc3\xa9|na\xc3\xafve",
        "[\xc3\xa0-\xc3\xbf]{2}",
        "a*?b+?",
        "(?P<x>a)(?<y>b)",
        "[-a]+",
        "\\x41\\u0042",
        "a{2,}",
    };
    static const char alpha[] = "abcdxy0123.@-_()[]&\xc3\xa9 \n";
    kl_rng r;
    kl_rng_seed(&r, 11);
    for (size_t i = 0; i < sizeof res / sizeof *res; i++) {
        gram *g;
        kl_err err = {0};
        int rc = gram_compile_regex(&g, res[i], strlen(res[i]), NULL, &err);
        if (rc) t_fail(__FILE__, __LINE__, "%s: %s", res[i], err.msg);
        int agree_yes = 0;
        for (int k = 0; k < 3000; k++) {
            char s[16];
            size_t n = 0, want = kl_rng_next(&r) % 8;
            while (n < want) {
                size_t j = kl_rng_next(&r) % (sizeof alpha - 1);
                if (alpha[j] == '\xc3') {
                    s[n++] = '\xc3';
                    s[n++] = (char)(0xa0 + kl_rng_next(&r) % 0x20);
                } else if ((unsigned char)alpha[j] < 0x80) {
                    s[n++] = alpha[j];
                }
            }
            s[n] = 0;
            bool a = gram_matches(g, s, n), b = pcre_full(res[i], s);
            if (a != b)
                t_fail(__FILE__, __LINE__, "/%s/ on \"%s\": grammar %d, pcre2 %d", res[i], s, a, b);
            agree_yes += a;
        }
        (void)agree_yes;
        gram_unref(g);
    }
}

TEST(grammar_regex_refuses_what_it_cannot_do)
{
    static const struct {
        const char *re, *msg;
    } bad[] = {{"(?=a)b", "lookaround"},       {"(a)\\1", "backreferences"},
               {"\\bword", "word boundaries"}, {"(?i)abc", "inline flags"},
               {"a++", "possessive"},          {"\\p{L}", "Unicode properties"},
               {"a^b", "^ after the start"},   {"a$b", "$ before the end"},
               {"(ab", "missing )"},           {"ab)", "unbalanced )"},
               {"[z-a]", "out of order"},      {"*a", "nothing to repeat"},
               {"a**", "multiple repeat"},     {"a{3,2}", "out of order"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gram *g = NULL;
        kl_err err = {0};
        int rc = gram_compile_regex(&g, bad[i].re, strlen(bad[i].re), NULL, &err);
        if (!rc) t_fail(__FILE__, __LINE__, "/%s/ compiled", bad[i].re);
        T_CONTAINS(err.msg, bad[i].msg);
        T_ASSERT(!g);
    }
}

/* ---- JSON Schema ---- */

typedef struct scase {
    const char *schema;
    const char *yes[8], *no[8];
} scase;

TEST(grammar_schema_accepts_and_rejects)
{
    static const scase cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
         "\"integer\"}},\"required\":[\"name\"]}",
         {"{\"name\": \"a\"}", "{\"name\":\"a\",\"age\":3}", "{\"name\": \"\", \"age\": -7}"},
         {"{}", "{\"age\": 3}", "{\"age\":3,\"name\":\"a\"}", "{\"name\":\"a\",\"x\":1}",
          "{\"name\": 1}"}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":"
         "\"null\"},\"c\":{\"const\":\"k\"}}}",
         {"{}", "{\"b\": null}", "{\"a\": true, \"c\": \"k\"}", "{\"c\":\"k\"}"},
         {"{\"c\": \"j\"}", "{,\"b\":null}", "{\"a\":true,}", "{\"b\":null\"c\":\"k\"}"}},
        {"{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":2,\"maxItems\":3}",
         {"[1, 2]", "[1.5,-2e3,0]"},
         {"[]", "[1]", "[1,2,3,4]", "[1,\"a\"]"}},
        {"{\"enum\":[\"red\",\"green\",1,null,{\"x\":[1]}]}",
         {"\"red\"", "1", "null", "{\"x\":[1]}"},
         {"\"blue\"", "2", "\"Red\""}},
        {"{\"anyOf\":[{\"type\":\"string\",\"maxLength\":2},{\"type\":\"integer\",\"minimum\":"
         "10,\"maximum\":12}]}",
         {"\"ab\"", "\"\"", "10", "12", "\"\\n\\u00e9\""},
         {"\"abc\"", "9", "13", "11.5"}},
        {"{\"type\":\"integer\",\"minimum\":-15,\"exclusiveMaximum\":100}",
         {"-15", "0", "99", "-9", "42"},
         {"-16", "100", "-0", "1e1", "007"}},
        {"{\"type\":\"number\",\"minimum\":0,\"maximum\":1}",
         {"0", "1", "0.5", "0.25"},
         {"-0.5", "1.5", "2", "-1"}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
         "\"next\":{\"$ref\":\"#/$defs/node\"}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
         {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3}}}"},
         {"{\"v\":1,\"next\":{}}", "{\"next\":{\"v\":1}}"}},
        {"{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-[0-9]+$\"}",
         {"\"AB-1\"", "\"XY-1234\""},
         {"\"ab-1\"", "\"AB-\"", "\"xAB-1\""}},
        {"{\"type\":\"string\",\"pattern\":\"a\\\"b\"}", /* unanchored: contains a"b */
         {"\"a\\\"b\"", "\"xxa\\\"byy\""},
         {"\"ab\"", "\"a\\\\b\""}},
        {"{\"type\":\"string\",\"format\":\"date\"}",
         {"\"2024-02-28\"", "\"1999-12-31\""},
         {"\"2024-02-30\"", "\"2024-13-01\"", "\"24-01-01\""}},
        {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
         {"{}", "{\"a\": 1, \"b\": 2}"},
         {"{\"a\": \"x\"}"}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
         "\"additionalProperties\":true}",
         {"{\"a\": 1, \"b\": [true]}", "{\"zz\": null}"},
         {"{\"a\": 1, \"a\": 2}", "{\"b\": 1, \"a\": 1}"}},
        {"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],"
         "\"items\":false}",
         {"[]", "[\"a\"]", "[\"a\", 1]"},
         {"[1]", "[\"a\", 1, 2]"}},
        {"{\"type\":[\"string\",\"null\"]}", {"null", "\"x\""}, {"1", "true"}},
        {"{\"title\":\"annotations only\",\"description\":\"d\"}", {"1", "{\"a\":[]}"}, {"x"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gram *g = t_schema(cases[i].schema);
        for (int k = 0; k < 8 && cases[i].yes[k]; k++)
            if (!m(g, cases[i].yes[k]))
                t_fail(__FILE__, __LINE__, "schema %zu rejected %s", i, cases[i].yes[k]);
        for (int k = 0; k < 8 && cases[i].no[k]; k++)
            if (m(g, cases[i].no[k]))
                t_fail(__FILE__, __LINE__, "schema %zu accepted %s", i, cases[i].no[k]);
        gram_unref(g);
    }
}

TEST(grammar_schema_refuses_by_name)
{
    static const struct {
        const char *schema, *msg;
    } bad[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}", "'not' at /properties/a"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "'uniqueItems'"},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "'patternProperties'"},
        {"{\"type\":\"number\",\"multipleOf\":2}", "'multipleOf'"},
        {"{\"$ref\":\"http://x/y.json\"}", "remote $ref"},
        {"{\"$ref\":\"#/$defs/missing\"}", "points nowhere"},
        {"{\"type\":\"string\",\"format\":\"hostname\"}", "format 'hostname'"},
        {"{\"allOf\":[{},{}]}", "allOf with more than one"},
        {"{\"type\":\"thing\"}", "type must name JSON types"},
        {"{\"type\":\"object\",\"required\":[\"a\"],\"additionalProperties\":false}",
         "required property 'a' is not allowed"},
        {"{\"enum\":[]}", "allows no value"},
        {"false", "matches nothing"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer"},
        {"{\"type\":", "not valid JSON"},
        {"{\"type\":\"string\",\"pattern\":\"(?=x)\"}", "lookaround"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gram *g = NULL;
        kl_err err = {0};
        int rc = gram_compile_schema(&g, bad[i].schema, strlen(bad[i].schema), NULL, &err);
        if (!rc) t_fail(__FILE__, __LINE__, "compiled %s", bad[i].schema);
        T_CONTAINS(err.msg, bad[i].msg);
    }
}

/* ---- GBNF and choices ---- */

TEST(grammar_gbnf_grammars)
{
    /* llama.cpp's grammars/arithmetic.gbnf and list.gbnf, and a JSON grammar in its style */
    gram *g = t_gbnf("root  ::= (expr \"=\" ws term \"\\n\")+\n"
                     "expr  ::= term ([-+*/] term)*\n"
                     "term  ::= ident | num | \"(\" ws expr \")\" ws\n"
                     "ident ::= [a-z] [a-z0-9_]* ws\n"
                     "num   ::= [0-9]+ ws\n"
                     "ws    ::= [ \\t\\n]*\n");
    T_ASSERT(m(g, "1+2= 3\n"));
    T_ASSERT(m(g, "(a*b)-c= x1\n4= 4\n"));
    T_ASSERT(!m(g, "1+= 3\n"));
    T_ASSERT(!m(g, "1+2=3"));
    gram_unref(g);
    g = t_gbnf("root ::= item+\n\n# Excludes various line break characters\n"
               "item ::= \"- \" [^\\r\\n\\x0b\\x0c\\x85\\u2028\\u2029]+ \"\\n\"\n");
    T_ASSERT(m(g, "- a\n- b c\n"));
    T_ASSERT(m(g, "- caf\xc3\xa9\n"));
    T_ASSERT(!m(g, "- a"));
    T_ASSERT(!m(g, "- \xe2\x80\xa8\n"));
    gram_unref(g);
    g = t_gbnf(
        "root   ::= object\n"
        "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
        "object ::=\n  \"{\" ws (\n            string \":\" ws value\n"
        "    (\",\" ws string \":\" ws value)*\n  )? \"}\" ws\n"
        "array  ::=\n  \"[\" ws (\n            value\n    (\",\" ws value)*\n  )? \"]\" ws\n"
        "string ::=\n  \"\\\"\" (\n    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
        "    \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})\n  )* \"\\\"\" ws\n"
        "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] "
        "[1-9]{0,15})? ws\n"
        "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n");
    T_ASSERT(m(g, "{\"a\": [1, 2.5, \"x\\n\"], \"b\": {}}"));
    T_ASSERT(!m(g, "[1]"));
    T_ASSERT(!m(g, "{\"a\" 1}"));
    gram_unref(g);
    g = t_gbnf("root ::= \"a\"{2,3} (\"b\" | .)? \"\\U0001F600\"\n");
    T_ASSERT(m(g, "aa\xf0\x9f\x98\x80"));
    T_ASSERT(m(g, "aaab\xf0\x9f\x98\x80"));
    T_ASSERT(m(g, "aa\xc3\xa9\xf0\x9f\x98\x80"));
    T_ASSERT(!m(g, "a\xf0\x9f\x98\x80"));
    gram_unref(g);
}

TEST(grammar_gbnf_refuses)
{
    static const struct {
        const char *src, *msg;
    } bad[] = {{"root ::= root \"a\" | \"b\"\n", "left recursion: rule 'root'"},
               {"root ::= x\nx ::= y \"a\"\ny ::= \"\" | x\n", "left recursion"},
               {"root ::= undefined-rule\n", "never defined"},
               {"root ::= \"a\"\nroot ::= \"b\"\n", "defined twice"},
               {"start ::= \"a\"\n", "no rule named root"},
               {"root ::= \"a\n", "unterminated"},
               {"root ::= [abc\n", "unterminated"},
               {"root ::= \"\\q\"\n", "unknown escape"},
               {"root ::= (\"a\"\n", "expected )"},
               {"root ::= \"a\"{3,1}\n", "out of order"},
               {"root = \"a\"\n", "expected ::="},
               {"root ::= x\nx ::= x\n", "matches nothing"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gram *g = NULL;
        kl_err err = {0};
        int rc = gram_compile_gbnf(&g, bad[i].src, strlen(bad[i].src), NULL, &err);
        if (!rc) t_fail(__FILE__, __LINE__, "compiled %s", bad[i].src);
        T_CONTAINS(err.msg, bad[i].msg);
    }
}

TEST(grammar_choice)
{
    const char *c[] = {"yes", "no", "maybe so", "n\xc3\xa9"};
    size_t l[] = {3, 2, 8, 3};
    gram *g;
    kl_err err = {0};
    T_EQ(gram_compile_choice(&g, c, l, 4, NULL, &err), 0);
    T_ASSERT(m(g, "yes") && m(g, "no") && m(g, "maybe so") && m(g, "n\xc3\xa9"));
    T_ASSERT(!m(g, "ye") && !m(g, "yes ") && !m(g, "maybe"));
    gram_unref(g);
    T_ASSERT(gram_compile_choice(&g, c, l, 0, NULL, &err) != 0);
    T_CONTAINS(err.msg, "no choices");
}
