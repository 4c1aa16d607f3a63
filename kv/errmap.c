/* errmap.c: the one table from nats.c failures to the contract's errno (SPEC "Errors").
 *
 * nats.c 3.4.1 reports a failure three ways: a JetStream error code (when the call takes a
 * jsErrCode), the thread's last error text (nats_GetLastError), and the natsStatus. Rows are
 * tried in order, so the most specific evidence wins: codes, then texts, then statuses.
 * A missing stream (bucket) is -EIO; callers that know the bucket name say so in their log.
 */
#include <errno.h>
#include <string.h>

#include "kv/internal.h"

enum by { BY_CODE, BY_TEXT, BY_STATUS };

static const struct errmap_row {
    enum by by;
    int code;               /* jsErrCode or natsStatus */
    const char *text;       /* substring of the last error text, case-insensitive */
    int err;
    const char *why;
} rows[] = {
    { BY_CODE, 10071, NULL, -EEXIST, "revision conflict (wrong last sequence)" },
    { BY_CODE, 10054, NULL, -EFBIG, "value larger than the bucket allows" },
    { BY_CODE, 10059, NULL, -EIO, "bucket (stream) not found" },
    { BY_CODE, 10037, NULL, -ENOENT, "no such key" },
    /* A full bucket or store is a full disk (issue 13, case 10), with the server's reason.
     * By text for a stream's own limits: their code, 10077, is any store failure. */
    { BY_CODE, 10023, NULL, -ENOSPC,
      "server's JetStream store full (insufficient resources)" },
    { BY_CODE, 10027, NULL, -ENOSPC,
      "account's JetStream storage limit reached (resource limits exceeded)" },
    { BY_TEXT, 0, "wrong last sequence", -EEXIST, "revision conflict (wrong last sequence)" },
    { BY_TEXT, 0, "maximum payload", -EFBIG, "value larger than the server's max payload" },
    { BY_TEXT, 0, "message size exceeds maximum", -EFBIG, "value larger than the bucket allows" },
    { BY_TEXT, 0, "exceeds maximum", -EFBIG, "value larger than the bucket or server allows" },
    { BY_TEXT, 0, "maximum bytes exceeded", -ENOSPC,
      "bucket full (its max_bytes: maximum bytes exceeded)" },
    /* KV buckets set no message limit; nats-server before 2.9.21 also answers this from a
     * replicated stream whose replicas drifted after a restart (nats-server #4365) */
    { BY_TEXT, 0, "maximum messages exceeded", -ENOSPC,
      "the stream refused the message (maximum messages exceeded)" },
    { BY_TEXT, 0, "insufficient resources", -ENOSPC,
      "server's JetStream store full (insufficient resources)" },
    { BY_TEXT, 0, "resource limits exceeded", -ENOSPC,
      "account's JetStream storage limit reached (resource limits exceeded)" },
    { BY_TEXT, 0, "authorization violation", -EACCES, "authorisation refused" },
    { BY_TEXT, 0, "authentication", -EACCES, "authentication failed" },
    { BY_TEXT, 0, "permissions violation", -EACCES, "permission denied by the server" },
    { BY_TEXT, 0, "stream not found", -EIO, "bucket (stream) not found" },
    { BY_TEXT, 0, "connection refused", -ECONNREFUSED, "connection refused" },
    { BY_STATUS, NATS_NOT_FOUND, NULL, -ENOENT, "no such key" },
    { BY_STATUS, NATS_MAX_PAYLOAD, NULL, -EFBIG, "value larger than the server's max payload" },
    { BY_STATUS, NATS_NO_SERVER, NULL, -ECONNREFUSED, "no server available" },
    { BY_STATUS, NATS_TIMEOUT, NULL, -ETIMEDOUT, "request timed out" },
    { BY_STATUS, NATS_NOT_PERMITTED, NULL, -EACCES, "not permitted" },
    { BY_STATUS, NATS_CONNECTION_AUTH_FAILED, NULL, -EACCES, "authentication failed" },
    { BY_STATUS, NATS_CONNECTION_CLOSED, NULL, -ECONNREFUSED, "connection closed" },
    { BY_STATUS, NATS_CONNECTION_DISCONNECTED, NULL, -ECONNREFUSED, "disconnected" },
    { BY_STATUS, NATS_STALE_CONNECTION, NULL, -ECONNREFUSED, "stale connection" },
    /* Nobody serves the bucket's stream right now (a replicated stream electing a leader):
     * as for an unreachable server, the request did not land and a retry may succeed. */
    { BY_STATUS, NATS_NO_RESPONDERS, NULL, -ECONNREFUSED,
      "JetStream not available (no responders)" },
    { BY_STATUS, NATS_SSL_ERROR, NULL, -EIO, "TLS error" },
    { BY_STATUS, NATS_SECURE_CONNECTION_REQUIRED, NULL, -EIO, "server requires TLS" },
    { BY_STATUS, NATS_SECURE_CONNECTION_WANTED, NULL, -EIO, "server does not offer TLS" },
    { BY_STATUS, NATS_NO_MEMORY, NULL, -ENOMEM, "out of memory" },
};

int kv_errmap(natsStatus s, jsErrCode jerr, const char **why)
{
    /* The last error text is per thread and outlives the call that set it: trust it only
     * when it belongs to this failure's status. */
    natsStatus ts = NATS_OK;
    const char *text = nats_GetLastError(&ts);
    if (ts != s)
        text = NULL;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct errmap_row *r = &rows[i];
        int hit = (r->by == BY_CODE && jerr != 0 && r->code == (int)jerr) ||
                  (r->by == BY_TEXT && text && strcasestr(text, r->text)) ||
                  (r->by == BY_STATUS && r->code == (int)s);
        if (hit) {
            if (why)
                *why = r->why;
            return r->err;
        }
    }
    if (why)
        *why = natsStatus_GetText(s);
    return -EIO;
}

int kv_outcome_unknown(natsStatus s)
{
    return s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED ||
           s == NATS_CONNECTION_DISCONNECTED || s == NATS_IO_ERROR ||
           s == NATS_STALE_CONNECTION;
}
