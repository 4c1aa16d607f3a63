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
    size_t o = 0;
    while (*url && o + 1 < outsz) {
        /* one URL of a comma-separated list: scheme://[cred@]host */
        const char *end = strchr(url, ',');
        size_t len = end ? (size_t)(end - url) : strlen(url);
        const char *scheme = strstr(url, "://");
        const char *hoststart = (scheme && scheme < url + len) ? scheme + 3 : url;
        /* the last '@': a password may contain one (the URL parser takes the last too) */
        const char *at = memrchr(hoststart, '@', len - (size_t)(hoststart - url));
        size_t keep = (size_t)(hoststart - url);
        int n = snprintf(out + o, outsz - o, "%.*s%s%.*s%s", (int)keep, url, at ? "***@" : "",
                         (int)(len - (size_t)((at ? at + 1 : hoststart) - url)),
                         at ? at + 1 : hoststart, end ? "," : "");
        if (n < 0 || (size_t)n >= outsz - o)
            break;
        o += (size_t)n;
        url += len + (end ? 1 : 0);
    }
}
