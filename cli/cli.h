/* cli.h: the `asya-state` command's subcommands. main.c owns the dispatch table (one line
 * per subcommand); each subcommand lives in its own cli/NAME.c and is declared here.
 *
 * Contract of every cmd_NAME: argv[0] is the subcommand's name, argv[1..] its arguments;
 * returns the process exit status (0 success, 1 failure, 2 usage error); prints its own
 * messages (usage to stdout on --help, errors via common/log.h or stderr); never exit()s.
 */
#ifndef ASYA_CLI_H
#define ASYA_CLI_H

/* The file VERSION, passed by the Makefile (-DASYA_STATE_VERSION=...). */
#ifndef ASYA_STATE_VERSION
#define ASYA_STATE_VERSION "unknown"
#endif

/* Exit statuses shared by the subcommands. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Sidecar mode: Asya's state-proxy connector protocol on CONNECTOR_SOCKET (cli/serve.c). */
int cmd_serve(int argc, char **argv);
/* Preload mode: exec a command with the shim preloaded (cli/run.c). */
int cmd_run(int argc, char **argv);
/* The sidecar's health check: GET /healthz on CONNECTOR_SOCKET (cli/health.c). */
int cmd_health(int argc, char **argv);
/* Diagnosis of the setup (cli/check.c). */
int cmd_check(int argc, char **argv);
/* `bucket add NAME ...` (cli/bucket.c). */
int cmd_bucket(int argc, char **argv);
/* ls, cat, rev: the state as the shim sees it (cli/browse.c). */
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_rev(int argc, char **argv);

#endif
