/* base/log.h: leveled logging to stderr, one line per call (never more: a value holding a
 * newline cannot forge a second line). KILN_LOG=debug|info|warn|error sets the threshold
 * (default info).
 *
 * Two formats (kl_log_set_format; `--log-format` on serve and gateway):
 *   text  2026-01-02T03:04:05.678Z info serve: request id=cmpl-1 model="a b" status=200
 *   json  {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"serve: request",
 *          "id":"cmpl-1","model":"a b","status":200}
 * Free-text lines (kl_info ...) become {"ts","level","msg"} in JSON; in text, control
 * characters in them are escaped (\n, \u001b). Lines with fields from outside (request logs)
 * use the kl_rec builder: every value is escaped, in text as logfmt does (a value with a
 * space, '=', '"', a control character or invalid UTF-8, or an empty one, is quoted with
 * \" \\ \n \r \t \u00XX escapes and U+FFFD for bad bytes), so no value can add a field. */
#ifndef KILN_BASE_LOG_H
#define KILN_BASE_LOG_H
#include <stdbool.h>
#include <stddef.h>

enum { KL_LOG_DEBUG, KL_LOG_INFO, KL_LOG_WARN, KL_LOG_ERROR };
enum { KL_LOG_TEXT, KL_LOG_JSON };

void kl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define kl_debug(...) kl_log(KL_LOG_DEBUG, __VA_ARGS__)
#define kl_info(...)  kl_log(KL_LOG_INFO, __VA_ARGS__)
#define kl_warn(...)  kl_log(KL_LOG_WARN, __VA_ARGS__)
#define kl_error(...) kl_log(KL_LOG_ERROR, __VA_ARGS__)

/* KL_LOG_TEXT (default) or KL_LOG_JSON, for the whole process; set it before threads log. */
void kl_log_set_format(int format);
/* Parses "text" or "json"; returns the format or -1. */
int kl_log_format_parse(const char *name);

/* A structured line: kl_rec_begin, fields, kl_rec_end (which writes it, or nothing when the
 * level is below the threshold). Values longer than what fits are cut (marked "...") inside
 * their quotes; the line stays well-formed. Keys are the caller's constants. */
typedef struct kl_rec {
    int level;
    bool on;   /* at or above the threshold */
    bool full; /* a value was cut: later fields are left out */
    size_t n;
    char buf[4096];
} kl_rec;

void kl_rec_begin(kl_rec *r, int level, const char *event);
void kl_rec_str(kl_rec *r, const char *key, const char *val); /* NULL: "-" */
void kl_rec_strn(kl_rec *r, const char *key, const char *val, size_t len);
void kl_rec_int(kl_rec *r, const char *key, long long val);
void kl_rec_num(kl_rec *r, const char *key, double val); /* one decimal: milliseconds */
void kl_rec_end(kl_rec *r);

/* Writes s[0..len) escaped as a JSON string body (no quotes) into out (cap bytes, always
 * NUL-terminated); returns the bytes written. Cut at a whole escape when out is short. */
size_t kl_escape(char *out, size_t cap, const char *s, size_t len);
#endif
