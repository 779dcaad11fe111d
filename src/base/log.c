/* base/log.c: see log.h. Each line is formatted into one buffer and written with one call,
 * so lines of concurrent threads never interleave. */
#include "base/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_format = KL_LOG_TEXT;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int threshold(void)
{
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("KILN_LOG");
        level = KL_LOG_INFO;
        if (e && !strcmp(e, "debug")) level = KL_LOG_DEBUG;
        if (e && !strcmp(e, "warn")) level = KL_LOG_WARN;
        if (e && !strcmp(e, "error")) level = KL_LOG_ERROR;
    }
    return level;
}

void kl_log_set_format(int format)
{
    log_format = format == KL_LOG_JSON ? KL_LOG_JSON : KL_LOG_TEXT;
}

int kl_log_format_parse(const char *name)
{
    if (name && !strcmp(name, "text")) return KL_LOG_TEXT;
    if (name && !strcmp(name, "json")) return KL_LOG_JSON;
    return -1;
}

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n = c < 0x80             ? 1
               : (c & 0xE0) == 0xC0 ? 2
               : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (!n || n > len) return 0;
    unsigned cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* kl_escape; quotes false leaves '"' and '\\' as they are (free text in the text format).
 * *done (may be NULL) tells whether all of s fitted. */
static size_t escape(char *out, size_t cap, const char *s, size_t len, bool quotes, bool *done)
{
    size_t k = 0, i = 0;
    if (done) *done = len == 0;
    if (!cap) return 0;
    while (i < len) {
        const unsigned char *p = (const unsigned char *)s + i;
        char esc[8];
        const char *piece = esc;
        size_t pl, used = 1;
        if (quotes && (*p == '"' || *p == '\\')) {
            esc[0] = '\\', esc[1] = (char)*p, pl = 2;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            esc[0] = '\\', esc[1] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't', pl = 2;
        } else if (*p < 0x20 || *p == 0x7F) {
            pl = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else if (*p < 0x80) {
            piece = (const char *)p, pl = 1;
        } else if ((used = utf8_seq(p, len - i))) {
            piece = (const char *)p, pl = used;
        } else {
            piece = "\xEF\xBF\xBD", pl = 3, used = 1; /* U+FFFD for a byte that is not UTF-8 */
        }
        if (k + pl >= cap) break;
        memcpy(out + k, piece, pl);
        k += pl;
        i += used;
    }
    out[k] = 0;
    if (done) *done = i == len;
    return k;
}

size_t kl_escape(char *out, size_t cap, const char *s, size_t len)
{
    return escape(out, cap, s, len, true, NULL);
}

/* "2026-01-02T03:04:05.678Z" into ts (96 bytes: room for any int the format could see). */
static void timestamp(char *ts, size_t cap)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now.tv_nsec / 1000000));
}

/* The line's start: the timestamp and level (text), or the object's first members up to the
 * message's opening quote (JSON). */
static size_t line_start(char *out, size_t cap, int level)
{
    char ts[96];
    timestamp(ts, sizeof ts);
    int n = log_format == KL_LOG_JSON
                ? snprintf(out, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                           level_names[level & 3])
                : snprintf(out, cap, "%s %s ", ts, level_names[level & 3]);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void kl_log(int level, const char *fmt, ...)
{
    if (level < threshold()) return;
    char msg[2048], line[4096];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t ml = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
    size_t n = line_start(line, sizeof line, level);
    /* text: only control characters need escaping (the message is free text, not fields) */
    n += escape(line + n, sizeof line - n - 3, msg, ml, log_format == KL_LOG_JSON, NULL);
    if (log_format == KL_LOG_JSON) memcpy(line + n, "\"}", 3);
    fprintf(stderr, "%s\n", line); /* one write per line, so concurrent lines do not interleave */
}

/* ------------------------------------------------------------ structured ---- */

#define REC_TAIL 8 /* bytes kept free for the line's end: a closing quote, "}" and NUL */

/* Appends s when it fits; rec_field reserved the room of every piece it writes. */
static void rec_put(kl_rec *r, const char *s, size_t len)
{
    if (r->n + len + REC_TAIL > sizeof r->buf) return;
    memcpy(r->buf + r->n, s, len);
    r->n += len;
}

void kl_rec_begin(kl_rec *r, int level, const char *event)
{
    r->level = level;
    r->on = level >= threshold();
    r->full = false;
    r->n = 0;
    if (!r->on) return;
    r->n = line_start(r->buf, sizeof r->buf, level);
    rec_put(r, event, strlen(event)); /* the caller's constant */
    if (log_format == KL_LOG_JSON) rec_put(r, "\"", 1);
}

/* Starts a field (" key=" or ",\"key\":") when the key and a short value fit; otherwise the
 * line is full and this field and every later one are left out, so it stays well-formed. */
static bool rec_field(kl_rec *r, const char *key)
{
    size_t kl = strlen(key);
    if (!r->on || r->full || r->n + kl + 48 + REC_TAIL > sizeof r->buf) {
        r->full = r->on;
        return false;
    }
    bool json = log_format == KL_LOG_JSON;
    rec_put(r, json ? ",\"" : " ", json ? 2 : 1);
    rec_put(r, key, kl);
    rec_put(r, json ? "\":" : "=", json ? 2 : 1);
    return true;
}

/* Whether a logfmt value must be quoted: empty, or any byte outside plain printable ASCII,
 * or '"', '=' or '\\'. */
static bool needs_quotes(const char *s, size_t len)
{
    if (!len) return true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7F || c == '"' || c == '=' || c == '\\') return true;
    }
    return false;
}

void kl_rec_strn(kl_rec *r, const char *key, const char *val, size_t len)
{
    if (!rec_field(r, key)) return;
    bool quote = log_format == KL_LOG_JSON || needs_quotes(val, len);
    if (quote) rec_put(r, "\"", 1);
    /* room for the value, then "..." and the closing quote */
    size_t room = sizeof r->buf - REC_TAIL - 4 - r->n;
    bool done;
    r->n += escape(r->buf + r->n, room, val, len, true, &done);
    if (!done) { /* cut short: say so inside the quotes */
        rec_put(r, "...", 3);
        r->full = true;
    }
    if (quote) rec_put(r, "\"", 1);
}

void kl_rec_str(kl_rec *r, const char *key, const char *val)
{
    if (!val) val = "-";
    kl_rec_strn(r, key, val, strlen(val));
}

void kl_rec_int(kl_rec *r, const char *key, long long val)
{
    if (!rec_field(r, key)) return;
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", val);
    rec_put(r, num, (size_t)n);
}

void kl_rec_num(kl_rec *r, const char *key, double val)
{
    if (!rec_field(r, key)) return;
    char num[40];
    int n = isfinite(val) && fabs(val) < 1e15 ? snprintf(num, sizeof num, "%.1f", val)
                                              : snprintf(num, sizeof num, "null");
    rec_put(r, num, (size_t)n);
}

void kl_rec_end(kl_rec *r)
{
    if (!r->on) return;
    if (log_format == KL_LOG_JSON) r->buf[r->n++] = '}'; /* REC_TAIL kept the room */
    r->buf[r->n] = 0;
    fprintf(stderr, "%s\n", r->buf);
}
