/* log.h: one line per event on stderr, prefixed "asya-state:", for every layer.
 * The level comes from ASYA_STATE_LOG (error, warn (default), info, debug), read once.
 * Safe in hooks and after fork: no malloc, no stdio, no lock; one write(2) per line.
 * Never pass a token, password or seed: callers redact (see log_redact_url). */
#ifndef ASYA_LOG_H
#define ASYA_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

int log_enabled(enum log_level lvl);
/* ASYA_STATE_LOG is set to something that is not a level: the value, else NULL. Such a value
 * is warned about once (one line, at the first log_enabled) and warn is used. */
const char *log_env_bad(void);

/* Registers a secret (NATS_PASSWORD, NATS_TOKEN): every later line has each occurrence
 * replaced by "***". Up to 4 secrets; s must live until exit; NULL or "" is ignored. */
void log_secret(const char *s);
void log_at(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Holding: while this thread holds, lines are kept (up to 2 KiB) instead of written, so a
 * library can parse its configuration early and report problems only once they matter.
 * log_release() stops holding; log_flush_held() writes what was kept, once. */
void log_hold(void);
void log_release(void);
/* 1 when the calling thread holds its lines (a helper thread working for it does the same). */
int log_holding(void);
void log_flush_held(void);
/* Moves what is held so far into out (NUL-terminated, at most outsz - 1 bytes; lines past
 * that are dropped) and empties the buffer, for a caller that rewrites the lines (the CLI).
 * Returns the number of bytes copied. */
size_t log_take_held(char *out, size_t outsz);

/* Copies url into out with any "user:pass@" or "token@" part replaced by "***@". */
void log_redact_url(const char *url, char *out, size_t outsz);

#endif
