/* bench/markdown.c: recommend.md's Markdown subset to HTML (see markdown.h). */
#include "bench/markdown.h"

#include <stdbool.h>
#include <string.h>

static void esc(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<')
            fputs("&lt;", f);
        else if (s[i] == '>')
            fputs("&gt;", f);
        else if (s[i] == '&')
            fputs("&amp;", f);
        else if (s[i] == '"')
            fputs("&quot;", f);
        else
            fputc(s[i], f);
    }
}

/* One line's inline text: `code` and **bold** (each only when closed on the same line). */
static void inline_text(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        const char *close;
        if (s[i] == '`' && (close = memchr(s + i + 1, '`', n - i - 1))) {
            fputs("<code>", f);
            esc(f, s + i + 1, (size_t)(close - s - i - 1));
            fputs("</code>", f);
            i = (size_t)(close - s) + 1;
        } else if (i + 1 < n && s[i] == '*' && s[i + 1] == '*' && i + 2 < n &&
                   (close = memmem(s + i + 2, n - i - 2, "**", 2)) && close > s + i + 2) {
            fputs("<strong>", f);
            inline_text(f, s + i + 2, (size_t)(close - s - i - 2));
            fputs("</strong>", f);
            i = (size_t)(close - s) + 2;
        } else {
            esc(f, s + i, 1);
            i++;
        }
    }
}

void kb_markdown_html(FILE *f, const char *md)
{
    enum { NONE, PARA, LIST } open = NONE;
    static const char *const closing[] = {"", "</p>\n", "</ul>\n"};
    for (const char *p = md; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        while (n && p[n - 1] == '\r')
            n--;
        int level = 0;
        while ((size_t)level < n && level < 6 && p[level] == '#')
            level++;
        bool heading = level > 0 && (size_t)level < n && p[level] == ' ';
        bool item = n >= 2 && p[0] == '-' && p[1] == ' ';
        bool blank = strspn(p, " \t") >= n;
        if (heading || blank || (item && open != LIST) || (!item && open == LIST)) {
            fputs(closing[open], f);
            open = NONE;
        }
        if (heading) {
            fprintf(f, "<h%d>", level + 1); /* the page's own title is the h1 */
            inline_text(f, p + level + 1, n - (size_t)level - 1);
            fprintf(f, "</h%d>\n", level + 1);
        } else if (item) {
            if (open != LIST) fputs("<ul>\n", f);
            open = LIST;
            fputs("<li>", f);
            inline_text(f, p + 2, n - 2);
            fputs("</li>\n", f);
        } else if (!blank) {
            fputs(open == PARA ? "\n" : "<p>", f);
            open = PARA;
            inline_text(f, p, n);
        }
        p = eol ? eol + 1 : NULL;
    }
    fputs(closing[open], f);
}
