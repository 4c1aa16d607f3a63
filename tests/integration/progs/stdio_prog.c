/* stdio_prog: C stdio file I/O for the integration tests, knowing nothing of NATS.
 *
 *   stdio_prog write PATH TEXT     fopen "w", fprintf "%s\n", fclose
 *   stdio_prog append PATH TEXT    fopen "a", fputs TEXT "\n", fclose
 *   stdio_prog read PATH           fopen "r", fgets line by line to stdout, fclose
 *   stdio_prog seek PATH           fopen "w+", write "0123456789", fseek 3 / fputc 'X',
 *                                  fseek end / ftell (printed), rewind / fgets (printed), fclose
 *   stdio_prog patch PATH OFF C    fopen "r+", fseek OFF, fputc C, fclose
 *   stdio_prog leave PATH TEXT     fopen "w", fputs TEXT, exit(0) with the stream still open
 *   stdio_prog excl PATH TEXT      fopen "wx", fputs TEXT, fclose
 *   stdio_prog reopen PATH TEXT    freopen(PATH, "w", stdout), printf TEXT, fclose(stdout)
 *
 * Exit 0 when every call succeeded; otherwise prints "<call>: <errno name>" on stderr and
 * exits 1 (excl prints "fopen: EEXIST" for an existing file).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ename(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    default: return strerror(e);
    }
}

static int failed(const char *call)
{
    fprintf(stderr, "%s: %s\n", call, ename(errno));
    return 1;
}

static FILE *open_or_die(const char *path, const char *mode)
{
    FILE *f = fopen(path, mode);
    if (!f) {
        failed("fopen");
        exit(1);
    }
    return f;
}

static int finish(FILE *f)
{
    return fclose(f) == EOF ? failed("fclose") : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stdio_prog write|append|read|seek|patch|leave|excl|reopen "
                        "PATH [ARG...]\n");
        return 2;
    }
    const char *cmd = argv[1], *path = argv[2], *text = argc > 3 ? argv[3] : "";
    if (strcmp(cmd, "write") == 0) {
        FILE *f = open_or_die(path, "w");
        if (fprintf(f, "%s\n", text) < 0)
            return failed("fprintf");
        return finish(f);
    }
    if (strcmp(cmd, "append") == 0) {
        FILE *f = open_or_die(path, "a");
        if (fputs(text, f) == EOF || fputc('\n', f) == EOF)
            return failed("fputs");
        return finish(f);
    }
    if (strcmp(cmd, "read") == 0) {
        FILE *f = open_or_die(path, "r");
        char line[256];
        while (fgets(line, sizeof line, f))
            fputs(line, stdout);
        if (ferror(f))
            return failed("fgets");
        return finish(f);
    }
    if (strcmp(cmd, "seek") == 0) {
        FILE *f = open_or_die(path, "w+");
        char line[64];
        if (fputs("0123456789", f) == EOF || fseek(f, 3, SEEK_SET) < 0 || fputc('X', f) == EOF)
            return failed("write");
        if (fseek(f, 0, SEEK_END) < 0)
            return failed("fseek");
        long end = ftell(f);
        rewind(f);
        if (!fgets(line, sizeof line, f))
            return failed("fgets");
        printf("%ld %s\n", end, line);
        return finish(f);
    }
    if (strcmp(cmd, "patch") == 0 && argc > 4) {
        FILE *f = open_or_die(path, "r+");
        if (fseek(f, atol(argv[3]), SEEK_SET) < 0 || fputc(argv[4][0], f) == EOF)
            return failed("patch");
        return finish(f);
    }
    if (strcmp(cmd, "leave") == 0) {
        FILE *f = open_or_die(path, "w");
        if (fputs(text, f) == EOF)
            return failed("fputs");
        exit(0); /* the stream is flushed by exit; the shim must commit after that */
    }
    if (strcmp(cmd, "excl") == 0) {
        FILE *f = open_or_die(path, "wx");
        if (fputs(text, f) == EOF)
            return failed("fputs");
        return finish(f);
    }
    if (strcmp(cmd, "reopen") == 0) {
        if (!freopen(path, "w", stdout))
            return failed("freopen");
        if (printf("%s\n", text) < 0)
            return failed("printf");
        return finish(stdout);
    }
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}
