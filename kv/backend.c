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
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static unsigned init_flags;
static int init_result;

static void do_init(void)
{
    revmem_init(init_flags & KV_REVS_PER_PROCESS);
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

static int be_get(kv_mount *m, const char *rel, kv_value *out)
{
    int saved = errno;
    ensure_init();
    memset(out, 0, sizeof *out);
    int r = ops_get(m, rel, out);
    errno = saved;
    return r;
}

static int be_stat(kv_mount *m, const char *rel, kv_stat *out)
{
    int saved = errno;
    ensure_init();
    int r = ops_stat(m, rel, out);
    errno = saved;
    return r;
}

static int be_commit(kv_mount *m, const char *rel, const void *data, size_t len,
                     unsigned flags, uint64_t *rev_out)
{
    int saved = errno;
    ensure_init();
    int r = ops_commit(m, rel, data, len, flags, rev_out);
    errno = saved;
    return r;
}

static int be_remove(kv_mount *m, const char *rel)
{
    int saved = errno;
    ensure_init();
    int r = ops_remove(m, rel);
    errno = saved;
    return r;
}

static int be_list(kv_mount *m, const char *rel, kv_list *out)
{
    int saved = errno;
    ensure_init();
    int r = dirs_list(m, rel, out);
    errno = saved;
    return r;
}

static int be_mkdir(kv_mount *m, const char *rel)
{
    int saved = errno;
    ensure_init();
    int r = dirs_mkdir(m, rel);
    errno = saved;
    return r;
}

static int be_rmdir(kv_mount *m, const char *rel)
{
    int saved = errno;
    ensure_init();
    int r = dirs_rmdir(m, rel);
    errno = saved;
    return r;
}

static int be_version(kv_mount *m, const char *rel, uint64_t *rev)
{
    int saved = errno;
    ensure_init();
    int r = ops_version(m, rel, rev);
    errno = saved;
    return r;
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

static void be_release_value(kv_value *v)
{
    if (!v)
        return;
    free(v->data);
    v->data = NULL;
    v->len = 0;
}

static void be_release_list(kv_list *l)
{
    dirs_release_list(l);
}

static void be_after_fork_child(void)
{
    int saved = errno;
    conn_after_fork_child();
    errno = saved;
}

static const kv_ops table = {
    .abi = KV_ABI,
    .init = be_init,
    .mount = be_mount,
    .get = be_get,
    .stat = be_stat,
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
};

__attribute__((visibility("default"))) const kv_ops *kv_backend(void)
{
    return &table;
}
