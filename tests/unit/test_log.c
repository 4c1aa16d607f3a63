/* test_log.c: URL redaction: no credential part ever survives, whatever it contains. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/log.h"

static const char *redact(const char *url)
{
    static char out[256];
    log_redact_url(url, out, sizeof out);
    return out;
}

Test(log, credentials_are_replaced)
{
    cr_assert_str_eq(redact("nats://s3cret@127.0.0.1:4222"), "nats://***@127.0.0.1:4222");
    cr_assert_str_eq(redact("nats://user:pass@host:4222"), "nats://***@host:4222");
    cr_assert_str_eq(redact("tls://host:4222"), "tls://host:4222");
}

Test(log, an_at_sign_inside_the_password_is_not_the_end_of_it)
{
    const char *r = redact("nats://user:p@ss@host:4222");
    cr_assert_str_eq(r, "nats://***@host:4222");
    cr_assert_null(strstr(r, "ss@"));
}

Test(log, every_url_of_a_list_is_redacted)
{
    cr_assert_str_eq(redact("nats://a:b@h1:1,nats://tok@h2:2,nats://h3:3"),
                     "nats://***@h1:1,nats://***@h2:2,nats://h3:3");
}

Test(log, a_comma_inside_the_password_is_not_the_end_of_it)
{
    const char *r = redact("nats://alice:1234,5678@host:4222");
    cr_assert_str_eq(r, "nats://***@host:4222");
    cr_assert_str_eq(redact("alice:12,34@h1:1,nats://h2:2"), "***@h1:1,nats://h2:2");
}
