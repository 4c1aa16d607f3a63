/* path.h: lexical path handling for the hooks: normalisation and the mount-prefix test.
 *
 * Runs on every hooked call of every program, most of whose paths are not under a mount:
 * no allocation, no lock, no file-system access, no errno.
 */
#ifndef ASYA_SHIM_PATH_H
#define ASYA_SHIM_PATH_H

#include <stddef.h>

/* Lexical normalisation: when path is relative it is joined to base (an absolute,
 * normalised directory); then ".", "..", "//" and a trailing '/' are resolved lexically
 * ("/.." stays "/"). Never touches the file system, never allocates. Returns the length of
 * out (NUL-terminated), -ENOENT for an empty path, -ENAMETOOLONG when out is too small. */
int path_normalize(const char *base, const char *path, char *out, size_t outsz);

/* When the normalised path equals mount (of mountlen bytes, normalised, not "/") or starts
 * with mount + "/", returns a pointer into path at the rel part ("" for the mount itself);
 * else NULL. */
const char *path_below(const char *path, const char *mount, size_t mountlen);

/* Cheap pre-check for the hot path: 1 when an absolute path needs path_normalize before a
 * prefix comparison (contains "//", "/./", "/../", or ends in "/." or "/.." or '/'), else 0.
 * No allocation. */
int path_needs_normalize(const char *path);

#endif
