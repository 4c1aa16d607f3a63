/* inode_race.c MODE ARGS...: races on one key's open file (shim/inode.c) that lost bytes or
 * answered falsely, run under LD_PRELOAD="shim progs/inject.so": inject.so widens a window or
 * fails a call in one thread, so each interleaving happens on every run. Prints one line,
 * "MODE|RESULT"; t_inode.sh compares it and reads what landed with kvtool.
 *
 *   size KEYPATH LOCAL ROUNDS  stat of an open file while its descriptor is closed and the
 *                              number reused by LOCAL (another size): every stat answers the
 *                              key's size (ASYA_STATE_BUFFER=memfd: the size is the fstat's)
 *   dup KEYPATH               a dup in one thread while another opens the key again (moves its
 *                              bytes to the master): a write through the copy is seen by the
 *                              second descriptor and lands
 *   split KEYPATH             the move of a record with two descriptors fails half-way (its
 *                              second dup3): the open fails and both descriptors stay on one
 *                              buffer (both writes land)
 *   stall KEYPATH OTHER PID ROUNDS  a stat of an open file paused between its looks at it, a
 *                              commit of the file starting then and waiting on a stopped server
 *                              (PID: SIGSTOP), and a read of another open mount file (OTHER) in
 *                              a third thread: the read returns while the server is stopped
 *   unmap KEYPATH             a shared mapping of 3 pages, its descriptor closed, written, then
 *                              unmapped a page at a time (the middle first): the last munmap
 *                              commits; then SIGKILL (no commit at exit)
 *   mremap KEYPATH            a shared mapping moved and grown by mremap, written, unmapped
 *                              at its new address: that munmap commits; then SIGKILL
 *   rawclose KEYPATH LOCAL    a written file closed by a raw system call (no libc, no hook),
 *                              its number then reused by LOCAL, which the program closes:
 *                              LOCAL's bytes must never become the key's value
 *   closerange KEYPATH KEYPATH2  a written file closed by close_range(), another by
 *                              syscall(SYS_close_range): each commits; then SIGKILL
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void (*inject)(const char *, int);

static void die(const char *what)
{
    fprintf(stderr, "inode_race: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void sleep_ms(int ms)
{
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&t, NULL);
}

/* ---- size ---- */
static const char *key_path;
static volatile int stop;
static long wrong, asked;
static off_t key_size;

static void *stat_loop(void *arg)
{
    /* size: between picking a descriptor and asking the kernel; stall: after each lock it
     * lets go, so a commit can start between the looks the stat takes */
    inject(arg ? "unlock_delay_us" : "fstat_delay_us", arg ? 300 : 3000);
    while (!stop) {
        struct stat st;
        if (stat(key_path, &st) == 0) {
            asked++;
            if (st.st_size != key_size)
                wrong++;
        }
    }
    return NULL;
}

