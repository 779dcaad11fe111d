/* tests/unit/bench_markdown.c: recommend.md's Markdown subset as report.html shows it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/markdown.h"
#include "t.h"

static char *html(const char *md)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    T_ASSERT(f);
    kb_markdown_html(f, md);
    fclose(f);
    return doc;
}

TEST(bench_markdown_renders_the_recommendation_subset)
{
    char *h = html("# Serving recommendation for m at http://h:1\n"
                   "\n"
                   "Measured by `kiln bench --sweep` (stopped: SLO failed).\n"
                   "SLO: TTFT <= 500 ms.\n"
                   "\n"
                   "## Per replica\n"
                   "\n"
                   "- max concurrency: **8** requests (`--max-num-seqs 8`)\n"
                   "- queue length: **3**\n"
                   "\n"
                   "## Gateway\n"
                   "\n"
                   "`gateway.json` is a fragment.\n");
    T_STREQ(h, "<h2>Serving recommendation for m at http://h:1</h2>\n"
               "<p>Measured by <code>kiln bench --sweep</code> (stopped: SLO failed).\n"
               "SLO: TTFT &lt;= 500 ms.</p>\n"
               "<h3>Per replica</h3>\n"
               "<ul>\n"
               "<li>max concurrency: <strong>8</strong> requests (<code>--max-num-seqs 8</code>)"
               "</li>\n"
               "<li>queue length: <strong>3</strong></li>\n"
               "</ul>\n"
               "<h3>Gateway</h3>\n"
               "<p><code>gateway.json</code> is a fragment.</p>\n");
    free(h);
}

TEST(bench_markdown_escapes_everything_else)
{
    /* raw HTML, an unclosed marker, a list that ends without a blank line, no final newline */
    char *h = html("<script>alert(1)</script> & \"x\"\n- a `b\n- **c\nafter list\n#not a heading");
    T_STREQ(h, "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;</p>\n"
               "<ul>\n<li>a `b</li>\n<li>**c</li>\n</ul>\n"
               "<p>after list\n#not a heading</p>\n");
    T_ASSERT(!strstr(h, "<script>"));
    free(h);
    h = html("");
    T_STREQ(h, "");
    free(h);
    h = html("**`x<y`**");
    T_STREQ(h, "<p><strong><code>x&lt;y</code></strong></p>\n");
    free(h);
}
