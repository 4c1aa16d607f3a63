/* bucket.h: what `bucket add` (cli/bucket.c) and `bucket ls|info|rm` (cli/bucket_admin.c)
 * share: kv/'s connection for bucket administration, names, and nats.c's error texts
 * made readable. */
#ifndef ASYA_CLI_BUCKET_H
#define ASYA_CLI_BUCKET_H

#include "kv/internal.h"

/* kv/'s connection (init, then conn_acquire), for a bucket command. 0, or a negative errno
 * after one message (the configuration variable, or the server that cannot be reached). */
int bucket_connect(const char *cmd, kv_conn **out);

/* 1 when name is a valid bucket name: letters, digits, '-' and '_'. */
int bucket_name_ok(const char *name);

/* A reason for a user: nats.c's text msg without its "(file.c:123)" location when it has
 * one, else why (kv_errmap's description). Returns a static buffer. */
const char *bucket_why(const char *why, const char *msg);

#endif
