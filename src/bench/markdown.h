/* bench/markdown.h: the Markdown of recommend.md as HTML for report.html. A small converter
 * for the subset kiln bench writes, not a general one: "# " and "## " headings, "- " list
 * items, paragraphs of consecutive lines, `code` and **bold** inside them. Everything else
 * is text, escaped: no raw HTML passes through. */
#ifndef KILN_BENCH_MARKDOWN_H
#define KILN_BENCH_MARKDOWN_H
#include <stdio.h>

/* Writes md as HTML to f. */
void kb_markdown_html(FILE *f, const char *md);
#endif
