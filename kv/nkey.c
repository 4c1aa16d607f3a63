/* nkey.c: the public key of an NKey seed, which nats.c 3.4.1 wants next to the seed file
 * (natsOptions_SetNKeyFromSeed takes both and cannot derive one from the other).
 *
 * An encoded seed is base32 (RFC 4648, no padding) of: 2 prefix bytes (the seed marker 'S'
 * and the key type, e.g. 'U' for a user), 32 bytes of Ed25519 seed, CRC16-XMODEM
 * (little-endian) of the preceding bytes. The public key is base32 of: the type byte, the
 * 32-byte Ed25519 public key, its CRC16. Ed25519 comes from libcrypto, which libnats
 * already loads: it is looked up with dlopen/dlsym so nothing more is linked. Seed bytes
 * are wiped after use and never logged.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "kv/internal.h"

#define NKEY_PREFIX_SEED (18u << 3)  /* 'S' */
#define NKEY_RAW_SEED 36              /* 2 prefix + 32 seed + 2 crc */
#define NKEY_ENC_SEED 58
#define NKEY_RAW_PUB 35               /* 1 type + 32 key + 2 crc */
#define NKEY_ENC_PUB 56

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static int b32_decode(const char *in, size_t n, uint8_t *out, size_t outsz)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(b32, in[i]);
        if (!p || !in[i])
            return -EINVAL;
        acc = (acc << 5) | (uint32_t)(p - b32);
        bits += 5;
        if (bits >= 8) {
            if (o == outsz)
                return -EINVAL;
            out[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return (int)o;
}

static void b32_encode(const uint8_t *in, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

/* The first 58-character base32 word starting with 'S' in the file (a bare seed, or the
 * seed block of a .creds-style file). */
static int read_seed(const char *path, char *seed)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -EIO;
    char line[256];
    int r = -EINVAL;
    while (r < 0 && fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        size_t n = strspn(p, b32);
        if (n == NKEY_ENC_SEED && p[0] == 'S') {
            memcpy(seed, p, NKEY_ENC_SEED);
            seed[NKEY_ENC_SEED] = '\0';
            r = 0;
        }
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    return r;
}

typedef void *(*new_raw_fn)(int type, void *engine, const unsigned char *key, size_t len);
typedef int (*get_pub_fn)(const void *pkey, unsigned char *pub, size_t *len);
typedef void (*free_fn)(void *pkey);

static int ed25519_public(const uint8_t seed[32], uint8_t pub[32])
{
    void *h = dlopen("libcrypto.so.3", RTLD_LAZY | RTLD_LOCAL);
    if (!h)
        return -EIO;
    new_raw_fn new_raw = (new_raw_fn)dlsym(h, "EVP_PKEY_new_raw_private_key");
    get_pub_fn get_pub = (get_pub_fn)dlsym(h, "EVP_PKEY_get_raw_public_key");
    free_fn pfree = (free_fn)dlsym(h, "EVP_PKEY_free");
    int r = -EIO;
    if (new_raw && get_pub && pfree) {
        void *pk = new_raw(1087 /* EVP_PKEY_ED25519 = NID_ED25519 */, NULL, seed, 32);
        size_t len = 32;
        if (pk && get_pub(pk, pub, &len) == 1 && len == 32)
            r = 0;
        if (pk)
            pfree(pk);
    }
    dlclose(h);
    return r;
}

int kv_nkey_public(const char *seed_file, char *pub, size_t pubsz)
{
    char enc[NKEY_ENC_SEED + 1];
    uint8_t raw[NKEY_RAW_SEED + 2];
    uint8_t out[NKEY_RAW_PUB];
    int r = read_seed(seed_file, enc);
    if (r == 0 && b32_decode(enc, NKEY_ENC_SEED, raw, sizeof raw) != NKEY_RAW_SEED)
        r = -EINVAL;
    if (r == 0 && ((raw[0] & 0xf8) != NKEY_PREFIX_SEED ||
                   crc16(raw, 34) != (uint16_t)(raw[34] | raw[35] << 8)))
        r = -EINVAL;
    if (r == 0 && pubsz < NKEY_ENC_PUB + 1)
        r = -ENAMETOOLONG;
    if (r == 0) {
        out[0] = (uint8_t)(((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3));
        r = ed25519_public(raw + 2, out + 1);
    }
    if (r == 0) {
        uint16_t c = crc16(out, 33);
        out[33] = (uint8_t)(c & 0xff);
        out[34] = (uint8_t)(c >> 8);
        b32_encode(out, NKEY_RAW_PUB, pub);
    }
    explicit_bzero(enc, sizeof enc);
    explicit_bzero(raw, sizeof raw);
    if (r < 0)
        log_at(LOG_ERROR, "NATS_NKEY_SEED_FILE: %s: %s", seed_file,
               r == -EIO ? "cannot be read (or libcrypto lacks Ed25519)" : "holds no valid NKey seed");
    return r;
}
