/* log.h: one line per event on stderr, prefixed "asya-state:", for every layer.
 * The level comes from ASYA_STATE_LOG (error, warn (default), info, debug), read once.
 * Safe in hooks and after fork: no malloc, no stdio, no lock; one write(2) per line.
 * Never pass a token, password or seed: callers redact (see log_redact_url). */
#ifndef ASYA_LOG_H
#define ASYA_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

int log_enabled(enum log_level lvl);
void log_at(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Holding: while this thread holds, lines are kept (up to 2 KiB) instead of written, so a
 * library can parse its configuration early and report problems only once they matter.
 * log_release() stops holding; log_flush_held() writes what was kept, once. */
void log_hold(void);
void log_release(void);
void log_flush_held(void);

/* Copies url into out with any "user:pass@" or "token@" part replaced by "***@". */
void log_redact_url(const char *url, char *out, size_t outsz);

#endif
