/* browse.h: what the CLI commands share about the mount table (cli/browse.c): building it
 * from the environment as the shim does, and resolving a command-line PATH to a kv mount. */
#ifndef ASYA_CLI_BROWSE_H
#define ASYA_CLI_BROWSE_H

#include "kv/kv.h"
#include "shim/mounts.h"

/* mounts_parse() on the process environment. Returns its count of problems (each already
 * reported on stderr). */
int browse_mounts_load(struct mount_table *t);

/* The backend, initialised once for the CLI (revision memory per process). 0 or a negative
 * errno after a message. */
int browse_ops(const kv_ops **out);

/* Resolves PATH: an absolute path under a mount (/state/cache/x), or a path relative to the
 * first (default) mount; NULL is that mount's root. *m gets a kv mount, rel (of relsz bytes)
 * the normalised part below it. 0, or a negative errno after a message saying what to do. */
int browse_resolve(const struct mount_table *t, const char *path, kv_mount **m, char *rel,
                   size_t relsz);

#endif
