/* backend.c: the kv_ops table (kv/kv.h) and the library's only exported symbol.
 *
 * Each entry point keeps errno as the caller left it (nats.c and libc calls below may
 * change it; kv.h promises they do not) and makes sure kv_init's configuration was read.
 * Mount handles are never freed: they live until exit, as kv.h says.
 * The read cache (KV_MOUNT_WATCH) lives in cache.c; ops.c asks it before a direct Get.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "kv/internal.h"
#include "kv/keycodec.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static unsigned init_flags;
static int init_result;

static void do_init(void)
{
    revmem_init(init_flags & (KV_REVS_PER_PROCESS | KV_REVS_PER_KEY));
    const kv_config *cfg;
    init_result = kv_config_get(&cfg);
}

static int be_init(unsigned flags)
{
    int saved = errno;
    init_flags = flags;
    pthread_once(&init_once, do_init);
    errno = saved;
    return init_result;
}

static void ensure_init(void)
{
    pthread_once(&init_once, do_init);
}

/* Every traced entry point: keeps errno as the caller left it and, at ASYA_STATE_LOG=debug,
 * writes one line per operation: operation, path below the mount, key, revision, result,
 * time taken. */
struct call {
    int saved_errno;
    struct timespec t0;
};

static void call_begin(struct call *c)
{
    c->saved_errno = errno;
    ensure_init();
    c->t0 = (struct timespec){ 0, 0 }; /* call_end reads it whenever debug is on by then */
    if (log_enabled(LOG_DEBUG))
        clock_gettime(CLOCK_MONOTONIC, &c->t0);
}

static int call_end(struct call *c, const char *op, kv_mount *m, const char *rel, uint64_t rev,
                    int r)
{
    if (log_enabled(LOG_DEBUG)) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - c->t0.tv_sec) * 1e3 +
                    (double)(t1.tv_nsec - c->t0.tv_nsec) / 1e6;
        char key[KV_KEY_MAX + 2];
        if (ops_key(m, rel, 0, key, sizeof key) < 0)
            snprintf(key, sizeof key, "(none)");
        log_at(LOG_DEBUG, "%s '%s' key %s/%s rev %llu: %s (%.3f ms)", op, rel, m->bucket, key,
               (unsigned long long)rev, r == 0 ? "ok" : strerror(-r), ms);
    }
    errno = c->saved_errno;
    return r;
}

