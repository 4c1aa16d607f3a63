/* clockahead.c: a test-only preload that puts this process's wall clock (CLOCK_REALTIME)
 * CLOCK_AHEAD_S seconds ahead of the machine's, as a client whose clock runs ahead of the
 * NATS server's. Monotonic clocks are left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

__attribute__((visibility("default"))) int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    const char *ahead = getenv("CLOCK_AHEAD_S");
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) && ahead)
        ts->tv_sec += atol(ahead);
    return r;
}
