/* test_keycodec.c: the key codec (kv/keycodec.c): escaping, round trips, validity, limits. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "kv/keycodec.h"
#include "kv/kv.h"

/* Deterministic PRNG (xorshift64*), so a failure reproduces. */
static uint64_t kc_rng = 0x9E3779B97F4A7C15ull;

static uint32_t kc_next(void)
{
    kc_rng ^= kc_rng >> 12;
    kc_rng ^= kc_rng << 25;
    kc_rng ^= kc_rng >> 27;
    return (uint32_t)((kc_rng * 2685821657736338717ull) >> 32);
}

/* Encodes rel with prefix, checks validity, the marker key and the round trip. */
static void kc_check_round_trip(const char *prefix, const char *rel)
{
    char key[KV_KEY_MAX + 2], back[KV_KEY_MAX + 2];
    int n = key_encode(prefix, rel, key, sizeof key);
    cr_assert_geq(n, 0, "encode(%s) failed: %d", rel, n);
    cr_assert_eq((size_t)n, strlen(key));
    cr_assert(key_valid(key, (size_t)n), "invalid key '%s' for rel of %zu bytes", key,
              strlen(rel));
    size_t plen = prefix && *prefix ? strlen(prefix) + 1 : 0;
    if (plen) {
        cr_assert_eq(strncmp(key, prefix, plen - 1), 0);
        cr_assert_eq(key[plen - 1], '.');
    }
    int d = key_decode(key + plen, (size_t)n - plen, back, sizeof back);
    cr_assert_eq(d, (int)strlen(rel), "decode length %d for '%s'", d, key);
    cr_assert_eq(memcmp(back, rel, strlen(rel) + 1), 0, "round trip differs for '%s'", key);

    /* The directory marker "<key>/" is a valid key and decodes to rel + "/". */
    if (n + 1 <= KV_KEY_MAX) {
        key[n] = '/';
        key[n + 1] = '\0';
        cr_assert(key_valid(key, (size_t)n + 1), "invalid marker '%s'", key);
        d = key_decode(key + plen, (size_t)n + 1 - plen, back, sizeof back);
        cr_assert_eq(d, (int)strlen(rel) + 1);
        cr_assert_eq(memcmp(back, rel, strlen(rel)), 0);
        cr_assert_eq(back[d - 1], '/');
    }
}

static void kc_expect(const char *prefix, const char *rel, const char *want)
{
    char key[KV_KEY_MAX + 1];
    int n = key_encode(prefix, rel, key, sizeof key);
    cr_assert_eq(n, (int)strlen(want), "encode('%s') = %d '%s', want '%s'", rel, n,
                 n >= 0 ? key : "", want);
    cr_assert_str_eq(key, want);
}

Test(keycodec, plain_names_unchanged)
{
    kc_expect(NULL, "user_123.json", "user_123.json");
    kc_expect("", "a/b-c_d.txt", "a/b-c_d.txt");
    kc_expect(NULL, "a.b.c", "a.b.c");
    kc_expect(NULL, "A-Z/0-9/x_y", "A-Z/0-9/x_y");
    kc_expect("cache-actor", "user_123.json", "cache-actor.user_123.json");
    kc_expect("p.q", "dir/file.txt", "p.q.dir/file.txt");
}

Test(keycodec, escapes)
{
    kc_expect(NULL, "=", "=3D");
    kc_expect(NULL, "a b", "a=20b");
    kc_expect(NULL, "caf\xc3\xa9", "caf=C3=A9");
    kc_expect(NULL, "*>\x7f\x01", "=2A=3E=7F=01");
    kc_expect(NULL, "\xff", "=FF");
}

Test(keycodec, dots)
{
    kc_expect(NULL, ".", "=2E");
    kc_expect(NULL, "..", "=2E=2E");
    kc_expect(NULL, "...", "=2E=2E=2E");
    kc_expect(NULL, ".hidden", "=2Ehidden");
    kc_expect(NULL, "trail.", "trail=2E");
    kc_expect(NULL, "a..b", "a.=2Eb");
    kc_expect(NULL, "a...b", "a.=2E=2Eb");
    kc_expect(NULL, "a/.b", "a/.b"); /* '/' then '.': no empty NATS token */
    kc_expect(NULL, "a./b", "a./b");
    kc_expect("pre", ".x.", "pre.=2Ex=2E");
    const char *cases[] = { ".", "..", "...", ".a", "a.", "a..b", ".a.", "a/..b", "..a..",
                            "x/./y", "x/../y", "a.b.", "....a....b...." };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kc_check_round_trip(NULL, cases[i]);
        kc_check_round_trip("pfx", cases[i]);
    }
}

Test(keycodec, root_is_the_prefix)
{
    kc_expect("cp", "", "cp");
    kc_expect(NULL, "", "");
    kc_expect("", "", "");
}

Test(keycodec, every_byte_round_trips)
{
    for (int c = 1; c < 256; c++) {
        char one[2] = { (char)c, 0 }, three[4] = { 'a', (char)c, 'b', 0 };
        kc_check_round_trip(NULL, one);
        kc_check_round_trip("cache-actor", one);
        kc_check_round_trip(NULL, three);
        kc_check_round_trip("p", three);
    }
}

