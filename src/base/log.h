/* base/log.h: leveled logging to stderr. One line per call, prefixed with the level and a
 * UTC timestamp; KILN_LOG=debug|info|warn|error sets the threshold (default info). */
#ifndef KILN_BASE_LOG_H
#define KILN_BASE_LOG_H

enum { KL_LOG_DEBUG, KL_LOG_INFO, KL_LOG_WARN, KL_LOG_ERROR };

void kl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define kl_debug(...) kl_log(KL_LOG_DEBUG, __VA_ARGS__)
#define kl_info(...)  kl_log(KL_LOG_INFO, __VA_ARGS__)
#define kl_warn(...)  kl_log(KL_LOG_WARN, __VA_ARGS__)
#define kl_error(...) kl_log(KL_LOG_ERROR, __VA_ARGS__)
#endif