static int bucket_name_ok(const char *b)
{
    if (!b || !*b)
        return 0;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

static int be_mount(const char *bucket, const char *prefix, unsigned flags, kv_mount **out)
{
    int saved = errno;
    ensure_init();
    int r = 0;
    kv_mount *m = NULL;
    if (!bucket_name_ok(bucket)) {
        log_at(LOG_ERROR, "NATS_KV_BUCKET '%s' is not a valid bucket name ([A-Za-z0-9_-]+)",
               bucket ? bucket : "");
        r = -EINVAL;
    } else if (prefix && *prefix && !key_valid(prefix, strlen(prefix))) {
        log_at(LOG_ERROR, "STATE_PREFIX '%.64s' is not a valid key prefix (tokens of "
               "[-/_=A-Za-z0-9] joined by '.')", prefix);
        r = -EINVAL;
    } else if ((m = calloc(1, sizeof *m)) == NULL || (m->bucket = strdup(bucket)) == NULL ||
               (prefix && *prefix && (m->prefix = strdup(prefix)) == NULL)) {
        if (m)
            free(m->bucket);
        free(m);
        r = -ENOMEM;
    } else {
        m->flags = flags;
        *out = m;
    }
    errno = saved;
    return r;
}

static int be_bind(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = ops_bind(m, rel);
    return call_end(&c, "bind", m, rel, 0, r);
}

static int be_limit(kv_mount *m, const char *rel, uint64_t *max)
{
    struct call c;
    call_begin(&c);
    int r = ops_limit(m, rel, max);
    return call_end(&c, "limit", m, rel, 0, r);
}

static int be_get(kv_mount *m, const char *rel, kv_value *out)
{
    struct call c;
    call_begin(&c);
    memset(out, 0, sizeof *out);
    int r = ops_get(m, rel, out);
    return call_end(&c, "get", m, rel, r < 0 ? 0 : out->rev, r);
}

static int be_stat(kv_mount *m, const char *rel, kv_stat *out)
{
    struct call c;
    call_begin(&c);
    int r = ops_stat(m, rel, out);
    return call_end(&c, "stat", m, rel, r < 0 ? 0 : out->rev, r);
}

static int be_isdir(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = ops_isdir(m, rel);
    int logged = call_end(&c, "isdir", m, rel, (uint64_t)(r > 0), r < 0 ? r : 0);
    return logged < 0 ? logged : r;
}

static int be_commit(kv_mount *m, const char *rel, const void *data, size_t len,
                     unsigned flags, uint64_t *rev_out)
{
    struct call c;
    call_begin(&c);
    int r = ops_commit(m, rel, data, len, flags, rev_out);
    return call_end(&c, "commit", m, rel, r < 0 || !rev_out ? 0 : *rev_out, r);
}

static int be_remove(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = ops_remove(m, rel);
    return call_end(&c, "remove", m, rel, 0, r);
}

static int be_list(kv_mount *m, const char *rel, kv_list *out)
{
    struct call c;
    call_begin(&c);
    int r = dirs_list(m, rel, out);
    return call_end(&c, "list", m, rel, 0, r);
}

static int be_mkdir(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = dirs_mkdir(m, rel);
    return call_end(&c, "mkdir", m, rel, 0, r);
}

static int be_rmdir(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = dirs_rmdir(m, rel);
    return call_end(&c, "rmdir", m, rel, 0, r);
}

static int be_parent(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = dirs_parent(m, rel);
    return call_end(&c, "parent", m, rel, 0, r);
}

static int be_mkparents(kv_mount *m, const char *rel)
{
    struct call c;
    call_begin(&c);
    int r = dirs_mkparents(m, rel);
    return call_end(&c, "mkparents", m, rel, 0, r);
}

static int be_version(kv_mount *m, const char *rel, uint64_t *rev)
{
    struct call c;
    call_begin(&c);
    int r = ops_version(m, rel, rev);
    return call_end(&c, "version", m, rel, r < 0 ? 0 : *rev, r);
}

static int be_recall(kv_mount *m, const char *rel, uint64_t *rev)
{
    int saved = errno;
    ensure_init();
    char key[KV_KEY_MAX + 2];
    int r = ops_key(m, rel, 0, key, sizeof key);
    if (r == 0)
        r = revmem_recall(m, key, rev);
    errno = saved;
    return r;
}

static void be_remember(kv_mount *m, const char *rel, uint64_t rev)
{
    int saved = errno;
    ensure_init();
    char key[KV_KEY_MAX + 2];
    if (ops_key(m, rel, 0, key, sizeof key) == 0)
        revmem_remember(m, key, rev);
    errno = saved;
}

/* A value is either held by the message it arrived in (owner, a natsMsg: lane.c) or a block
 * of its own (the read cache's copies, lane.c's copies of a kvEntry's). */
static void be_release_value(kv_value *v)
{
    if (v)
        lane_release(v);
}

static void be_release_list(kv_list *l)
{
    dirs_release_list(l);
}

static void be_after_fork_child(void)
{
    int saved = errno;
    conn_after_fork_child();
    dirs_after_fork_child();
    errno = saved;
}

static int be_scan(kv_mount *m, const char *rel_prefix,
                   int (*fn)(void *arg, const char *rel, const void *data, size_t len),
                   void *arg)
{
    struct call c;
    call_begin(&c);
    int r = scan_values(m, rel_prefix, fn, arg);
    return call_end(&c, "scan", m, rel_prefix, 0, r);
}

static int be_key(kv_mount *m, const char *rel, int marker, char *out, size_t outsz)
{
    int saved = errno;
    ensure_init();
    int r = watch_key(m, rel, marker, out, outsz);
    errno = saved;
    return r;
}

static int be_history(kv_mount *m, const char *rel,
                      int (*fn)(void *arg, const kv_event *ev), void *arg)
{
    struct call c;
    call_begin(&c);
    int r = watch_history(m, rel, fn, arg);
    return call_end(&c, "history", m, rel, 0, r);
}

static int be_watch(kv_mount *m, const char *rel, unsigned flags,
                    int (*fn)(void *arg, const kv_event *ev), void *arg)
{
    struct call c;
    call_begin(&c);
    int r = watch_run(m, rel, flags, fn, arg);
    return call_end(&c, "watch", m, rel, 0, r);
}

static const kv_ops table = {
    .abi = KV_ABI,
    .init = be_init,
    .mount = be_mount,
    .bind = be_bind,
    .limit = be_limit,
    .get = be_get,
    .stat = be_stat,
    .isdir = be_isdir,
    .commit = be_commit,
    .remove = be_remove,
    .list = be_list,
    .mkdir = be_mkdir,
    .rmdir = be_rmdir,
    .version = be_version,
    .recall = be_recall,
    .remember = be_remember,
    .release_value = be_release_value,
    .release_list = be_release_list,
    .after_fork_child = be_after_fork_child,
    .parent = be_parent,
    .mkparents = be_mkparents,
    .scan = be_scan,
    .key = be_key,
    .history = be_history,
    .watch = be_watch,
};

__attribute__((visibility("default"))) const kv_ops *kv_backend(void)
{
    return &table;
}
