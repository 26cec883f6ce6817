/* bench.h -- what `custos bench` (bench.c) shares with the token preparation of each kind of module
 * (bench_peers.c): the target a workload runs on, either a PKCS#11 module with a token and a
 * logged-in session, or plain OpenSSL EVP in this process. */
#ifndef CUSTOS_TOOLS_BENCH_H
#define CUSTOS_TOOLS_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include "cli.h"

typedef enum bench_kind { K_CUSTOS, K_SOFTHSM, K_NSS, K_GENERIC, K_OPENSSL } bench_kind;

typedef struct bench_target {
    bench_kind kind;
    char name[32];                  /* custos, softhsm2, nss, openssl or the module's file name */
    char path[PATH_MAX];            /* module path ("" for openssl) */
    cli_module mod;
    CK_FUNCTION_LIST_PTR f;
    /* The token: prepared by the bench in dir (own_dir: a temp dir removed at exit; else
     * --workdir/<name>, kept for reuse), or given by --token and --pin-file (dir may be "",
     * except for NSS: its configuration directory). */
    char dir[PATH_MAX];
    bool own_dir;
    bool prepared;                  /* made by the bench: its objects are the bench's */
    char label[33];
    CK_SLOT_ID slot;
    char pin[CLI_PIN_MAX];
    char pin_file[PATH_MAX + 16];      /* for child processes: the same PIN */
    char nss_args[PATH_MAX + 128];  /* NSS softoken: C_Initialize pReserved */
    CK_SESSION_HANDLE login_s;      /* holds the login (PKCS#11 3.2 sec. 5.6: per application) */
    /* Custos only: a second token whose PIN was set under the module's default KDF (scrypt), so
     * the login cost a deployment pays is measured apart from the fast set-up KDF. */
    bool has_kdf_token;
    CK_SLOT_ID kdf_slot;
    CK_MECHANISM_TYPE *mechs;
    CK_ULONG nmechs;
    int gcm_layout;                 /* 0 unknown, 48 or 40: sizeof the CK_GCM_PARAMS it accepts */
    /* Custos only: --custos-conf-extra settings, as INI lines appended to the bench's custos.conf
     * (e.g. "[audit]\nenabled = no\n"), so one run can measure one setting against another. */
    char conf_extra[1024];
} bench_target;

#define BENCH_LABEL "custos-bench"
#define BENCH_KDF_LABEL "custos-bench-kdf"

typedef struct bench_prep_opts {
    const char *workdir;            /* NULL: a fresh temp dir per target */
    const char *token;              /* --token LABEL (first module only), NULL: prepare one */
    const char *pin_file;           /* with --token; NULL: prompt on the terminal */
    const char *nss_dir;            /* with --token on NSS: its configdir */
    bool want_kdf_token;            /* Custos: also prepare BENCH_KDF_LABEL */
    bool quiet;
} bench_prep_opts;

bench_kind peer_kind_of(const char *path);
/* Load the module, give it its configuration, initialise it, prepare or find the token and log
 * in. For a child process (child = true) the token must exist: dir and pin_file come from the
 * parent. Returns -1 with a one-line reason in err. */
int peer_prepare(bench_target *t, const bench_prep_opts *o, bool child, char *err, size_t errlen);
/* Logout, C_Finalize, remove an own temp dir (only in the process that made it). */
void peer_release(bench_target *t);
/* For a child that times its own start (open-login): set the module's configuration from t->dir
 * (environment or t->nss_args) without loading anything, then C_Initialize an already loaded
 * module with it. */
int peer_configure(bench_target *t, char *err, size_t errlen);
CK_RV peer_initialize(bench_target *t);
bool peer_has_mech(const bench_target *t, CK_MECHANISM_TYPE m);

/* rm -rf of a directory the bench made. */
void bench_rmtree(const char *dir);

#endif
