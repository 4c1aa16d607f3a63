/* main.c: the `asya-state` command's entry: --help, --version and the dispatch table of
 * subcommands (one line each; the subcommand's code lives in cli/NAME.c, declared in cli.h). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct cli_cmd cli_cmds[] = {
    { "serve", cmd_serve, "sidecar mode: Asya's state-proxy connector on CONNECTOR_SOCKET" },
    { "run", cmd_run, "preload mode: run -- CMD [ARGS] with the shim preloaded" },
    { "health", cmd_health, "sidecar health check: GET /healthz on CONNECTOR_SOCKET, exit 0 on 200" },
    { "check", cmd_check, "diagnose the configuration, server, buckets and mounts" },
    { "bucket", cmd_bucket, "bucket add NAME [options]: create a KV bucket" },
    { "ls", cmd_ls, "ls [PATH]: list the state below PATH (names decoded)" },
    { "cat", cmd_cat, "cat PATH: print a state file's value" },
    { "rev", cmd_rev, "rev PATH: print a state file's KV revision" },
};

static void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: asya-state COMMAND [ARGS...]\n"
            "       asya-state --help | --version\n"
            "\n"
            "The nats-kv-buffered-cas connector of the Asya state proxy.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        fprintf(out, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
    fprintf(out, "\nRun `asya-state COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        cli_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("asya-state %s\n", ASYA_STATE_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        if (strcmp(name, cli_cmds[i].name) == 0)
            return cli_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "asya-state: unknown command '%s'\n\n", name);
    cli_usage(stderr);
    return CLI_USAGE;
}