static int mode_size(const char *local, int rounds)
{
    struct stat st;
    if (stat(key_path, &st) < 0)
        die("stat");
    key_size = st.st_size;
    pthread_t t;
    pthread_create(&t, NULL, stat_loop, NULL);
    for (int i = 0; i < rounds; i++) {
        int fd = open(key_path, O_RDONLY);
        if (fd < 0)
            die("open key");
        sleep_ms(2);
        close(fd);
        int l = open(local, O_RDONLY); /* the lowest free number: fd's */
        if (l != fd)
            fprintf(stderr, "inode_race: the local file got %d, not %d\n", l, fd);
        sleep_ms(6);
        close(l);
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("size|%s\n", asked > 0 && wrong == 0 ? "every stat gave the key's size" : "false sizes");
    fprintf(stderr, "inode_race: size: %ld of %ld stats wrong\n", wrong, asked);
    return 0;
}

/* ---- dup ---- */
static int fd1, fd_copy = -1;

static void *dup_slowly(void *arg)
{
    (void)arg;
    inject("dup_delay_us", 50000); /* the kernel's copy made, the shim's record not yet */
    fd_copy = dup(fd1);
    inject("dup_delay_us", 0);
    return NULL;
}

static int mode_dup(void)
{
    fd1 = open(key_path, O_RDWR);
    if (fd1 < 0)
        die("open");
    pthread_t t;
    pthread_create(&t, NULL, dup_slowly, NULL);
    sleep_ms(15);
    int fd2 = open(key_path, O_RDWR); /* shares the open file: moves it to the master */
    if (fd2 < 0)
        die("second open");
    pthread_join(t, NULL);
    if (fd_copy < 0)
        die("dup");
    if (pwrite(fd_copy, "DUP", 3, 0) != 3)
        die("pwrite");
    char buf[16] = { 0 };
    ssize_t n = pread(fd2, buf, sizeof buf - 1, 0);
    int c = close(fd_copy) | close(fd1) | close(fd2);
    printf("dup|second descriptor reads %.*s, close %d\n", (int)(n < 0 ? 0 : n), buf, c);
    return 0;
}

/* ---- split ---- */
static int mode_split(void)
{
    int a = open(key_path, O_RDWR);
    if (a < 0)
        die("open");
    int b = dup(a); /* one record, two descriptors */
    inject("dup3_fail_in", 2); /* the move's second dup3 fails */
    int c = open(key_path, O_RDWR);
    int err = c < 0 ? errno : 0;
    inject("dup3_fail_in", 0);
    if (pwrite(a, "X", 1, 0) != 1 || pwrite(b, "Y", 1, 1) != 1)
        die("pwrite");
    char buf[16] = { 0 };
    ssize_t n = pread(a, buf, sizeof buf - 1, 0);
    int r = (c >= 0 ? close(c) : 0) | close(a);
    int rb = close(b);
    printf("split|second open %s, a reads %.*s, close %d %d\n", c >= 0 ? "ok" : strerrorname_np(err),
           (int)(n < 0 ? 0 : n), buf, r, rb);
    return 0;
}

/* ---- stall ---- */
static int fd_commit, fd_other;
static volatile int read_done;

static void *commit_once(void *arg)
{
    (void)arg;
    static char c = 'a';
    c = c == 'z' ? 'a' : c + 1; /* changed bytes: the fsync commits */
    if (pwrite(fd_commit, &c, 1, 0) != 1 || fsync(fd_commit) < 0)
        fprintf(stderr, "inode_race: fsync: %s\n", strerror(errno));
    return NULL;
}

/* A stat that pauses after letting go of each lock a commit also takes (the inode's first):
 * the commit starts in that pause, between the stat's two looks at the file. */
static void *stat_once(void *arg)
{
    (void)arg;
    inject("unlock_delay_us", 300000);
    struct stat st;
    stat(key_path, &st);
    inject("unlock_delay_us", 0);
    return NULL;
}

static void *other_read(void *arg)
{
    (void)arg;
    char c;
    if (pread(fd_other, &c, 1, 0) < 0)
        fprintf(stderr, "inode_race: read: %s\n", strerror(errno));
    read_done = 1;
    return NULL;
}

static int mode_stall(const char *other, pid_t server, int rounds)
{
    fd_commit = open(key_path, O_RDWR);
    fd_other = open(other, O_RDONLY);
    if (fd_commit < 0 || fd_other < 0)
        die("open");
    inject("record_locks", 1); /* the locks a commit takes */
    commit_once(NULL);
    inject("record_locks", 0);
    int stalls = 0;
    for (int i = 0; i < rounds; i++) {
        kill(server, SIGSTOP); /* a commit now waits for the server */
        pthread_t a, b, c;
        pthread_create(&b, NULL, stat_once, NULL);
        sleep_ms(100); /* the stat is in its pause after the inode's lock */
        pthread_create(&a, NULL, commit_once, NULL);
        sleep_ms(400); /* the stat looks again, the commit in flight */
        read_done = 0;
        pthread_create(&c, NULL, other_read, NULL);
        for (int w = 0; w < 100 && !read_done; w++)
            sleep_ms(10);
        stalls += !read_done; /* not back within 1 s, the server still stopped */
        kill(server, SIGCONT);
        pthread_join(c, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    }
    close(fd_other);
    int r = close(fd_commit);
    printf("stall|reads stalled by another file's commit: %d of %d, close %d\n", stalls, rounds, r);
    return 0;
}

/* ---- unmap, mremap ---- */
/* at: where (NULL: anywhere) */
static char *map_key(char *at, size_t len)
{
    int fd = open(key_path, O_RDWR);
    if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
        die("open");
    char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    if (close(fd) < 0) /* the mapping keeps the file: nothing committed yet */
        die("close");
    return p;
}

static int mode_unmap(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    char *p = map_key(NULL, 3 * ps);
    p[0] = 'A';
    p[ps] = 'B';
    p[2 * ps] = 'C';
    int a = munmap(p + ps, ps), b = munmap(p, ps), c = munmap(p + 2 * ps, ps);
    printf("unmap|munmap %d %d %d\n", a, b, c);
    raise(SIGKILL); /* what landed was committed by a munmap, not at exit */
    return 1;
}

static int mode_mremap(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    /* two pages reserved, the file mapped over the first: growing it must move it */
    char *area = mmap(NULL, 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        die("reserve");
    char *p = map_key(area, ps);
    int fd = open(key_path, O_RDWR);
    if (fd < 0 || ftruncate(fd, (off_t)(2 * ps)) < 0 || close(fd) < 0)
        die("grow");
    char *q = mremap(p, ps, 2 * ps, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        die("mremap");
    memcpy(q, "MOVED", 5);
    q[ps] = 'T';
    int a = munmap(q, 2 * ps);
    printf("mremap|moved %s, munmap %d\n", q != p ? "yes" : "no", a);
    raise(SIGKILL);
    return 1;
}

/* ---- rawclose ---- */
static long raw_close(int fd)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_close), "D"((long)fd) : "rcx", "r11", "memory");
    return r;
}

static int mode_rawclose(const char *local)
{
    int fd = open(key_path, O_WRONLY | O_TRUNC);
    if (fd < 0 || write(fd, "raw bytes", 9) != 9)
        die("open/write");
    if (raw_close(fd) != 0)
        die("raw close");
    int l = open(local, O_RDONLY);
    int c = close(l);
    printf("rawclose|number reused %s, close %d\n", l == fd ? "yes" : "no", c);
    return 0;
}

/* ---- closerange ---- */
static int mode_closerange(const char *path2)
{
    int a = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int b = open(path2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (a < 0 || b < 0 || write(a, "by close_range", 14) != 14 || write(b, "by syscall", 10) != 10)
        die("open/write");
    int ra = close_range((unsigned)a, (unsigned)a, 0);
    long rb = syscall(SYS_close_range, (unsigned)b, (unsigned)b, 0);
    printf("closerange|%d %ld\n", ra, rb);
    raise(SIGKILL); /* what landed was committed by the close, not at exit */
    return 1;
}

int main(int argc, char **argv)
{
    inject = (void (*)(const char *, int))dlsym(RTLD_DEFAULT, "inject_set");
    if (!inject || argc < 3) {
        fprintf(stderr, "usage: LD_PRELOAD=\"shim inject.so\" inode_race MODE KEYPATH ...\n");
        return 2;
    }
    key_path = argv[2];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(argv[1], "size") && argc == 5)
        return mode_size(argv[3], atoi(argv[4]));
    if (!strcmp(argv[1], "dup"))
        return mode_dup();
    if (!strcmp(argv[1], "split"))
        return mode_split();
    if (!strcmp(argv[1], "rawclose") && argc == 4)
        return mode_rawclose(argv[3]);
    if (!strcmp(argv[1], "closerange") && argc == 4)
        return mode_closerange(argv[3]);
    if (!strcmp(argv[1], "unmap"))
        return mode_unmap();
    if (!strcmp(argv[1], "mremap"))
        return mode_mremap();
    if (!strcmp(argv[1], "stall") && argc == 6)
        return mode_stall(argv[3], (pid_t)atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "inode_race: bad arguments\n");
    return 2;
}
