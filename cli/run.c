/* run.c: `asya-state run -- CMD [ARGS]`, the preload mode's launcher. Owns finding the
 * library to preload (ASYA_STATE_LIB, else installed beside the binary, else the build
 * directory beside it), checking the environment the shim needs, and the execvp itself.
 * An LD_PRELOAD already set is kept, after ours.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_LIB_NAME "libasya-state-nats-kv.so"

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state run [--] CMD [ARGS...]\n"
            "\n"
            "Preload mode: runs CMD with the shim preloaded (LD_PRELOAD), so its file I/O\n"
            "under the mounts goes to the NATS JetStream KV bucket.\n"
            "\n"
            "The library is ASYA_STATE_LIB when set, else ../lib/asya/" RUN_LIB_NAME "\n"
            "relative to this binary, else " RUN_LIB_NAME " beside it (a build directory).\n"
            "\n"
            "environment: NATS_URL, NATS_KV_BUCKET (required unless every mount of\n"
            "ASYA_STATE_PROXY_MOUNTS names bucket=); see `asya-state check`.\n"
            "\nexit status: CMD's; 2 usage error; 3 configuration problem (nothing run);\n"
            "126/127 CMD cannot be run / was not found.\n");
}

/* The directory of this binary, into dir (no trailing '/'). 0 or a negative errno. */
static int run_self_dir(char *dir, size_t sz)
{
    ssize_t n = readlink("/proc/self/exe", dir, sz - 1);
    if (n < 0)
        return -errno;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -ENOENT;
    *slash = '\0';
    return 0;
}

/* The library to preload, into out. 0, or -ENOENT after a message saying what to do. */
static int run_find_lib(char *out, size_t sz)
{
    const char *env = getenv("ASYA_STATE_LIB");
    if (env && *env) {
        if (access(env, R_OK) != 0) {
            fprintf(stderr, "asya-state run: ASYA_STATE_LIB=%s: %s (point it at %s)\n", env,
                    strerror(errno), RUN_LIB_NAME);
            return -ENOENT;
        }
        snprintf(out, sz, "%s", env);
        return 0;
    }
    char dir[PATH_MAX];
    int r = run_self_dir(dir, sizeof dir);
    if (r == 0) {
        const char *cand[] = { "%s/../lib/asya/" RUN_LIB_NAME, "%s/" RUN_LIB_NAME };
        for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
            char p[PATH_MAX + 64];
            snprintf(p, sizeof p, cand[i], dir);
            char *real = realpath(p, NULL);
            if (real && strlen(real) < sz) {
                snprintf(out, sz, "%s", real);
                free(real);
                return 0;
            }
            free(real);
        }
    }
    fprintf(stderr, "asya-state run: cannot find %s beside %s (run `make install`, or set "
                    "ASYA_STATE_LIB to the library)\n", RUN_LIB_NAME, r == 0 ? dir : "this binary");
    return -ENOENT;
}

/* 1 when every ASYA_STATE_PROXY_MOUNTS entry names its bucket (then NATS_KV_BUCKET may be
 * unset); a rough test, `asya-state check` does the real parse. */
static int run_mounts_name_buckets(void)
{
    const char *m = getenv("ASYA_STATE_PROXY_MOUNTS");
    if (!m || !*m)
        return 0;
    int entries = 1, buckets = 0;
    for (const char *p = m; *p; p++)
        entries += *p == ';';
    for (const char *p = m; (p = strstr(p, "bucket=")); p++)
        buckets++;
    return buckets >= entries;
}

int cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    optind = 0;
    /* '+': the first non-option is CMD, whose own options are its own */
    for (int c; (c = getopt_long(argc, argv, "+:h", lo, NULL)) != -1;) {
        if (c == 'h') {
            run_usage(stdout);
            return CLI_OK;
        }
        return cli_bad_option("run", c, argv);
    }
    int i = optind;
    if (i >= argc)
        return cli_usage_error("run", "no command given");
    const char *url = getenv("NATS_URL"), *bucket = getenv("NATS_KV_BUCKET");
    if (!url || !*url) {
        fprintf(stderr, "asya-state run: NATS_URL is not set (e.g. "
                        "export NATS_URL=nats://127.0.0.1:4222)\n");
        return CLI_ERROR;
    }
    if ((!bucket || !*bucket) && !run_mounts_name_buckets()) {
        fprintf(stderr, "asya-state run: NATS_KV_BUCKET is not set (export it; create the "
                        "bucket with `asya-state bucket add NAME`)\n");
        return CLI_ERROR;
    }
    char lib[PATH_MAX];
    if (run_find_lib(lib, sizeof lib) < 0)
        return CLI_ERROR;

    const char *old = getenv("LD_PRELOAD");
    char *pre = NULL;
    if (old && *old && strstr(old, lib) == NULL) {
        if (asprintf(&pre, "%s:%s", lib, old) < 0)
            return CLI_FAIL;
    } else if (!(pre = strdup(old && *old ? old : lib))) {
        return CLI_FAIL;
    }
    if (setenv("LD_PRELOAD", pre, 1) != 0) {
        free(pre);
        fprintf(stderr, "asya-state run: cannot set LD_PRELOAD: %s\n", strerror(errno));
        return CLI_FAIL;
    }
    free(pre);
    execvp(argv[i], argv + i);
    int e = errno;
    fprintf(stderr, "asya-state run: cannot run %s: %s\n", argv[i], strerror(e));
    return e == ENOENT ? 127 : 126;
}
