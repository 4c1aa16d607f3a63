/* util.c: what every subcommand shares (see cli.h): the exit statuses, the one error line
 * per failure, option errors, and the parsers and formatters of durations, sizes, times and
 * JSON strings. Pure functions except cli_err/cli_fail/cli_flush_log (stderr).
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"

int cli_status(int r)
{
    switch (-r) {
    case 0:
        return CLI_OK;
    case ENOENT: case EEXIST: case EISDIR: case ENOTDIR: case ENOTEMPTY:
    case ENAMETOOLONG: case EFBIG:
        return CLI_FAIL;
    default:
        return CLI_ERROR;
    }
}

void cli_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "asya-state %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_hold_log(void)
{
    log_hold();
}

/* Removes nats.c's source locations ("(kv.c:316): ", " (jsm.c:1033)") from line. */
void cli_strip_locations(char *line)
{
    for (char *p = line; (p = strchr(p, '(')) != NULL;) {
        char *q = p + 1;
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
        int loc = strncmp(q, ".c:", 3) == 0 && isdigit((unsigned char)q[3]);
        if (loc) {
            q += 3;
            while (isdigit((unsigned char)*q))
                q++;
            loc = *q == ')';
        }
        if (!loc) {
            p++;
            continue;
        }
        q++;
        if (q[0] == ':' && q[1] == ' ')
            q += 2;
        else if (p > line && p[-1] == ' ')
            p--;
        memmove(p, q, strlen(q) + 1);
    }
}

int cli_flush_log(const char *cmd)
{
    char held[4096];
    if (log_take_held(held, sizeof held) == 0)
        return 0;
    int n = 0;
    for (char *save = NULL, *l = strtok_r(held, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "asya-state: ", 12) == 0)
            l += 12;
        cli_strip_locations(l);
        fprintf(stderr, "asya-state %s: %s\n", cmd, l);
        n++;
    }
    return n;
}

int cli_fail(const char *cmd, const char *what, int r)
{
    int status = cli_status(r);
    /* A server or configuration problem was logged by kv/ with its cause (the server's
     * address, the bucket's name): that line is the message. */
    if (status == CLI_ERROR) {
        if (cli_flush_log(cmd) > 0)
            return status;
    } else {
        /* about the PATH: kv/'s own line ("d/: rmdir: Directory not empty") says what ours
         * will say, less clearly */
        char drop[4096];
        log_take_held(drop, sizeof drop);
    }
    const char *text;
    switch (-r) {
    case ENOENT: text = "No such file or directory"; break;
    case EEXIST: text = "revision conflict (the value changed, or it already exists)"; break;
    case ECONNREFUSED: text = "cannot reach the NATS server (is it running at NATS_URL?)"; break;
    case ETIMEDOUT: text = "the NATS server did not answer in time (NATS_TIMEOUT_MS)"; break;
    case EACCES: text = "the NATS server refused the request (credentials, permissions)"; break;
    case EIO: text = "the request failed: run `asya-state check`"; break;
    default: text = strerror(-r); break;
    }
    if (what)
        cli_err(cmd, "%s: %s", what, text);
    else
        cli_err(cmd, "%s", text);
    return status;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "asya-state%s%s: ", *cmd ? " " : "", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'asya-state%s%s --help'.\n", *cmd ? " " : "", cmd);
    va_end(ap);
    return CLI_USAGE;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
    extern int optind, optopt;
    const char *arg = argv[optind - 1];
    if (c == ':')
        return cli_usage_error(cmd, "option '%s' needs a value", arg);
    if (optopt && !(arg[0] == '-' && arg[1] == '-'))
        return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, "unknown option '%s'", arg);
}

void cli_help_footer(FILE *out)
{
    fprintf(out,
            "\nPATH is a path under a mount (/state/cache/x) or relative to the first mount;\n"
            "names are the shim's (decoded), so a path is the same in every command.\n"
            "\nenvironment: NATS_URL, NATS_KV_BUCKET, STATE_PREFIX, ASYA_STATE_PROXY_MOUNTS,\n"
            "STATE_MOUNT, NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER, NATS_PASSWORD,\n"
            "NATS_TOKEN, NATS_TLS_*, NATS_TIMEOUT_MS, ASYA_STATE_LOG (see asya-state(1)).\n"
            "\nexit status: 0 ok; 1 not found or conflict; 2 usage error; 3 server or\n"
            "configuration problem.\n");
}

