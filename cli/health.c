/* health.c: `asya-state health`, the sidecar's health check (the image's HEALTHCHECK and the
 * Kubernetes probes). Connects to the Unix socket (CONNECTOR_SOCKET, or --socket PATH), asks
 * `GET /healthz` and exits 0 on a 200 answer, 1 on any other answer, no answer, or no socket
 * within the timeout (--timeout SECONDS, default 3). No NATS, no configuration: it checks
 * what Asya's runtime would reach, and `serve` answers 200 only once the server and the
 * bucket do. Prints one line: the status line, or why there is none.
 */
#include "cli/cli.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void health_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state health [--socket PATH] [--timeout SECONDS]\n"
            "\n"
            "Asks the sidecar (`asya-state serve`) on CONNECTOR_SOCKET (or PATH) for GET /healthz;\n"
            "exits 0 when it answers 200 (ready: the server and the bucket answer), 1 otherwise.\n");
}

static long health_ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int health_wait(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)health_ms_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r > 0;
    }
}

int cmd_health(int argc, char **argv)
{
    const char *path = getenv("CONNECTOR_SOCKET");
    double timeout_s = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            health_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout_s = strtod(argv[++i], &end);
            if (*end || !(timeout_s > 0 && timeout_s < 3600)) {
                fprintf(stderr, "asya-state health: --timeout '%s' is not a number of seconds\n",
                        argv[i]);
                return CLI_USAGE;
            }
        } else {
            health_usage(stderr);
            return CLI_USAGE;
        }
    }
    if (!path || !*path) {
        printf("unhealthy: CONNECTOR_SOCKET is not set (or give --socket PATH)\n");
        return CLI_FAIL;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        printf("unhealthy: socket path too long: %s\n", path);
        return CLI_FAIL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    deadline.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS &&
                   errno != EAGAIN)) {
        printf("unhealthy: cannot connect to %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return CLI_FAIL;
    }
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    size_t sent = 0;
    while (sent < sizeof req - 1) {
        if (health_wait(fd, POLLOUT, &deadline) <= 0)
            goto timeout;
        ssize_t n = send(fd, req + sent, sizeof req - 1 - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            printf("unhealthy: cannot send to %s: %s\n", path, strerror(errno));
            close(fd);
            return CLI_FAIL;
        }
        sent += (size_t)n;
    }
    char buf[512] = { 0 };
    size_t got = 0;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        if (health_wait(fd, POLLIN, &deadline) <= 0)
            goto timeout;
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    int status = 0;
    if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1) {
        printf("unhealthy: no HTTP answer on %s\n", path);
        return CLI_FAIL;
    }
    printf("%s: %s\n", status == 200 ? "healthy" : "unhealthy", buf);
    return status == 200 ? CLI_OK : CLI_FAIL;

timeout:
    close(fd);
    printf("unhealthy: no answer on %s within %gs\n", path, timeout_s);
    return CLI_FAIL;
}
