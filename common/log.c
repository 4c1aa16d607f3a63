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
    if (level < 0)
        level = level_from_env();
    return (int)lvl <= level;
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
