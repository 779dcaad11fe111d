#include "t.h"

#include "hub/hub.h"

TEST(hub_ref_parse_forms)
{
    hub_ref r;
    kl_err err = {0};
    T_EQ(hub_ref_parse(&r, "hf://org/My-Model_1.5B-GGUF/sub/m-Q4_K_M.gguf", &err), 0);
    T_STREQ(r.repo, "org/My-Model_1.5B-GGUF");
    T_STREQ(r.file, "sub/m-Q4_K_M.gguf");
    T_STREQ(r.tag, "");
    T_STREQ(r.revision, "main");
    T_EQ(hub_ref_parse(&r, "org/repo:q4_k_m", &err), 0);
    T_STREQ(r.repo, "org/repo");
    T_STREQ(r.file, "");
    T_STREQ(r.tag, "q4_k_m");
    T_EQ(hub_ref_parse(&r, "hf://org/repo", &err), 0);
    T_STREQ(r.tag, "");
    T_STREQ(r.file, "");
}

TEST(hub_ref_parse_refuses_hostile_names)
{
    static const char *const bad[] = {
        "hf://org/repo/../x.gguf",
        "hf://org/repo/a/./x.gguf",
        "hf://../repo/x.gguf",
        "hf://org/..repo/x.gguf",
        "hf://org/re--po/x.gguf",
        "hf://org/repo//x.gguf",
        "hf://org/repo/x.bin",
        "hf://org/repo/x\\y.gguf",
        "hf://org/repo/a\nb.gguf",
        "org/repo:Q4/../x",
        "org/repo:",
        "hf://org",
        "hf:///etc/x.gguf",
        "-org/repo",
        "org/repo/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hub_ref r;
        kl_err err = {0};
        if (hub_ref_parse(&r, bad[i], &err) != KL_EINVAL)
            t_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
    }
}

TEST(hub_is_ref_tells_files_from_refs)
{
    T_ASSERT(hub_is_ref("hf://a/b/c.gguf"));
    T_ASSERT(hub_is_ref("org/repo"));
    T_ASSERT(hub_is_ref("org/repo:Q8_0"));
    T_ASSERT(!hub_is_ref("models/x.gguf"));
    T_ASSERT(!hub_is_ref("/abs/x"));
    T_ASSERT(!hub_is_ref("./a/b"));
    T_ASSERT(!hub_is_ref("x.gguf"));
    T_ASSERT(!hub_is_ref("a/b/c"));
    T_ASSERT(!hub_is_ref("org/repo:bad/tag"));
}

TEST(hub_safe_path_rules)
{
    T_ASSERT(hub_safe_path("a.gguf"));
    T_ASSERT(hub_safe_path("Q4_K_M/m (1)-00001-of-00002.gguf"));
    T_ASSERT(!hub_safe_path(""));
    T_ASSERT(!hub_safe_path("/a.gguf"));
    T_ASSERT(!hub_safe_path("a/"));
    T_ASSERT(!hub_safe_path("a/../b"));
    T_ASSERT(!hub_safe_path(".."));
    T_ASSERT(!hub_safe_path("./a"));
    T_ASSERT(!hub_safe_path("a//b"));
    T_ASSERT(!hub_safe_path("a\\b"));
    T_ASSERT(!hub_safe_path("a:b"));
    T_ASSERT(!hub_safe_path("a\x01"));
    char longp[HUB_PATH_MAX + 2];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    T_ASSERT(!hub_safe_path(longp));
}

/* The file llama.cpp's -hf would take. */
TEST(hub_pick_as_llama_cpp)
{
    const char *files[] = {
        "README.md",
        "mmproj-model-f16.gguf",
        "model-IQ2_M.gguf",
        "model-Q4_K_S.gguf",
        "model-Q8_0.gguf",
        "Q4_K_M/model-Q4_K_M-00002-of-00002.gguf",
        "Q4_K_M/model-Q4_K_M-00001-of-00002.gguf",
        "imatrix-model-Q4_K_M.gguf",
    };
    int n = sizeof files / sizeof files[0];
    T_EQ(hub_pick(files, n, ""), 6);     /* Q4_K_M first, its first shard */
    T_EQ(hub_pick(files, n, "q8_0"), 4); /* any case */
    T_EQ(hub_pick(files, n, "Q4_K_S"), 3);
    T_EQ(hub_pick(files, n, "Q4_K"), 3); /* the tag followed by '.', '_' or '-' */
    T_EQ(hub_pick(files, n, "F16"), -1); /* only the mmproj file has it */
    T_EQ(hub_pick(files, n, "Q5_K_M"), -1);
    T_EQ(hub_pick(files + 2, 2, ""), 0); /* neither default tag: the first model file */
    T_EQ(hub_pick(files, 2, ""), -1);    /* no model file at all */
}
