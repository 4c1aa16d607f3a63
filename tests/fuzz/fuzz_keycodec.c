/* fuzz_keycodec.c: libFuzzer target for kv/keycodec.c.
 *
 * First input byte picks the prefix and the output buffer size; the rest is
 *   - as a rel: encode must give a valid key (and a valid marker key "<key>/") that decodes
 *     back to the rel, or -ENAMETOOLONG;
 *   - as a key: key_valid/key_decode must not misbehave, and whatever decodes must survive
 *     encode -> decode unchanged.
 * Output buffers are heap blocks of the exact size passed, so ASan sees any overrun. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/keycodec.h"
#include "kv/kv.h"

static const char *const fz_prefixes[] = { NULL, "", "p", "cache-actor", "a.b", "x=3D/y" };

/* Encodes rel and checks validity and the round trip; outsz bytes of output. */
static void fz_round_trip(const char *prefix, const char *rel, size_t outsz)
{
    char *key = malloc(outsz ? outsz : 1);
    int n = key_encode(prefix, rel, key, outsz);
    if (n == -ENAMETOOLONG) {
        free(key);
        return;
    }
    if (n < 0 || n > KV_KEY_MAX || (size_t)n >= outsz || strlen(key) != (size_t)n)
        abort();
    size_t plen = prefix && *prefix ? strlen(prefix) + (*rel ? 1 : 0) : 0;
    if (*rel && !key_valid(key, (size_t)n))
        abort();
    size_t rlen = strlen(rel);
    char *back = malloc(rlen + 2);
    if (key_decode(key + plen, (size_t)n - plen, back, rlen + 1) != (int)rlen ||
        memcmp(back, rel, rlen + 1) != 0)
        abort();
    if (*rel) {
        /* the directory marker */
        char *marker = malloc((size_t)n + 2);
        memcpy(marker, key, (size_t)n);
        marker[n] = '/';
        marker[n + 1] = '\0';
        if (!key_valid(marker, (size_t)n + 1))
            abort();
        if (key_decode(marker + plen, (size_t)n + 1 - plen, back, rlen + 2) != (int)rlen + 1 ||
            memcmp(back, rel, rlen) != 0 || back[rlen] != '/')
            abort();
        free(marker);
    }
    free(back);
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    const char *prefix = fz_prefixes[data[0] % 6];
    size_t outsz = (data[0] & 0x80) ? (size_t)(data[0] & 0x7f) * 9 : KV_KEY_MAX + 1;
    data++, size--;

    /* As a rel: NUL bytes cannot be in a name, so they end it. */
    char *rel = malloc(size + 1);
    memcpy(rel, data, size);
    rel[size] = '\0';
    fz_round_trip(prefix, rel, outsz);
    fz_round_trip(prefix, rel, KV_KEY_MAX + 1);

    /* As a key. */
    (void)key_valid((const char *)data, size);
    char *dec = malloc(size + 1);
    int d = key_decode((const char *)data, size, dec, size + 1);
    if (d == -EINVAL) {
        /* malformed: there is a '=' in it */
        if (!memchr(data, '=', size))
            abort();
    } else if (d < 0 || (size_t)d > size) {
        abort();
    } else if (strlen(dec) == (size_t)d) {
        fz_round_trip(prefix, dec, KV_KEY_MAX + 1);
    }
    free(dec);
    free(rel);
    return 0;
}
