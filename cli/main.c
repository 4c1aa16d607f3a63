/* main.c: the `asya-state` command's entry: global options (--server, --creds, --bucket,
 * which set the environment every layer reads), --help, --version and the dispatch table
 * of subcommands (one line each; a family's code lives in its cli/ file, declared in cli.h).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct cli_cmd cli_cmds[] = {
    { "ls", cmd_ls, "ls [-l] [--json] [PATH...]: list the state (names decoded)" },
    { "cat", cmd_cat, "cat PATH...: print values" },
    { "put", cmd_put, "put [--create|--revision N] PATH [FILE|-]: write a value" },
    { "rm", cmd_rm, "rm [-d] [-f] PATH...: delete values (and empty directories)" },
    { "rev", cmd_rev, "rev PATH: print a value's KV revision" },
    { "key", cmd_key, "key PATH...: print the raw NATS KV key of a path" },
    { "history", cmd_history, "history [--json] PATH: the revisions the bucket keeps" },
    { "revert", cmd_revert, "revert PATH REV: write an earlier revision's value again" },
    { "watch", cmd_watch, "watch [--json] [PATH]: one line per change until interrupted" },
    { "bucket", cmd_bucket, "bucket add|ls|info|edit|rm: manage KV buckets" },
    { "check", cmd_check, "check [--read-only | --fix]: diagnose configuration, server, buckets, markers" },
    { "run", cmd_run, "run -- CMD [ARGS]: run CMD with the shim preloaded" },
    { "health", cmd_health, "health: the sidecar's GET /healthz on CONNECTOR_SOCKET, exit 0 on 200" },
    { "serve", cmd_serve, "serve: sidecar mode, Asya's connector on CONNECTOR_SOCKET" },
};

static void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state [--server URL] [--creds FILE] [--bucket NAME] COMMAND [ARGS...]\n"
            "       asya-state --help | --version\n"
            "\n"
            "The nats-kv-buffered-cas connector of the Asya state proxy: state files kept in\n"
            "a NATS JetStream Key-Value bucket.\n"
            "\n"
            "  -s, --server URL   NATS server URL(s) (sets NATS_URL)\n"
            "      --creds FILE   .creds file (sets NATS_CREDS_FILE)\n"
            "  -b, --bucket NAME  KV bucket (sets NATS_KV_BUCKET)\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        fprintf(out, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
    fprintf(out, "\nRun `asya-state COMMAND --help` for a command's options; man asya-state.\n");
    cli_help_footer(out);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "server", required_argument, NULL, 's' }, { "creds", required_argument, NULL, 'C' },
        { "bucket", required_argument, NULL, 'b' }, { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
    };
    /* '+': the options before COMMAND only; the command parses its own */
    for (int c; (c = getopt_long(argc, argv, "+:s:b:hV", lo, NULL)) != -1;) {
        switch (c) {
        case 's': setenv("NATS_URL", optarg, 1); break;
        case 'C': setenv("NATS_CREDS_FILE", optarg, 1); break;
        case 'b': setenv("NATS_KV_BUCKET", optarg, 1); break;
        case 'h':
            cli_usage(stdout);
            return CLI_OK;
        case 'V':
            printf("asya-state %s\n", ASYA_STATE_VERSION);
            return CLI_OK;
        default:
            return cli_bad_option("", c, argv);
        }
    }
    if (optind >= argc) {
        cli_usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        cli_usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        if (strcmp(name, cli_cmds[i].name) == 0) {
            int rc = cli_cmds[i].run(argc - optind, argv + optind);
            cli_flush_log(name); /* warnings held until the end (a bad ASYA_STATE_LOG) */
            return rc;
        }
    fprintf(stderr, "asya-state: unknown command '%s'\nTry 'asya-state --help'.\n", name);
    return CLI_USAGE;
}
