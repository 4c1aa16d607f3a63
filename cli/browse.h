/* browse.h: what the CLI commands share about the mount table (cli/browse.c): building it
 * from the environment as the shim does, and resolving a command-line PATH to a kv mount. */
#ifndef ASYA_CLI_BROWSE_H
#define ASYA_CLI_BROWSE_H

#include <limits.h>

#include "kv/kv.h"
#include "shim/mounts.h"

/* mounts_parse() on the process environment. Returns its count of problems (each already
 * reported on stderr, or held: see cli_hold_log). */
int browse_mounts_load(struct mount_table *t);

/* The backend, initialised once for the CLI (revision memory per process). 0 or a negative
 * errno after kv/ logged the variable. */
int browse_ops(const kv_ops **out);

/* A command-line PATH resolved. */
typedef struct browse_path {
    const struct mount *mt;  /* the shim's mount it is under */
    kv_mount *m;             /* its kv handle */
    char rel[PATH_MAX];      /* the normalised part below the mount ("" for its root) */
    char shown[PATH_MAX];    /* the absolute path, as the shim sees it (for messages) */
} browse_path;

/* Resolves PATH: an absolute path under a mount (/state/cache/x), or a path relative to the
 * first (default) mount; NULL is that mount's root. 0, or an exit status (CLI_*) after one
 * message saying what to do (cmd names the command in it). */
int browse_resolve(const char *cmd, const struct mount_table *t, const char *path,
                   browse_path *out);

/* The absolute path of rel under mt ("/state" + "/" + rel), into out. */
void browse_join(const struct mount *mt, const char *rel, char *out, size_t outsz);

#endif
