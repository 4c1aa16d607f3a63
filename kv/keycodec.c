/* keycodec.c: rel path <-> NATS KV key (see keycodec.h for the escaping rules).
 *
 * Invariants: key_encode() output always satisfies key_valid() when the prefix does, and a
 * directory marker (the key followed by '/') does too; key_decode(key_encode(rel)) == rel
 * for every byte string without NUL. The decoder also takes lowercase hex digits, which
 * other clients may write; it refuses "=00", as a file name never holds a NUL. Pure: no allocation, no lock, no errno.
 */
#include "kv/keycodec.h"

#include <errno.h>
#include <string.h>

#include "kv/kv.h"

static const char codec_hex[] = "0123456789ABCDEF";

/* 1 for the bytes written as themselves (besides '.', which depends on its neighbours). */
static int codec_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '/' || c == '-';
}

int key_hexdigit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int key_encode(const char *prefix, const char *rel, char *out, size_t outsz)
{
    /* The key may hold at most KV_KEY_MAX bytes and must fit out with its NUL. */
    size_t limit = outsz == 0 ? 0 : outsz - 1;
    if (limit > KV_KEY_MAX)
        limit = KV_KEY_MAX;
    size_t o = 0;

    if (prefix && *prefix) {
        size_t plen = strlen(prefix);
        size_t need = plen + (*rel ? 1 : 0);
        if (need > limit)
            return -ENAMETOOLONG;
        memcpy(out, prefix, plen);
        o = plen;
        if (*rel)
            out[o++] = '.';
    } else if (outsz == 0) {
        return -ENAMETOOLONG;
    }

    for (size_t i = 0; rel[i]; i++) {
        unsigned char c = (unsigned char)rel[i];
        int plain = codec_plain(c) ||
                    (c == '.' && i > 0 && rel[i - 1] != '.' && rel[i + 1] != '\0');
        if (plain) {
            if (o + 1 > limit)
                return -ENAMETOOLONG;
            out[o++] = (char)c;
        } else {
            if (o + 3 > limit)
                return -ENAMETOOLONG;
            out[o++] = '=';
            out[o++] = codec_hex[c >> 4];
            out[o++] = codec_hex[c & 15];
        }
    }
    out[o] = '\0';
    return (int)o;
}

int key_decode(const char *esc, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)esc[i];
        if (c == '=') {
            if (len - i < 3)
                return -EINVAL;
            int hi = key_hexdigit((unsigned char)esc[i + 1]);
            int lo = key_hexdigit((unsigned char)esc[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -EINVAL; /* bad digits, or =00: a name never holds NUL */
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return -ENAMETOOLONG;
        out[o++] = (char)c;
    }
    if (o >= outsz)
        return -ENAMETOOLONG;
    out[o] = '\0';
    return (int)o;
}

int key_valid(const char *key, size_t len)
{
    if (len == 0 || key[0] == '.' || key[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '.') {
            if (key[i + 1] == '.')
                return 0;
        } else if (!codec_plain(c) && c != '=') {
            return 0;
        }
    }
    return 1;
}
