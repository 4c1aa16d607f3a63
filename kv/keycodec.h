/* keycodec.h: the mapping between a path below a mount ("rel") and a NATS KV key.
 *
 * Escaping per SPEC "Paths and keys": bytes in [A-Za-z0-9_/-] and '.' pass through, every
 * other byte becomes =XX (two uppercase hex digits; '=' is =3D), and a '.' is written =2E when
 * it is the first or last byte of rel or follows another '.'. Plain names are unchanged, and
 * every encoded key (and every directory marker key "<key>/") is a valid NATS KV key.
 * Pure functions: no allocation, no lock, no errno.
 */
#ifndef ASYA_KV_KEYCODEC_H
#define ASYA_KV_KEYCODEC_H

#include <stddef.h>

/* Encodes rel (a normalised path below the mount: no leading/trailing '/', no empty, "."
 * or ".." segment; "" for the root) into the NATS key prefix "." escaped(rel), or
 * escaped(rel) when prefix is NULL or "". rel "" gives just the prefix (or ""), used only to
 * build listing filters. Escaping per SPEC "Paths and keys": each byte outside
 * [A-Za-z0-9_/-] and '.' becomes =XX (two uppercase hex digits), '=' is =3D; a '.' is
 * written =2E when it is the first or last byte of rel or follows another '.'.
 * Returns the key length (excluding NUL, out is NUL-terminated), -ENAMETOOLONG when the key
 * would exceed KV_KEY_MAX (kv/kv.h, 1024) or outsz. */
int key_encode(const char *prefix, const char *rel, char *out, size_t outsz);

/* Decodes an escaped rel (the key with "prefix." removed) of len bytes into out, NUL-
 * terminated. Returns the length, -EINVAL for a malformed escape ("=4", "=zz"),
 * -ENAMETOOLONG when out is too small. */
int key_decode(const char *esc, size_t len, char *out, size_t outsz);

/* 1 when NATS accepts key as a KV key: non-empty, only [-/_=.A-Za-z0-9], no leading or
 * trailing '.', no ".." (empty token); 0 otherwise. */
int key_valid(const char *key, size_t len);

/* The value of one hex digit (either case), or -1. */
int key_hexdigit(unsigned char c);

#endif
