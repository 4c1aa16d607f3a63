/* config.c: the connection configuration from the environment, read once per process.
 *
 * NATS_URL (required; comma-separated; "token@" and "user:pass@" are passed to nats.c,
 * which parses them, and never printed), NATS_CREDS_FILE, NATS_NKEY_SEED_FILE,
 * NATS_TLS_CA/CERT/KEY, NATS_TIMEOUT_MS (default 5000), and as the nats tools read them
 * NATS_USER with NATS_PASSWORD, or NATS_TOKEN (credentials in NATS_URL win over them: nats.c
 * prefers the URL's). Password and token are registered with log_secret, so no log line
 * ever shows them. A bad variable gives one stderr
 * line naming it and -EINVAL, remembered: later calls return the same result silently.
 * The result is written once under a mutex and read-only afterwards.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "kv/internal.h"

static pthread_mutex_t cfg_mu = PTHREAD_MUTEX_INITIALIZER;
static int cfg_state = 1;       /* 1: not read yet; else the result (0 or -EINVAL) */
static kv_config cfg;

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

/* One URL: [scheme://][cred@]host[:port]; scheme nats, tls, ws or wss. */
static int url_ok(const char *u)
{
    const char *host = u;
    const char *sep = strstr(u, "://");
    if (sep) {
        size_t n = (size_t)(sep - u);
        if (!((n == 4 && strncmp(u, "nats", 4) == 0) || (n == 3 && strncmp(u, "tls", 3) == 0) ||
              (n == 2 && strncmp(u, "ws", 2) == 0) || (n == 3 && strncmp(u, "wss", 3) == 0)))
            return 0;
        host = sep + 3;
    }
    const char *at = strrchr(host, '@');
    if (at)
        host = at + 1;
    if (*host == '\0' || *host == ':' || *host == '/')
        return 0;
    const char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']')) {
        if (colon[1] == '\0')
            return 0;
        for (const char *p = colon + 1; *p && *p != '/'; p++)
            if (!isdigit((unsigned char)*p))
                return 0;
    }
    for (const char *p = host; *p; p++)
        if (isspace((unsigned char)*p))
            return 0;
    return 1;
}

static int bad(const char *var, const char *why)
{
    log_at(LOG_ERROR, "configuration: %s %s", var, why);
    return -EINVAL;
}

static int split_urls(const char *v)
{
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    char *copy = strdup(v);
    const char **urls = calloc(n, sizeof *urls);
    if (!copy || !urls) {
        free(copy);
        free(urls);
        return -ENOMEM;
    }
    int k = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (!url_ok(tok))
            break;
        urls[k++] = tok;
    }
    if ((size_t)k != n) {
        free(copy);
        free(urls);
        return bad("NATS_URL", "is malformed (want nats://[user:pass@|token@]host:port, "
                               "comma-separated)");
    }
    /* copy is kept: cfg.urls point into it for the life of the process.
     * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    cfg.urls = urls;
    cfg.nurls = k;
    return 0;
}

static int readable(const char *var, const char **dst)
{
    *dst = env_or_null(var);
    if (*dst && access(*dst, R_OK) != 0) {
        int e = errno;
        log_at(LOG_ERROR, "configuration: %s: cannot read %s: %s", var, *dst, strerror(e));
        return -EINVAL;
    }
    return 0;
}

/* A .creds file must hold a user JWT (a line "eyJ...x.y.z") and an NKey seed (a 58-character
 * base32 word starting with 'S'), as nsc writes it; nats.c only reads it at connect time and
 * then fails with a bare "Error". Contents are wiped, never logged. */
