/* serve.h: the parts of `asya-state serve` shared between cli/serve*.c (not a public API).
 *
 *   serve.c        the command: configuration, the kv mount, the Unix socket, the daemon,
 *                  signals and the graceful stop;
 *   serve_http.c   one HTTP request: body accumulation, routing, responses, errno -> HTTP;
 *   serve_keys.c   wire keys and query strings (URL decoding, validation) and listings.
 *
 * Every function returns 0 or a negative errno unless it says otherwise; none sets errno.
 */
#ifndef ASYA_CLI_SERVE_H
#define ASYA_CLI_SERVE_H

#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>
#include <microhttpd.h>

#include "kv/kv.h"

/* Shared by every connection thread. ops, mount and max_body are set before the daemon starts
 * and never change; stopping and in_flight are atomics (no lock). */
struct serve_ctx {
    const kv_ops *ops;
    kv_mount *mount;
    size_t max_body;        /* largest PUT body accepted before kv is asked (413 beyond) */
    atomic_int stopping;    /* 1 once SIGTERM/SIGINT arrived: new requests get 503 */
    atomic_long in_flight;  /* requests begun and not yet completed */
};

/* serve_http.c: the libmicrohttpd callbacks; cls is the struct serve_ctx. */
void *serve_req_begin(void *cls, const char *uri, struct MHD_Connection *c);
enum MHD_Result serve_access(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls);
void serve_req_done(void *cls, struct MHD_Connection *c, void **req_cls,
                    enum MHD_RequestTerminationCode why);

/* serve_keys.c */

/* Percent-decodes n bytes of s into a new NUL-terminated string *out (caller frees); '+' is
 * a space when plus_is_space (query strings). -EINVAL for a bad escape or a NUL byte. */
int serve_url_decode(const char *s, size_t n, int plus_is_space, char **out);

/* Finds parameter name in the raw query string q (may be NULL) and decodes its value into
 * *out (caller frees). -ENOENT when absent, -EINVAL when badly encoded. */
int serve_query_get(const char *q, const char *name, char **out);

/* Turns a decoded wire key into a kv rel, in place: a single trailing '/' is removed and
 * *is_dir set (1: the key names a directory); the rest must be non-empty '/'-separated
 * segments, none empty, "." or "..". -EINVAL otherwise. */
int serve_key_rel(char *key, int *is_dir);

/* The listing of prefix P as Asya's connectors give it: keys are full keys below the mount,
 * prefixes full "dir/" entries; one level when recursive is 0 (delimiter "/"), every key
 * below when 1. Both arrays sorted. *out is {"keys": [...], "prefixes": [...]} (caller
 * json_decref()s). -EINVAL for a prefix with an empty, "." or ".." directory segment;
 * -EILSEQ when a name is not UTF-8 (JSON cannot carry it; never silently left out);
 * a prefix below no directory lists nothing. */
int serve_list(const kv_ops *ops, kv_mount *m, const char *prefix, int recursive,
               json_t **out);

#endif
