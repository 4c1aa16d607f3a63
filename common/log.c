/* log.c: see log.h. The level is read from the environment on first use; a race between
 * two first uses reads the same variable twice, which is harmless. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int level = -1;
static __thread int holding;
static char held[2048];
static size_t held_len;
static int held_flushed;

static const char *secrets[4];
static size_t nsecrets;

const char *log_env_bad(void)
{
    const char *v = getenv("ASYA_STATE_LOG");
    static const char *const names[] = { "error", "warn", "info", "debug" };
    if (!v || !*v)
        return NULL;
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0)
            return NULL;
    return v;
}

static int level_from_env(void)
{
    const char *v = getenv("ASYA_STATE_LOG");
    static const char *const names[] = { "error", "warn", "info", "debug" };
    if (v)
        for (int i = 0; i < 4; i++)
            if (strcmp(v, names[i]) == 0)
                return i;
    return LOG_WARN;
}

int log_enabled(enum log_level lvl)
{
    if (level < 0) {
        level = level_from_env();
        const char *bad = log_env_bad();
        if (bad)
            log_at(LOG_WARN, "ASYA_STATE_LOG=%.64s is not a level (error, warn, info, debug): "
                   "using warn", bad);
    }
    return (int)lvl <= level;
}

void log_secret(const char *s)
{
    if (s && *s && nsecrets < sizeof secrets / sizeof secrets[0])
        secrets[nsecrets++] = s;
}

/* Replaces every registered secret in line[0..n) by "***" (never longer). Returns the new
 * length. */
static int log_mask(char *line, int n)
{
    for (size_t i = 0; i < nsecrets; i++) {
        size_t sl = strlen(secrets[i]);
        char *p = line;
        while ((p = memmem(p, (size_t)(line + n - p), secrets[i], sl)) != NULL) {
            size_t keep = sl < 3 ? sl : 3;
            memcpy(p, "***", keep);
            memmove(p + keep, p + sl, (size_t)(line + n - (p + sl)));
            n -= (int)(sl - keep);
            p += keep;
        }
    }
    return n;
}

void log_at(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl))
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "asya-state: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : (n + m > (int)sizeof line - 2 ? (int)sizeof line - 2 : n + m);
    n = log_mask(line, n);
    for (int i = 0; i < n; i++) /* a name's control bytes never forge a line of their own */
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[n++] = '\n';
    if (holding) {
        if (held_len + (size_t)n <= sizeof held) {
            memcpy(held + held_len, line, (size_t)n);
            held_len += (size_t)n;
        }
        return;
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere to report a failed log write */
}

void log_hold(void) { holding = 1; }

void log_release(void) { holding = 0; }

int log_holding(void) { return holding; }

void log_flush_held(void)
{
    if (__atomic_exchange_n(&held_flushed, 1, __ATOMIC_ACQ_REL) || held_len == 0)
        return;
    ssize_t w = write(STDERR_FILENO, held, held_len);
    (void)w;
}

size_t log_take_held(char *out, size_t outsz)
{
    if (outsz == 0)
        return 0;
    size_t n = held_len < outsz - 1 ? held_len : outsz - 1;
    memcpy(out, held, n);
    out[n] = '\0';
    held_len = 0;
    return n;
}

void log_redact_url(const char *url, char *out, size_t outsz)
{
    if (outsz == 0)
        return;
    out[0] = '\0';
    if (!url)
        return;
    /* Credentials run from a URL's "://" (or where the text resumes, without a scheme) to
     * the last '@' before the next "://": a password may hold '@' or ',', so splitting the
     * list at commas first would print half of it. Everything else is copied. */
    size_t o = 0;
    const char *p = url;
    while (*p) {
        const char *scheme = strstr(p, "://");
        if (scheme && memchr(p, '@', (size_t)(scheme - p)))
            scheme = NULL; /* a URL without a scheme, with credentials, comes first */
        const char *start = scheme ? scheme + 3 : p;
        const char *next = strstr(start, "://");
        const char *limit = next ? next : start + strlen(start);
        const char *at = memrchr(start, '@', (size_t)(limit - start));
        int n = at ? snprintf(out + o, outsz - o, "%.*s***@", (int)(start - p), p)
                   : snprintf(out + o, outsz - o, "%.*s", (int)(limit - p), p);
        if (n < 0 || (size_t)n >= outsz - o)
            return;
        o += (size_t)n;
        p = at ? at + 1 : limit;
    }
}
