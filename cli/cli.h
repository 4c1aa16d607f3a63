/* cli.h: the `asya-state` command's subcommands and what they share. main.c owns the
 * dispatch table (one line per subcommand); each family lives in its own cli/ file:
 *   browse.c  ls, cat, rev, key (and the mount table / PATH resolution, browse.h)
 *   edit.c    put, rm, revert          history.c  history, watch
 *   bucket.c  bucket add               bucket_admin.c  bucket ls, info, rm
 *   check.c   check    run.c  run     serve*.c  serve
 *   util.c    exit statuses, error lines, option parsing, durations, sizes, times, JSON
 *
 * Contract of every cmd_NAME: argv[0] is the subcommand's name, argv[1..] its arguments
 * (parsed with getopt_long: --opt=value and --opt value, -- ends the options, -h/--help);
 * returns the process exit status (CLI_*); prints its own messages, each error once, on
 * stderr, as "asya-state NAME: ..."; never exit()s.
 */
#ifndef ASYA_CLI_H
#define ASYA_CLI_H

#include <stdint.h>
#include <stdio.h>

/* The file VERSION, passed by the Makefile (-DASYA_STATE_VERSION=...). */
#ifndef ASYA_STATE_VERSION
#define ASYA_STATE_VERSION "unknown"
#endif

/* Exit statuses shared by the subcommands (documented in --help, the man page, README). */
enum {
    CLI_OK = 0,     /* success */
    CLI_FAIL = 1,   /* not found, conflict, is/is not a directory: about the PATH asked */
    CLI_USAGE = 2,  /* bad command line */
    CLI_ERROR = 3,  /* server or configuration problem (unreachable, refused, no bucket) */
};

/* Sidecar mode: Asya's state-proxy connector protocol on CONNECTOR_SOCKET (cli/serve.c). */
int cmd_serve(int argc, char **argv);
/* Preload mode: exec a command with the shim preloaded (cli/run.c). */
int cmd_run(int argc, char **argv);
/* The sidecar's health check: GET /healthz on CONNECTOR_SOCKET (cli/health.c). */
int cmd_health(int argc, char **argv);
/* Diagnosis of the setup (cli/check.c). */
int cmd_check(int argc, char **argv);
/* `bucket add|ls|info|edit|rm` (cli/bucket.c, cli/bucket_admin.c). */
int cmd_bucket(int argc, char **argv);
int bucket_ls(int argc, char **argv);
int bucket_info(int argc, char **argv);
int bucket_edit(int argc, char **argv);
int bucket_rm(int argc, char **argv);
/* ls, cat, rev, key: the state as the shim sees it (cli/browse.c). */
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_rev(int argc, char **argv);
int cmd_key(int argc, char **argv);
/* put, rm, revert (cli/edit.c). */
int cmd_put(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_revert(int argc, char **argv);
/* history, watch (cli/history.c). */
int cmd_history(int argc, char **argv);
int cmd_watch(int argc, char **argv);

/* ---- util.c ---- */

/* The exit status for a negative errno: CLI_FAIL for what concerns the PATH (ENOENT,
 * EEXIST, EISDIR, ENOTDIR, ENOTEMPTY, ENAMETOOLONG, EFBIG), CLI_ERROR for the rest. */
int cli_status(int r);

/* One error line "asya-state CMD: ..." on stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the kv/ log lines held so far (the CLI holds them, see cli_hold_log) as
 * "asya-state CMD: ..." lines, without nats.c's "(file.c:123)" locations. Returns the
 * number of lines written. */
int cli_flush_log(const char *cmd);
/* Holds kv/'s log lines from now on, so that a failure is reported once, in one place. */
void cli_hold_log(void);

/* Removes nats.c's source locations ("(kv.c:316): ", " (jsm.c:1033)") from line. */
void cli_strip_locations(char *line);

/* Reports the failure r of WHAT (a path, may be NULL) once and returns its exit status:
 * the held kv/ lines when they explain a server or configuration problem, else
 * "WHAT: <text>" with the text a user acts on. */
int cli_fail(const char *cmd, const char *what, int r);

/* After getopt_long returned '?' or ':' (optstring starts with ':'): one line naming the
 * option, a hint to --help; returns CLI_USAGE. */
int cli_bad_option(const char *cmd, int c, char **argv);
/* "asya-state CMD: <msg>" and the --help hint; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The footer every --help ends with: environment and exit statuses. */
void cli_help_footer(FILE *out);

/* Go-style duration ("1h30m", "0.5s", "90s", "1500ms", "7d"; "0") -> ns. 0 or -EINVAL. */
int cli_duration(const char *s, int64_t *ns);
/* ns -> "1h30m0s" style (Go's), into out. */
void cli_duration_str(int64_t ns, char *out, size_t outsz);
/* "1MiB", "512KiB", "1MB", "1048576" -> bytes, at most INT32_MAX (a value size: nats.c's
 * MaxValueSize is an int32). 0 or -EINVAL. */
int cli_size(const char *s, int64_t *out);
/* The same, at most max (a stream's MaxBytes is an int64). 0 or -EINVAL. */
int cli_size_max(const char *s, int64_t max, int64_t *out);
/* A decimal integer in lo..hi. 0 or -EINVAL. */
int cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* ns since the epoch -> "2006-01-02T15:04:05Z" (UTC), into out (at least 32 bytes). */
void cli_time_str(int64_t ns, char *out, size_t outsz);

/* Prints s as a JSON string (quoted, escaped; bytes that are not UTF-8 as \u00XX). */
void cli_json_str(FILE *out, const char *s);

#endif