int cli_duration(const char *s, int64_t *ns)
{
    static const struct { const char *unit; double mul; } units[] = {
        { "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
        { "m", 60e9 }, { "h", 3600e9 }, { "d", 86400e9 }, { "w", 7 * 86400e9 },
    };
    if (!s || !*s)
        return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    double total = 0;
    const char *p = s;
    while (*p) {
        /* digits[.digits] then a unit, as Go's time.ParseDuration (plus d and w) */
        const char *q = p;
        double v = 0, scale = 1;
        int digits = 0;
        while (isdigit((unsigned char)*q)) {
            v = v * 10 + (*q++ - '0');
            digits++;
        }
        if (*q == '.') {
            q++;
            while (isdigit((unsigned char)*q)) {
                scale /= 10;
                v += (*q++ - '0') * scale;
                digits++;
            }
        }
        if (!digits)
            return -EINVAL;
        size_t best = 0;
        double mul = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t ul = strlen(units[i].unit);
            if (ul > best && strncmp(q, units[i].unit, ul) == 0 &&
                (q[ul] == '\0' || isdigit((unsigned char)q[ul]) || q[ul] == '.')) {
                best = ul;
                mul = units[i].mul;
            }
        }
        if (!best)
            return -EINVAL; /* no unit, or an unknown one */
        total += v * mul;
        if (total > 9.2e18)
            return -EINVAL;
        p = q + best;
    }
    *ns = (int64_t)(total + 0.5);
    return 0;
}

void cli_duration_str(int64_t ns, char *out, size_t outsz)
{
    if (ns <= 0) {
        snprintf(out, outsz, "0s");
        return;
    }
    int64_t h = ns / INT64_C(3600000000000), m = ns / INT64_C(60000000000) % 60;
    int64_t rest = ns % INT64_C(60000000000);
    char sec[32];
    if (rest % 1000000000LL == 0)
        snprintf(sec, sizeof sec, "%" PRId64 "s", (int64_t)(rest / 1000000000LL));
    else {
        snprintf(sec, sizeof sec, "%.9f", (double)rest / 1e9);
        char *e = sec + strlen(sec);
        while (e[-1] == '0')
            *--e = '\0';
        strcat(sec, "s");
    }
    if (h)
        snprintf(out, outsz, "%" PRId64 "h%" PRId64 "m%s", h, m, sec);
    else if (m)
        snprintf(out, outsz, "%" PRId64 "m%s", m, sec);
    else
        snprintf(out, outsz, "%s", sec);
}

int cli_size(const char *s, int64_t *out)
{
    return cli_size_max(s, INT32_MAX, out);
}

int cli_size_max(const char *s, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || !isdigit((unsigned char)*s))
        return -EINVAL;
    static const struct { const char *sfx; unsigned long long mul; } units[] = {
        { "", 1 }, { "B", 1 }, { "K", 1000 }, { "KB", 1000 }, { "KiB", 1024 },
        { "M", 1000000 }, { "MB", 1000000 }, { "MiB", 1 << 20 },
        { "G", 1000000000 }, { "GB", 1000000000 }, { "GiB", 1 << 30 },
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].sfx) == 0 && (end[0] != 'b' || units[i].sfx[0] == 'B')) {
            if (v > (unsigned long long)max / units[i].mul)
                return -EINVAL;
            *out = (int64_t)(v * units[i].mul);
            return 0;
        }
    }
    return -EINVAL;
}

int cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

void cli_time_str(int64_t ns, char *out, size_t outsz)
{
    time_t t = (time_t)(ns / 1000000000LL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outsz, "-");
}

void cli_json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else if (*p < 0x80)
            fputc(*p, out);
        else {
            /* a valid UTF-8 sequence is copied; a stray byte becomes its code point */
            int n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
            int ok = n > 0;
            for (int i = 1; ok && i < n; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                fwrite(p, 1, (size_t)n, out);
                p += n - 1;
            } else {
                fprintf(out, "\\u%04x", *p);
            }
        }
    }
    fputc('"', out);
}