static int creds_ok(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return bad("NATS_CREDS_FILE", "cannot be opened");
    char line[8192];
    int jwt = 0, seed = 0, read_error = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        size_t n = strcspn(p, " \t\r\n");
        size_t dots = 0;
        for (size_t i = 0; i < n; i++)
            dots += p[i] == '.';
        if (n > 20 && strncmp(p, "eyJ", 3) == 0 && dots == 2)
            jwt = 1;
        if (n == 58 && p[0] == 'S' && strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == 58)
            seed = 1;
    }
    read_error = ferror(f);
    explicit_bzero(line, sizeof line);
    fclose(f);
    if (read_error)
        return bad("NATS_CREDS_FILE", "cannot be read (a directory?)");
    if (!jwt || !seed)
        return bad("NATS_CREDS_FILE", "holds no user JWT and NKey seed (want an nsc .creds file)");
    return 0;
}

static int load(void)
{
    const char *url = env_or_null("NATS_URL");
    if (!url)
        return bad("NATS_URL", "is not set (want nats://host:4222)");
    log_redact_url(url, cfg.url_safe, sizeof cfg.url_safe);
    int r = split_urls(url);
    if (r < 0)
        return r;

    cfg.timeout_ms = 5000;
    const char *t = env_or_null("NATS_TIMEOUT_MS");
    if (t) {
        char *end = NULL;
        errno = 0;
        long long ms = strtoll(t, &end, 10);
        if (errno || *end || ms <= 0 || ms > 3600000)
            return bad("NATS_TIMEOUT_MS", "is not a number of milliseconds in 1..3600000");
        cfg.timeout_ms = ms;
    }
    if ((r = readable("NATS_CREDS_FILE", &cfg.creds_file)) < 0 ||
        (r = readable("NATS_NKEY_SEED_FILE", &cfg.seed_file)) < 0 ||
        (r = readable("NATS_TLS_CA", &cfg.tls_ca)) < 0 ||
        (r = readable("NATS_TLS_CERT", &cfg.tls_cert)) < 0 ||
        (r = readable("NATS_TLS_KEY", &cfg.tls_key)) < 0)
        return r;
    if (cfg.creds_file && (r = creds_ok(cfg.creds_file)) < 0)
        return r;
    if (cfg.seed_file) {
        /* Checked here, once: a bad seed is configuration, reported once (logs its line). */
        char pub[64];
        if (kv_nkey_public(cfg.seed_file, pub, sizeof pub) < 0)
            return -EINVAL;
    }
    if (cfg.creds_file && cfg.seed_file)
        return bad("NATS_NKEY_SEED_FILE", "is set together with NATS_CREDS_FILE (use one)");
    cfg.user = env_or_null("NATS_USER");
    cfg.password = env_or_null("NATS_PASSWORD");
    cfg.token = env_or_null("NATS_TOKEN");
    log_secret(cfg.password);
    log_secret(cfg.token);
    if (cfg.password && !cfg.user)
        return bad("NATS_USER", "is not set but NATS_PASSWORD is");
    if (cfg.token && cfg.user)
        return bad("NATS_TOKEN", "is set together with NATS_USER (use one)");
    if ((cfg.user || cfg.token) && (cfg.creds_file || cfg.seed_file))
        return bad(cfg.user ? "NATS_USER" : "NATS_TOKEN", "is set together with "
                   "NATS_CREDS_FILE or NATS_NKEY_SEED_FILE (use one way to log in)");
    if (cfg.tls_cert && !cfg.tls_key)
        return bad("NATS_TLS_KEY", "is not set but NATS_TLS_CERT is");
    if (cfg.tls_key && !cfg.tls_cert)
        return bad("NATS_TLS_CERT", "is not set but NATS_TLS_KEY is");
    return 0;
}

int kv_config_get(const kv_config **out)
{
    pthread_mutex_lock(&cfg_mu);
    if (cfg_state == 1)
        cfg_state = load();
    int r = cfg_state;
    pthread_mutex_unlock(&cfg_mu);
    *out = r == 0 ? &cfg : NULL;
    return r;
}

int64_t kv_timeout_ms(void)
{
    const kv_config *cfg;
    return kv_config_get(&cfg) == 0 ? cfg->timeout_ms : 5000;
}
