/* hygiene_proc.c: the C program of t_hygiene.sh (SPEC "Processes"). Knows nothing of the shim:
 * run it with and without LD_PRELOAD and compare what it prints.
 *
 *   hygiene_proc state PATH default|ignore|handler
 *       sets up its own process state (handlers for SIGUSR1/SIGHUP, SIGTERM ignored, SIGPIPE
 *       as asked, SIGUSR2 and SIGWINCH blocked), draws rand() after srand(42), reads PATH (and
 *       draws 2000 more over 200 ms, while the library settles in the background) and
 *       writes PATH (with the shim: the first operation on a mount connects), draws again, and
 *       prints lines starting "cmp " (must equal the run without the shim: every disposition
 *       and flag, the mask, pending signals, the rand() sequence), "thread " (SigBlk of every
 *       thread but its own against a mask with every signal blocked) and "newfd " (every
 *       descriptor that appeared during the operations: number, target, close-on-exec).
 *       With a 4th argument "exec", then execs /bin/ls /proc/self/fd.
 *   hygiene_proc leak PATH N MISSING
 *       one read of PATH (connects), then N open/read/close cycles, N/10 write cycles, N/10
 *       fopen/fread/fclose cycles and N/10 opens of the missing MISSING; prints
 *       "fds before=A after=B errors=E".
 * Exit status: 0, or 2 on a usage error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }
static void on_hup(int sig) { (void)sig; }
static void on_pipe(int sig) { (void)sig; }

static void draw(const char *when)
{
    printf("cmp rand %s:", when);
    for (int i = 0; i < 4; i++)
        printf(" %d", rand());
    printf("\n");
}

/* Draws rand() 2000 times over about 200 ms and prints their sum: a window long enough to
 * overlap whatever the library does in the background after a first read (the read
 * cache's watcher is created then). */
static void draw_busy(const char *when)
{
    unsigned long sum = 0;
    for (int i = 0; i < 2000; i++) {
        sum += (unsigned)rand();
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    printf("cmp rand %s: sum %lu\n", when, sum);
}

static void set_handler(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(sig, &sa, NULL);
}

static const char *disp_name(void (*h)(int))
{
    if (h == SIG_DFL)
        return "DFL";
    if (h == SIG_IGN)
        return "IGN";
    if (h == on_usr1)
        return "on_usr1";
    if (h == on_hup)
        return "on_hup";
    if (h == on_pipe)
        return "on_pipe";
    return "OTHER";
}

static void print_set(const char *name, const sigset_t *s)
{
    printf("cmp %s:", name);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(s, sig) == 1)
            printf(" %d", sig);
    printf("\n");
}

static void print_signals(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) < 0)
            continue; /* glibc's reserved real-time signals */
        printf("cmp sig %d %s flags=%#x\n", sig, disp_name(sa.sa_handler),
               (unsigned)sa.sa_flags);
    }
    sigset_t mask, pending;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    print_set("mask", &mask);
    sigpending(&pending);
    print_set("pending", &pending);
}

/* SigBlk of /proc/self/task/TID/status, as text, into out. */
static int sigblk_of(long tid, char *out, size_t n)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%ld/status", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %63s", out) == 1) {
            found = 0;
            break;
        }
    fclose(f);
    (void)n;
    return found;
}

static char full_mask[64];

/* A thread of ours that blocks everything it can: its SigBlk is "every signal blocked". */
static void *probe(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    sigblk_of(syscall(SYS_gettid), full_mask, sizeof full_mask);
    return NULL;
}

static void print_threads(void)
{
    pthread_t t;
    pthread_create(&t, NULL, probe, NULL);
    pthread_join(t, NULL);
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int others = 0;
    while (d && (e = readdir(d))) {
        long tid = atol(e->d_name);
        if (tid <= 0 || tid == (long)getpid())
            continue;
        char blk[64] = "?";
        sigblk_of(tid, blk, sizeof blk);
        printf("thread %ld SigBlk=%s full=%s %s\n", tid, blk, full_mask,
               strcmp(blk, full_mask) == 0 ? "all-blocked" : "NOT-all-blocked");
        others++;
    }
    if (d)
        closedir(d);
    printf("threads others=%d\n", others);
}

#define MAXFD 65536
static unsigned char seen[MAXFD];

static void fds_snapshot(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int self = d ? dirfd(d) : -1;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < MAXFD)
            seen[fd] = 1;
    }
    if (d)
        closedir(d);
}

static void print_new_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int self = d ? dirfd(d) : -1;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self || (fd < MAXFD && seen[fd]))
            continue;
        char path[64], target[256] = "?", line[128];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n >= 0)
            target[n] = 0;
        unsigned long flags = 0;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "flags: %lo", &flags) == 1)
                break;
        if (f)
            fclose(f);
        printf("newfd %d %s flags=%#lo cloexec=%d\n", fd, target, flags,
               (flags & O_CLOEXEC) ? 1 : 0);
    }
    if (d)
        closedir(d);
}

static int read_whole(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        ;
    int r = n < 0 ? -errno : 0;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

static int write_whole(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    int r = write(fd, text, strlen(text)) < 0 ? -errno : 0;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

static int mode_state(const char *path, const char *pipe_mode, int then_exec)
{
    set_handler(SIGUSR1, on_usr1, SA_RESTART);
    set_handler(SIGHUP, on_hup, SA_NODEFER);
    signal(SIGTERM, SIG_IGN);
    if (strcmp(pipe_mode, "ignore") == 0)
        signal(SIGPIPE, SIG_IGN);
    else if (strcmp(pipe_mode, "handler") == 0)
        set_handler(SIGPIPE, on_pipe, 0);
    else
        signal(SIGPIPE, SIG_DFL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, NULL);

    fds_snapshot();
    srand(42);
    draw("before");
    int r1 = read_whole(path); /* with the shim: connects */
    draw("after-read");
    draw_busy("while-the-library-settles");
    int r2 = write_whole(path, "hygiene\n");
    draw("after-write");
    int r3 = read_whole(path);
    srand(42);
    draw("reseeded");
    printf("cmp ops read=%d write=%d reread=%d\n", r1, r2, r3);
    print_signals();
    print_threads();
    print_new_fds();
    fflush(stdout);
    if (then_exec) {
        execl("/bin/ls", "ls", "/proc/self/fd", (char *)NULL);
        perror("execl");
        return 1;
    }
    return 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static int mode_leak(const char *path, long n, const char *missing)
{
    int errors = 0;
    if (read_whole(path) < 0)
        errors++;
    int before = count_fds();
    for (long i = 0; i < n; i++)
        errors += read_whole(path) < 0;
    for (long i = 0; i < n / 10; i++)
        errors += write_whole(path, "leak-check\n") < 0;
    for (long i = 0; i < n / 10; i++) {
        FILE *f = fopen(path, "r");
        if (!f) {
            errors++;
            continue;
        }
        char buf[64];
        while (fread(buf, 1, sizeof buf, f) > 0)
            ;
        errors += fclose(f) != 0;
    }
    for (long i = 0; i < n / 10; i++)
        errors += read_whole(missing) != -ENOENT;
    int after = count_fds();
    printf("fds before=%d after=%d errors=%d\n", before, after, errors);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "state") == 0)
        return mode_state(argv[2], argv[3], argc > 4 && strcmp(argv[4], "exec") == 0);
    if (argc == 5 && strcmp(argv[1], "leak") == 0)
        return mode_leak(argv[2], atol(argv[3]), argv[4]);
    fprintf(stderr, "usage: hygiene_proc state PATH default|ignore|handler [exec] | "
                    "leak PATH N MISSING\n");
    return 2;
}
