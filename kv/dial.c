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
 *    not exist when the attempt started (dial_baseline), connected to the port of a configured
 *    server URL. Only when the connecting thread is seen spinning (past its deadline,
 *    runnable at every look for 100 ms) and exactly one socket fits is it shut down: the
 *    next recv returns 0, the connect fails with a protocol error and returns. The residual
 *    risk, a socket the program itself opened to the same server port during the attempt, is
 *    why two candidates cut nothing.
 */
#include <dirent.h>
#include <errno.h>
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

static int is_tcp_socket(int fd, ino_t *ino, int *peer_port)
{
    struct stat st;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
        getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    *ino = st.st_ino;
    /* getpeername returned 0, so it filled ss:
     * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    *peer_port = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                 : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : -1;
    return *peer_port > 0;
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
        int fd = atoi(de->d_name), port;
        ino_t ino;
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && fd != dirfd(d) &&
            is_tcp_socket(fd, &ino, &port)) {
            if (b->n == DIAL_BASELINE_MAX) {
                b->n = -1;      /* too many to tell a new one: cut nothing */
                break;
            }
            b->ino[b->n++] = ino;
        }
    }
    closedir(d);
}

/* The port of a server URL ("nats://[cred@]host[:port]"), 4222 when none is given. */
static int url_port(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    const char *at = strrchr(h, '@');
    if (at)
        h = at + 1;
    const char *colon = strrchr(h, ':');
    const char *bracket = strrchr(h, ']');
    return colon && (!bracket || colon > bracket) ? atoi(colon + 1) : 4222;
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
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        int fd = atoi(de->d_name), port;
        ino_t ino;
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d) ||
            !is_tcp_socket(fd, &ino, &port))
            continue;
        int known = 0, server = 0;
        for (int i = 0; i < b->n; i++)
            known |= b->ino[i] == ino;
        for (int i = 0; i < nurls; i++)
            server |= url_port(urls[i]) == port;
        if (!known && server) {
            found = fd;
            count++;
        }
    }
    closedir(d);
    if (count != 1)
        return 0;
    shutdown(found, SHUT_RDWR);
    return 1;
}

pid_t dial_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}
