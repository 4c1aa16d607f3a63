/* common.h: helpers shared by the bench programs (timing, the command loop).
 * Header-only so each program stays one file; nothing here touches libnats. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Microseconds since BENCH_T0_NS (set by the driver just before it spawns us). */
static inline double bench_since_t0_us(void)
{
    const char *t0 = getenv("BENCH_T0_NS");
    if (!t0)
        return -1;
    return (double)(bench_now_ns() - strtoull(t0, NULL, 10)) / 1000.0;
}

/* One batch: "OP SIZE N" on stdin; OP is read, write or rmw. The cycle function returns 0 or
 * a negative errno; the timings go to stdout on one line. Returns nonzero on a failure. */
typedef int (*bench_cycle_fn)(const char *op, size_t size, unsigned iter);

static inline int bench_serve(bench_cycle_fn cycle)
{
    char op[16];
    size_t size;
    unsigned n;
    static unsigned iter;
    while (scanf("%15s %zu %u", op, &size, &n) == 3) {
        double *us = calloc(n, sizeof *us);
        if (!us)
            return 1;
        for (unsigned i = 0; i < n; i++) {
            uint64_t t0 = bench_now_ns();
            int r = cycle(op, size, ++iter);
            if (r < 0) {
                fprintf(stderr, "bench: %s %zu failed: %s\n", op, size, strerror(-r));
                free(us);
                return 1;
            }
            us[i] = (double)(bench_now_ns() - t0) / 1000.0;
        }
        for (unsigned i = 0; i < n; i++)
            printf("%s%.2f", i ? " " : "", us[i]);
        printf("\n");
        fflush(stdout);
        free(us);
    }
    return 0;
}

#endif
