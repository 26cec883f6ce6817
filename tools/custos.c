/* custos.c -- the `custos` command-line tool: a table of {name, function, help} subcommands in the
 * WireGuard style. A new subcommand is one row here and one file in tools/. Handles `custos --help`,
 * `custos help CMD`, `custos CMD --help` and `custos --version`. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "custos.h"

static const cli_command COMMANDS[] = {
    { "bench", bench_main, "measure a PKCS#11 module (Custos, SoftHSM2, NSS, ...) and compare it",
      bench_usage },
    { "audit", audit_main, "verify, export and follow a token's audit trail", audit_usage },
    { "user", user_main, "add, remove and list a token's users and their roles", user_usage },
    { "key", key_main, "create, rotate, list, suspend and resume key families", key_usage },
    { "encrypt", encrypt_main, "seal data as an envelope under a key family (any token)",
      encrypt_usage },
    { "decrypt", decrypt_main, "open an envelope; only verified data is released", decrypt_usage },
    { "rewrap", rewrap_main, "move envelopes and DEK files to the newest key version",
      rewrap_usage },
    { "inspect", inspect_main, "describe an envelope or DEK file (never a secret)", inspect_usage },
    { "dek", dek_main, "make a wrapped data key for one dataset (encrypt --dek)", dek_usage },
};

static void show_usage(FILE *out)
{
    fprintf(out, "Usage: custos COMMAND [OPTIONS]\n\nCommands:\n");
    for (size_t i = 0; i < NELEM(COMMANDS); i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n`custos help COMMAND` or `custos COMMAND --help` describes a command.\n");
}

static const cli_command *lookup(const char *name)
{
    for (size_t i = 0; i < NELEM(COMMANDS); i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

static int show_help(const char *name)
{
    const cli_command *c = lookup(name);
    if (c == NULL) {
        cli_err("unknown command '%s' (see custos --help)", name);
        return 2;
    }
    fputs(c->usage, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        show_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        show_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("custos %d.%d\n", CUSTOS_VERSION_MAJOR, CUSTOS_VERSION_MINOR);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            show_usage(stdout);
            return 0;
        }
        return show_help(argv[2]);
    }
    const cli_command *c = lookup(cmd);
    if (c == NULL) {
        cli_err("unknown command '%s' (see custos --help)", cmd);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return show_help(cmd);
    static char prog[64];
    snprintf(prog, sizeof(prog), "custos %s", c->name);
    cli_prog = prog;
    return c->run(argc - 1, argv + 1);
}