Test(keycodec, random_round_trips)
{
    /* Biased toward the interesting bytes: '.', '/', '=', '%', high bytes. */
    static const char hot[] = "../=%\x80\xff";
    char rel[400];
    int checked = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 1 + kc_next() % 300;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = kc_next();
            rel[i] = (r & 3) == 0 ? hot[(r >> 2) % (sizeof hot - 1)] : (char)(1 + (r >> 8) % 255);
        }
        rel[len] = '\0';
        char key[KV_KEY_MAX + 1];
        if (key_encode("rnd", rel, key, sizeof key) == -ENAMETOOLONG)
            continue; /* a long, heavily escaped string: covered by the limit tests */
        kc_check_round_trip("rnd", rel);
        kc_check_round_trip(NULL, rel);
        checked++;
    }
    cr_assert_gt(checked, 10000, "only %d strings fit the key limit", checked);
}

Test(keycodec, key_limit_1024)
{
    char rel[2048], key[4096];
    memset(rel, 'a', 1024);
    rel[1024] = '\0';
    cr_assert_eq(key_encode(NULL, rel, key, sizeof key), 1024);
    rel[1024] = 'a';
    rel[1025] = '\0';
    cr_assert_eq(key_encode(NULL, rel, key, sizeof key), -ENAMETOOLONG);

    /* "p." + 1022 = 1024 fits; one more byte does not. */
    rel[1022] = '\0';
    cr_assert_eq(key_encode("p", rel, key, sizeof key), 1024);
    rel[1022] = 'a';
    rel[1023] = '\0';
    cr_assert_eq(key_encode("p", rel, key, sizeof key), -ENAMETOOLONG);

    /* Escapes count: 341 spaces are 1023 bytes, 342 are 1026. */
    memset(rel, ' ', 341);
    rel[341] = '\0';
    cr_assert_eq(key_encode(NULL, rel, key, sizeof key), 1023);
    rel[341] = ' ';
    rel[342] = '\0';
    cr_assert_eq(key_encode(NULL, rel, key, sizeof key), -ENAMETOOLONG);

    /* A prefix alone over the limit. */
    memset(rel, 'q', 1100);
    rel[1100] = '\0';
    cr_assert_eq(key_encode(rel, "x", key, sizeof key), -ENAMETOOLONG);
}

Test(keycodec, output_buffer_size)
{
    char key[16];
    cr_assert_eq(key_encode(NULL, "abc", key, 4), 3);
    cr_assert_str_eq(key, "abc");
    cr_assert_eq(key_encode(NULL, "abc", key, 3), -ENAMETOOLONG);
    cr_assert_eq(key_encode(NULL, "a=", key, 4), -ENAMETOOLONG);
    cr_assert_eq(key_encode(NULL, "a=", key, 5), 4);
    cr_assert_eq(key_encode("pp", "a", key, 4), -ENAMETOOLONG);
    cr_assert_eq(key_encode("pp", "a", key, 5), 4);
    cr_assert_eq(key_encode(NULL, "", key, 0), -ENAMETOOLONG);
    cr_assert_eq(key_encode(NULL, "", key, 1), 0);

    char out[8];
    cr_assert_eq(key_decode("abc", 3, out, 4), 3);
    cr_assert_eq(key_decode("abc", 3, out, 3), -ENAMETOOLONG);
    cr_assert_eq(key_decode("=41=42", 6, out, 3), 2);
    cr_assert_str_eq(out, "AB");
    cr_assert_eq(key_decode("", 0, out, 1), 0);
    cr_assert_eq(key_decode("", 0, out, 0), -ENAMETOOLONG);
}

Test(keycodec, decode_malformed)
{
    char out[64];
    const char *bad[] = { "=", "=4", "a=4", "=zz", "=4g", "x=G0", "=00", "ok=" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(key_decode(bad[i], strlen(bad[i]), out, sizeof out), -EINVAL, "'%s'",
                     bad[i]);
    /* Only len bytes are read: "=41" cut to "=4" is malformed. */
    cr_assert_eq(key_decode("=41", 2, out, sizeof out), -EINVAL);
    /* Lowercase digits, as another client may write them. */
    cr_assert_eq(key_decode("a=3db", 5, out, sizeof out), 3);
    cr_assert_str_eq(out, "a=b");
}

Test(keycodec, key_valid_rules)
{
    const char *good[] = { "a", "a.b", "a/b", "a=3D", "-_/=", "x/", "p.a/.b", "A9" };
    const char *bad[] = { ".", ".a", "a.", "a..b", "a b", "a*", "a>", "a\x80", "a\xff", "a%",
                          "a:b", "a\tb" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        cr_assert(key_valid(good[i], strlen(good[i])), "'%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_not(key_valid(bad[i], strlen(bad[i])), "'%s' should be invalid", bad[i]);
    cr_assert_not(key_valid("", 0));
    cr_assert_not(key_valid("a\0b", 3));
    cr_assert(key_valid("ab.", 2), "only len bytes count");
}
