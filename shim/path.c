/* path.c: lexical path normalisation and the mount-prefix test (see path.h).
 *
 * Runs on every hooked call, so: no allocation, no lock, no system call, no errno.
 * out must not overlap base or path. path_normalize() builds the result in place in out,
 * keeping the invariant that out[0..o) is "/" or "/seg/.../seg" (no trailing '/'); a ".."
 * pops the last segment and never climbs above "/". Because segments are appended before a
 * later ".." removes them, an out buffer smaller than an intermediate result gives
 * -ENAMETOOLONG even when the final result would fit (out is normally PATH_MAX bytes).
 */
#include "shim/path.h"

#include <errno.h>
#include <string.h>

/* Applies one segment (seg, len: no '/') to out[0..*o). */
static int path_push(char *out, size_t outsz, size_t *o, const char *seg, size_t len)
{
    if (len == 0 || (len == 1 && seg[0] == '.'))
        return 0;
    if (len == 2 && seg[0] == '.' && seg[1] == '.') {
        size_t n = *o;
        while (n > 1 && out[n - 1] != '/')
            n--;
        if (n > 1)
            n--; /* the '/' before the popped segment; the root's own '/' stays */
        *o = n;
        return 0;
    }
    size_t sep = *o > 1 ? 1 : 0;
    if (*o + sep + len + 1 > outsz)
        return -ENAMETOOLONG;
    if (sep)
        out[(*o)++] = '/';
    memcpy(out + *o, seg, len);
    *o += len;
    return 0;
}

/* Applies every segment of s to out[0..*o). */
static int path_push_all(char *out, size_t outsz, size_t *o, const char *s)
{
    while (*s) {
        while (*s == '/')
            s++;
        const char *seg = s;
        while (*s && *s != '/')
            s++;
        int r = path_push(out, outsz, o, seg, (size_t)(s - seg));
        if (r < 0)
            return r;
    }
    return 0;
}

int path_normalize(const char *base, const char *path, char *out, size_t outsz)
{
    if (!path || !*path)
        return -ENOENT;
    if (outsz < 2)
        return -ENAMETOOLONG;
    size_t o = 1;
    out[0] = '/';
    int r = 0;
    if (path[0] != '/' && base)
        r = path_push_all(out, outsz, &o, base);
    if (r == 0)
        r = path_push_all(out, outsz, &o, path);
    if (r < 0) {
        out[0] = '\0';
        return r;
    }
    out[o] = '\0';
    return (int)o;
}

const char *path_below(const char *path, const char *mount, size_t mountlen)
{
    /* strncmp stops at path's NUL, so a short path is never read past its end. */
    if (path[0] != mount[0] || strncmp(path, mount, mountlen) != 0)
        return NULL;
    if (path[mountlen] == '\0')
        return path + mountlen;
    if (path[mountlen] == '/')
        return path + mountlen + 1;
    return NULL; /* "/state2" is not below "/state" */
}

/* A relative (or empty) path always needs path_normalize, to be joined to the base. */
int path_needs_normalize(const char *path)
{
    if (path[0] != '/')
        return 1;
    for (const char *p = path; (p = strchr(p, '/')) != NULL; p++) {
        const char *s = p + 1;
        if (*s == '/' || *s == '\0')
            return 1;
        if (*s == '.') {
            if (s[1] == '.')
                s++;
            if (s[1] == '/' || s[1] == '\0')
                return 1;
        }
    }
    return 0;
}
