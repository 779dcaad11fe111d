/* bench/sse.c: incremental SSE event reader (see sse.h). */
#include "bench/sse.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Makes room for `more` bytes (+1 for a NUL) in *buf; returns 0 or a KL_E* code. */
static int reserve(char **buf, size_t *cap, size_t len, size_t more)
{
    if (more > KB_SSE_MAX || len + more > KB_SSE_MAX) return KL_ERANGE;
    size_t need = len + more + 1;
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return KL_ENOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

/* One complete line (no '\n'; a trailing '\r' dropped). */
static int on_line(kb_sse *s, const char *l, size_t n, kb_sse_fn fn, void *arg)
{
    if (n && l[n - 1] == '\r') n--;
    if (n == 0) { /* blank line: the event ends */
        if (s->data) {
            s->data[s->data_len] = 0;
            fn(s->data, s->data_len, arg);
            s->data_len = 0;
            s->data[0] = 0;
        }
        return 0;
    }
    if (n < 5 || memcmp(l, "data:", 5)) return 0; /* comments, event:, id:, retry: */
    l += 5, n -= 5;
    if (n && *l == ' ') l++, n--;
    int rc = reserve(&s->data, &s->data_cap, s->data_len, n + 1);
    if (rc) return rc;
    if (s->data_len) s->data[s->data_len++] = '\n';
    memcpy(s->data + s->data_len, l, n);
    s->data_len += n;
    s->data[s->data_len] = 0;
    return 0;
}

int kb_sse_feed(kb_sse *s, const char *p, size_t n, kb_sse_fn fn, void *arg)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        int rc;
        if (!nl) { /* a partial line: kept for the next piece */
            if ((rc = reserve(&s->line, &s->line_cap, s->line_len, take))) return rc;
            memcpy(s->line + s->line_len, p, take);
            s->line_len += take;
            return 0;
        }
        if (s->line_len) { /* completes a line begun in an earlier piece */
            if ((rc = reserve(&s->line, &s->line_cap, s->line_len, take))) return rc;
            memcpy(s->line + s->line_len, p, take);
            rc = on_line(s, s->line, s->line_len + take, fn, arg);
            s->line_len = 0;
        } else {
            rc = on_line(s, p, take, fn, arg);
        }
        if (rc) return rc;
        p += take + 1;
        n -= take + 1;
    }
    return 0;
}

void kb_sse_free(kb_sse *s)
{
    free(s->line);
    free(s->data);
    memset(s, 0, sizeof *s);
}
