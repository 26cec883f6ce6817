/* cli.h -- helpers shared by the subcommands of the `custos` tool: loading any PKCS#11 module by
 * path (dlopen, never linked), CK_RV names, PINs (file or terminal, never argv or the environment),
 * slot selection by label and small parsing helpers. Nothing here knows Custos internals. */
#ifndef CUSTOS_TOOLS_CLI_H
#define CUSTOS_TOOLS_CLI_H

#define CK_PKCS11_NO_PROTOTYPES 1 /* dlopen only: the tool never links a module */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "pkcs11.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A subcommand: one row of the table in custos.c. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
    const char *summary;                 /* one line for `custos --help` */
    const char *usage;                   /* full text for `custos help CMD` */
} cli_command;

/* The subcommands (one file each in tools/); their rows are in custos.c. */
int bench_main(int argc, char **argv);
extern const char bench_usage[];
int audit_main(int argc, char **argv);
extern const char audit_usage[];
int user_main(int argc, char **argv);
extern const char user_usage[];
int encrypt_main(int argc, char **argv);   /* tools/cmd_envelope.c */
extern const char encrypt_usage[];
int decrypt_main(int argc, char **argv);
extern const char decrypt_usage[];
int rewrap_main(int argc, char **argv);
extern const char rewrap_usage[];
int inspect_main(int argc, char **argv);
extern const char inspect_usage[];
int dek_main(int argc, char **argv);
extern const char dek_usage[];
int key_main(int argc, char **argv);       /* tools/cmd_key.c */
extern const char key_usage[];

extern const char *cli_prog;             /* "custos" or "custos bench", for messages */

/* One line on stderr, prefixed with cli_prog. Never pass a secret. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- modules -------------------------------------------------------------------------------- */
typedef struct cli_module {
    void *lib;
    char path[4096];
    CK_FUNCTION_LIST_PTR f;              /* the 2.40 list: everything the tools call is in it */
    CK_VERSION version;                  /* cryptoki version the list announces */
    bool initialized;
} cli_module;

/* dlopen PATH and get its function list (C_GetInterface("PKCS 11") if exported, else
 * C_GetFunctionList). On failure returns -1 with a one-line reason in err. */
int cli_module_load(cli_module *m, const char *path, char *err, size_t errlen);
/* C_Initialize with OS locking and the given pReserved (NULL for most modules). */
CK_RV cli_module_init(cli_module *m, void *reserved);
/* C_Finalize if initialized, then dlclose. */
void cli_module_unload(cli_module *m);

const char *cli_rv_name(CK_RV rv);

/* The slot whose token carries LABEL (compared blank-padded). CKR_TOKEN_NOT_PRESENT if none. */
CK_RV cli_find_token(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot);
/* The first slot with a present but uninitialised token. CKR_TOKEN_NOT_PRESENT if none. */
CK_RV cli_find_empty_slot(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID *slot);
/* A blank-padded 32-byte label from a C string. */
void cli_pad(CK_UTF8CHAR *dst, size_t dstlen, const char *src);

/* ---- PINs -------------------------------------------------------------------------------------- */
#define CLI_PIN_MAX 256
/* The first line of FILE (mode is not checked, the trailing newline is dropped), or, with file ==
 * NULL, a prompt on the controlling terminal with echo off. Returns -1 with a reason in err. */
int cli_read_pin(const char *file, const char *prompt, char *pin, size_t cap, char *err, size_t errlen);
/* A throwaway PIN: 16 random bytes as 32 lower-case hex digits (cap >= 33). */
int cli_random_pin(char *pin, size_t cap);
/* Zero a buffer that held a secret; the compiler may not drop it. */
void cli_wipe(void *p, size_t n);

/* ---- token sessions of the envelope and key commands (tools/cmd_envelope.c) ------------------------ */
/* Options every such command takes; getopt_long codes and rows (needs <getopt.h>). */
enum { CLI_OPT_MODULE = 0x100, CLI_OPT_TOKEN, CLI_OPT_SLOT, CLI_OPT_PIN_FILE, CLI_OPT_USER, CLI_OPT_KEY };
#define CLI_TOKEN_LONGOPTS                                                                      \
    { "module", required_argument, NULL, CLI_OPT_MODULE },                                      \
    { "token", required_argument, NULL, CLI_OPT_TOKEN },                                        \
    { "slot", required_argument, NULL, CLI_OPT_SLOT },                                          \
    { "pin-file", required_argument, NULL, CLI_OPT_PIN_FILE }

typedef struct cli_token_opts {
    const char *module;                  /* --module PATH, or NULL */
    const char *token;                   /* --token LABEL or pkcs11: URI (RFC 7512), or NULL */
    long slot;                           /* --slot N; -1 if not given */
    const char *pin_file;                /* --pin-file FILE, or NULL */
    const char *user;                    /* log in by name (C_LoginUser), or NULL */
    const char *key;                     /* --key LABEL or pkcs11: URI (may name the token too) */
    bool custos_only;                    /* refuse, before any login, a module without the vendor list */
} cli_token_opts;

typedef struct cli_token {
    cli_module m;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE sh;
    bool session, logged_in;
    const struct CK_CUSTOS_FUNCTION_LIST *vendor; /* "Vendor Custos" 1.0, NULL on other tokens */
    char key_label[256];                 /* from --key: the label (family); "" if none */
    unsigned char key_id[256];           /* from a --key URI's id=, key_id_len bytes */
    size_t key_id_len;
} cli_token;

/* Handle a CLI_OPT_* option: 0 done, -1 a bad value (said on stderr). */
int cli_token_opt(cli_token_opts *o, int code, const char *arg);
/* Load the module, pick the token (--slot, --token label or URI, a --key URI's token part, or the
 * only initialised one), open a R/W session and log in as `who` (CKU_SO, CKU_USER; CK_UNAVAILABLE_-
 * INFORMATION: no login). Every failure is one line on stderr; returns -1 then. */
int cli_token_open(cli_token *t, const cli_token_opts *o, CK_USER_TYPE who);
void cli_token_close(cli_token *t);
/* What a CK_RV means for a user of these commands, or NULL. */
const char *cli_token_why(CK_RV rv);
/* A JSON string (UTF-8 passed through, '"', '\\' and control bytes escaped). */
void cli_json_string(FILE *f, const char *s);

/* ---- parsing ------------------------------------------------------------------------------------ */
int cli_parse_double(const char *s, double min, double max, double *out);
int cli_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* The Custos module to load when --module is not given: $CUSTOS_MODULE, the build tree or
 * install prefix next to this program, or the configured pkcs11 module folder. -1: none. */
int cli_default_module(char *path, size_t cap);

#endif
