/* dial.c: helper threads for the connect, so that no wait on a server holds a program thread
 * with its signals blocked, and the one known endless wait of nats.c 3.4.1 is cut.
 *
 *  - dial_thread starts a detached thread with every signal blocked. The caller's own mask is
 *    changed only around pthread_create (the new thread inherits it, and so do the threads
 *    nats.c starts from it: SPEC "the library's threads block all signals").
 *  - dial_unstick cuts nats.c 3.4.1's spin after a connect deadline. _readProto (conn.c of
 *    nats.c), which reads the answer to the first PING one byte at a time, stops only on EOF:
 *    once the connect deadline has passed every read fails at once with NATS_TIMEOUT, which it
 *    ignores, and it spins (poll with a zero timeout, recv, a byte appended to a growing buffer:
 *    one CPU and memory without end) for as long as a server that sent INFO stays silent.
 *    nats.c gives no handle on the socket, and a spinning thread is always "running" in
 *    /proc/self/task/TID/syscall, so the socket is found by what it is: a TCP socket that did
 *    not exist when the attempt started (dial_baseline), connected to the address and port of
 *    a configured server URL. Only when the connecting thread is seen spinning (past its
 *    deadline, runnable at every look for 100 ms) and exactly one socket fits is it shut down,
 *    through a duplicate checked to be that same socket (the number, read from /proc, may
 *    have been closed and reused by the program meanwhile): the next recv returns 0, the
 *    connect fails with a protocol error and returns. The residual risk, a socket the program
 *    itself opened to the same server during the attempt, is why two candidates cut nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kv/internal.h"

int dial_thread(void *(*fn)(void *), void *arg)
{
    pthread_attr_t at;
    pthread_t t;
    sigset_t all, old;
    if (pthread_attr_init(&at) != 0)
        return -ENOMEM;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&t, &at, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    return e == 0 ? 0 : -e;
}

/* The scheduler state of thread tid ('R' running or runnable, 'S' waiting...), or 0. */
static char thread_state(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char *ok = fgets(buf, sizeof buf, f);
    fclose(f);
    char *p = ok ? strrchr(buf, ')') : NULL; /* the name may hold spaces and parentheses */
    return p && p[1] == ' ' ? p[2] : 0;
}

/* 1 when fd is a connected TCP socket: its inode and peer address into *ino and *peer. */
static int is_tcp_socket(int fd, ino_t *ino, struct sockaddr_storage *peer)
{
    struct stat st;
    socklen_t len = sizeof *peer;
    memset(peer, 0, sizeof *peer); /* a family getpeername did not set reads as none */
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
        getpeername(fd, (struct sockaddr *)peer, &len) != 0)
        return 0;
    *ino = st.st_ino;
    return peer->ss_family == AF_INET || peer->ss_family == AF_INET6;
}

void dial_baseline(dial_sockets *b)
{
    b->n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        b->n = -1;
        return;
    }
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        int fd = atoi(de->d_name);
        ino_t ino;
        struct sockaddr_storage peer;
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && fd != dirfd(d) &&
            is_tcp_socket(fd, &ino, &peer)) {
            if (b->n == DIAL_BASELINE_MAX) {
                b->n = -1;      /* too many to tell a new one: cut nothing */
                break;
            }
            b->ino[b->n++] = ino;
        }
    }
    closedir(d);
}

/* The host and port of a server URL ("nats://[cred@]host[:port]", "[v6]" in brackets; port
 * 4222 when none is given) into host (hostsz bytes) and *port. 0, or -1 when it does not fit. */
static int url_host_port(const char *url, char *host, size_t hostsz, int *port)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    const char *at = strrchr(h, '@');
    if (at)
        h = at + 1;
    const char *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -1;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        end = rb;
        h++;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
    }
    const char *hend = colon && colon < end ? colon : end;
    if ((size_t)(hend - h) >= hostsz)
        return -1;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    *port = colon ? atoi(colon + 1) : 4222;
    return 0;
}

/* sa's address as 16 bytes of IPv6 (IPv4 as IPv4-mapped, as a dual-stack socket shows it)
 * and its port into *port. 0, or -1 when sa is neither IPv4 nor IPv6. */
static int endpoint(const struct sockaddr *sa, unsigned char addr[16], int *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
        memcpy(addr, mapped, 12);
        memcpy(addr + 12, &s4->sin_addr, 4);
        *port = ntohs(s4->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(addr, &s6->sin6_addr, 16);
        *port = ntohs(s6->sin6_port);
        return 0;
    }
    return -1;
}

static int same_endpoint(const struct sockaddr *a, const struct sockaddr *b)
{
    unsigned char aa[16], ba[16];
    int ap, bp;
    return endpoint(a, aa, &ap) == 0 && endpoint(b, ba, &bp) == 0 && ap == bp &&
           memcmp(aa, ba, 16) == 0;
}

/* 1 when peer is the address and port of a configured server URL. A host name is resolved
 * (getaddrinfo: nats.c resolved it for the same connect moments before). */
static int is_server(const struct sockaddr_storage *peer, const char *const *urls, int nurls)
{
    for (int i = 0; i < nurls; i++) {
        char host[256], serv[16];
        int port;
        if (url_host_port(urls[i], host, sizeof host, &port) < 0)
            continue;
        snprintf(serv, sizeof serv, "%d", port);
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *res = NULL;
        if (getaddrinfo(host, serv, &hints, &res) != 0)
            continue;
        int match = 0;
        for (struct addrinfo *ai = res; ai && !match; ai = ai->ai_next)
            match = same_endpoint((const struct sockaddr *)peer, ai->ai_addr);
        freeaddrinfo(res);
        if (match)
            return 1;
    }
    return 0;
}

int dial_unstick(pid_t tid, const dial_sockets *b, const char *const *urls, int nurls)
{
    if (b->n < 0)
        return 0;
    /* Spinning: runnable at (nearly) every look over 100 ms. A thread waiting for the server
     * in poll is asleep ('S'); CPU time would not tell on a loaded machine, where the spin
     * gets a fraction of a CPU. */
    int running = 0;
    for (int i = 0; i < 10; i++) {
        struct timespec pause = { 0, 10 * 1000000L };
        running += thread_state(tid) == 'R';
        nanosleep(&pause, NULL);
    }
    if (running < 9)
        return 0;               /* waiting, not spinning: nats.c's own deadline will do */
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    int found = -1, count = 0;
    ino_t found_ino = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        int fd = atoi(de->d_name);
        ino_t ino;
        struct sockaddr_storage peer;
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d) ||
            !is_tcp_socket(fd, &ino, &peer))
            continue;
        int known = 0;
        for (int i = 0; i < b->n; i++)
            known |= b->ino[i] == ino;
        if (!known && is_server(&peer, urls, nurls)) {
            found = fd;
            found_ino = ino;
            count++;
        }
    }
    closedir(d);
    if (count != 1)
        return 0;
    /* The number was read a moment ago: the program may have closed it and reused it since.
     * A duplicate holds the socket still; it is cut only when it is the same socket. */
    int dup = fcntl(found, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return 0;
    struct stat st;
    int same = fstat(dup, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == found_ino;
    if (same)
        shutdown(dup, SHUT_RDWR);
    close(dup);
    return same;
}

pid_t dial_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}
