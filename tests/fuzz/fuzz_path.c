/* fuzz_path.c: libFuzzer target for shim/path.c.
 *
 * Input: base '\0' path (the base is made absolute and normalised first; a missing path
 * uses the whole input). Checks that the result is canonical (what path_needs_normalize
 * says needs no normalising), idempotent, fits the buffer given, and that path_below agrees
 * with a plain prefix test. Output buffers are exact-size heap blocks for ASan. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/path.h"

/* The result's shape: "/" or "/seg(/seg)*" with no empty, "." or ".." segment. */
static int fz_canonical(const char *p)
{
    if (p[0] != '/')
        return 0;
    if (p[1] == '\0')
        return 1;
    for (const char *s = p; *s; ) {
        s++; /* past '/' */
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    size_t outsz = data[0] < 16 ? data[0] : 8192 + 2;
    data++, size--;
    char *in = malloc(size + 2);
    memcpy(in, data, size);
    in[size] = '\0';
    in[size + 1] = '\0';
    const char *path = in;
    const char *sep = memchr(in, '\0', size);
    char base[8192 + 2];
    if (sep) {
        if (path_normalize("/", in[0] ? in : "/", base, sizeof base) < 0)
            abort();
        path = sep + 1;
    } else {
        strcpy(base, "/cwd");
    }

    char *out = malloc(outsz ? outsz : 1);
    int n = path_normalize(base, path, out, outsz);
    if (!*path) {
        if (n != -ENOENT)
            abort();
    } else if (n == -ENAMETOOLONG) {
        if (outsz > 8192)
            abort(); /* the big buffer always holds base + path */
    } else {
        if (n < 1 || (size_t)n >= outsz || strlen(out) != (size_t)n || !fz_canonical(out))
            abort();
        if (path_needs_normalize(out) != (n == 1))
            abort();
        char *again = malloc((size_t)n + 1);
        if (path_normalize("/elsewhere", out, again, (size_t)n + 1) != n ||
            strcmp(again, out) != 0)
            abort();
        free(again);
        /* path_below against every proper prefix ending at a segment boundary */
        for (int i = 2; i <= n; i++) {
            if (i < n && out[i] != '/')
                continue;
            const char *rel = path_below(out, out, (size_t)i);
            if (!rel || rel != out + i + (i < n))
                abort();
        }
        if (path_below(out, "/zz-not-a-prefix", 16) && strncmp(out, "/zz-not-a-prefix", 16))
            abort();
        if (path[0] == '/' && !path_needs_normalize(path) && strcmp(path, out) != 0)
            abort(); /* the pre-check said it was already normalised */
    }
    free(out);
    free(in);
    return 0;
}
