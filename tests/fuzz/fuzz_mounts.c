/* fuzz_mounts.c: libFuzzer target for shim/mounts.c.
 *
 * Input: up to five '\0'-separated fields, ASYA_STATE_PROXY_MOUNTS, STATE_MOUNT,
 * NATS_KV_BUCKET, STATE_PREFIX, STATE_READ_CACHE (a field of exactly "-" means unset).
 * Checks the table's invariants: 1..MOUNTS_MAX mounts, paths normalised and never "/",
 * errors only -EIO or -ENOTSUP, a usable mount has a bucket and shares no key space with
 * another usable one, no problem reported means no mount failing, mounts_find finds each
 * mount's own path. Run with -close_fd_mask=2: the parser reports problems on stderr. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/mounts.h"
#include "shim/path.h"

static int fz_overlap(const struct mount *a, const struct mount *b)
{
    if (strcmp(a->bucket, b->bucket) != 0)
        return 0;
    if (!a->prefix || !b->prefix)
        return 1;
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    if (la > lb) {
        const struct mount *t = a;
        a = b, b = t;
        size_t tl = la;
        la = lb, lb = tl;
    }
    return strncmp(a->prefix, b->prefix, la) == 0 && (b->prefix[la] == '\0' || b->prefix[la] == '.');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    const char *f[5] = { NULL, NULL, NULL, NULL, NULL };
    const char *p = in;
    for (int i = 0; i < 5 && p <= in + size; i++) {
        f[i] = strcmp(p, "-") == 0 ? NULL : p;
        p += strlen(p) + 1;
    }
    struct mount_env env = { f[0], f[1], f[2], f[3], f[4] };
    struct mount_table t;
    int r = mounts_parse(&env, &t);
    if (r < 0 || t.n < 1 || t.n > MOUNTS_MAX)
        abort();
    for (int i = 0; i < t.n; i++) {
        const struct mount *m = &t.m[i];
        if (!m->name || !m->path || m->path[0] != '/' || m->pathlen < 2 ||
            m->pathlen != strlen(m->path) || path_needs_normalize(m->path))
            abort();
        if (m->err != 0 && m->err != -EIO && m->err != -ENOTSUP)
            abort();
        if (r == 0 && m->err != 0)
            abort();
        if (m->err == 0 && !m->bucket)
            abort();
        for (int j = 0; j < i; j++)
            if (m->err == 0 && t.m[j].err == 0 && fz_overlap(m, &t.m[j]))
                abort();
        const char *rel = NULL;
        const struct mount *found = mounts_find(&t, m->path, &rel);
        if (!found || found > m || !rel)
            abort();
        if (found == m && *rel)
            abort();
    }
    mounts_free(&t);
    if (t.n != 0)
        abort();
    free(in);
    return 0;
}
