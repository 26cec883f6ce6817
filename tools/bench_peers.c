/* bench_peers.c -- the token each kind of module gets for `custos bench`: a throwaway token in its
 * own directory (Custos: a CUSTOS_CONF and store; SoftHSM2: a SOFTHSM2_CONF and tokens dir; NSS
 * softoken: a database made by certutil and its configuration string in C_Initialize), or the one
 * the user names with --token. Ends with a logged-in session, as every workload needs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pid_t dir_owner;

bench_kind peer_kind_of(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    const char *b = basename(tmp);
    if (strstr(b, "custos") != NULL)
        return K_CUSTOS;
    if (strstr(b, "softhsm") != NULL)
        return K_SOFTHSM;
    if (strstr(b, "softokn") != NULL)
        return K_NSS;
    return K_GENERIC;
}

bool peer_has_mech(const bench_target *t, CK_MECHANISM_TYPE m)
{
    for (CK_ULONG i = 0; i < t->nmechs; i++)
        if (t->mechs[i] == m)
            return true;
    return false;
}

static int unlink_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

void bench_rmtree(const char *dir)
{
    if (dir[0] != '\0' && getpid() == dir_owner)
        (void)nftw(dir, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- files ------------------------------------------------------------------------------------------ */
static int write_file(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return 0;
}

static bool exists(const char *dir, const char *name)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int make_dir(bench_target *t, const char *workdir, char *err, size_t errlen)
{
    if (workdir != NULL) {
        if (mkdir(workdir, 0700) != 0 && errno != EEXIST)
            goto fail;
        snprintf(t->dir, sizeof(t->dir), "%s/%s", workdir, t->name);
        if (mkdir(t->dir, 0700) != 0 && errno != EEXIST)
            goto fail;
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(t->dir, sizeof(t->dir), "%s/custos-bench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", t->name);
    if (mkdtemp(t->dir) == NULL)
        goto fail;
    t->own_dir = true;
    dir_owner = getpid();
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", workdir ? workdir : "temp dir", strerror(errno));
    return -1;
}

/* NSS's database: `certutil -N` with the PIN as the database password (read from the PIN file,
 * so it is never on a command line). */
static int nss_create_db(bench_target *t, char *err, size_t errlen)
{
    char db[PATH_MAX + 8];
    snprintf(db, sizeof(db), "sql:%s", t->dir);
    char *argv[] = { "certutil", "-N", "-d", db, "-f", t->pin_file, NULL };
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st = 0;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, "certutil", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(err, errlen, "certutil: %s (Debian package libnss3-tools)", strerror(rc));
        return -1;
    }
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "certutil -N -d %s failed", db);
        return -1;
    }
    return 0;
}

/* Each kind's configuration, written to its directory and named by the environment or by
 * C_Initialize's pReserved. */
static int configure(bench_target *t, bool child, char *err, size_t errlen)
{
    char path[PATH_MAX + 32], text[2 * PATH_MAX + 256];
    switch (t->kind) {
    case K_CUSTOS:
        if (t->dir[0] == '\0')
            return 0; /* --token: the user's CUSTOS_CONF */
        snprintf(path, sizeof(path), "%s/store", t->dir);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        /* Set-up uses a fast PIN KDF; the default KDF is measured on BENCH_KDF_LABEL. */
        snprintf(text, sizeof(text), "[store]\npath = %s/store\n[pin]\nkdf = pbkdf2\n"
                 "pbkdf2_iterations = 1000\nmax_retries = 10\n%s", t->dir, t->conf_extra);
        snprintf(path, sizeof(path), "%s/custos.conf", t->dir);
        if (!child && write_file(path, text, err, errlen) != 0)
            return -1;
        snprintf(text, sizeof(text), "[store]\npath = %s/store\n%s", t->dir, t->conf_extra);
        snprintf(path, sizeof(path), "%s/custos-default.conf", t->dir);
        if (!child && write_file(path, text, err, errlen) != 0)
            return -1;
        return 0;
    case K_SOFTHSM:
        if (t->dir[0] == '\0')
            return 0;
        snprintf(path, sizeof(path), "%s/tokens", t->dir);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        snprintf(text, sizeof(text), "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                 "log.level = ERROR\n", t->dir);
        snprintf(path, sizeof(path), "%s/softhsm2.conf", t->dir);
        if (!child && write_file(path, text, err, errlen) != 0)
            return -1;
        return setenv("SOFTHSM2_CONF", path, 1);
    case K_NSS:
        if (t->dir[0] == '\0') {
            snprintf(err, errlen, "NSS softoken needs its database directory: give --nss-dir DIR");
            return -1;
        }
        if (!child && t->prepared && !exists(t->dir, "key4.db") && nss_create_db(t, err, errlen) != 0)
            return -1;
        snprintf(t->nss_args, sizeof(t->nss_args),
                 "configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags=", t->dir);
        return 0;
    default:
        return 0;
    }
}

static int use_conf(const bench_target *t, const char *file)
{
    char path[PATH_MAX + 32];
    if (t->kind != K_CUSTOS || t->dir[0] == '\0')
        return 0;
    snprintf(path, sizeof(path), "%s/%s", t->dir, file);
    return setenv("CUSTOS_CONF", path, 1);
}

static CK_RV init_module(bench_target *t)
{
    return cli_module_init(&t->mod, t->kind == K_NSS ? t->nss_args : NULL);
}

/* PKCS#11 3.2 sec. 5.5: C_InitToken on the empty slot, then the SO sets the user PIN. The slot is
 * looked up again by label afterwards: SoftHSM2 gives an initialised token a new slot id. */
static CK_RV init_token(bench_target *t, const char *label, CK_SLOT_ID *slot)
{
    CK_FUNCTION_LIST_PTR f = t->f;
    char so[CLI_PIN_MAX];
    CK_UTF8CHAR lab[32];
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_SLOT_ID empty;
    CK_RV rv = cli_random_pin(so, sizeof(so)) == 0 ? CKR_OK : CKR_FUNCTION_FAILED;
    if (rv != CKR_OK)
        goto out;
    if ((rv = cli_find_empty_slot(f, &empty)) != CKR_OK)
        goto out;
    cli_pad(lab, sizeof(lab), label);
    if ((rv = f->C_InitToken(empty, (CK_UTF8CHAR_PTR)so, strlen(so), lab)) != CKR_OK)
        goto out;
    if ((rv = cli_find_token(f, label, slot)) != CKR_OK)
        goto out;
    if ((rv = f->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) != CKR_OK)
        goto out;
    if ((rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so, strlen(so))) != CKR_OK)
        goto out;
    rv = f->C_InitPIN(s, (CK_UTF8CHAR_PTR)t->pin, strlen(t->pin));
    (void)f->C_Logout(s);
out:
    if (s != CK_INVALID_HANDLE)
        (void)f->C_CloseSession(s);
    cli_wipe(so, sizeof(so));
    return rv;
}

static int load_pin(bench_target *t, const bench_prep_opts *o, bool child, char *err, size_t errlen)
{
    if (o->token != NULL && !child) {
        if (o->pin_file != NULL)
            snprintf(t->pin_file, sizeof(t->pin_file), "%s", o->pin_file);
        char prompt[96];
        snprintf(prompt, sizeof(prompt), "User PIN of token '%s': ", o->token);
        return cli_read_pin(o->pin_file, prompt, t->pin, sizeof(t->pin), err, errlen);
    }
    if (!child)
        snprintf(t->pin_file, sizeof(t->pin_file), "%s/pin", t->dir);
    if (child || access(t->pin_file, F_OK) == 0)
        return cli_read_pin(t->pin_file, "", t->pin, sizeof(t->pin), err, errlen);
    if (cli_random_pin(t->pin, sizeof(t->pin)) != 0) {
        snprintf(err, errlen, "no random bytes for a PIN");
        return -1;
    }
    char line[CLI_PIN_MAX + 2];
    snprintf(line, sizeof(line), "%s\n", t->pin);
    int rc = write_file(t->pin_file, line, err, errlen);
    cli_wipe(line, sizeof(line));
    return rc;
}

static int fail_rv(char *err, size_t errlen, const bench_target *t, const char *what, CK_RV rv)
{
    snprintf(err, errlen, "%s on %s: %s%s", what, t->path, cli_rv_name(rv),
             rv == CKR_PIN_INCORRECT ? " (wrong PIN)" : "");
    return -1;
}

/* Custos: the KDF token is made under custos-default.conf (the module's default PIN KDF), then
 * the module is restarted under the fast configuration. Both share the store. */
static int custos_kdf_token(bench_target *t, char *err, size_t errlen)
{
    CK_SLOT_ID slot;
    CK_RV rv;
    if (use_conf(t, "custos-default.conf") != 0)
        return fail_rv(err, errlen, t, "setenv CUSTOS_CONF", CKR_GENERAL_ERROR);
    if ((rv = init_module(t)) != CKR_OK)
        return fail_rv(err, errlen, t, "C_Initialize", rv);
    rv = cli_find_token(t->f, BENCH_KDF_LABEL, &slot);
    if (rv == CKR_TOKEN_NOT_PRESENT)
        rv = init_token(t, BENCH_KDF_LABEL, &slot);
    (void)t->f->C_Finalize(NULL);
    t->mod.initialized = false;
    if (rv != CKR_OK)
        return fail_rv(err, errlen, t, "preparing the default-KDF token", rv);
    return 0;
}

int peer_prepare(bench_target *t, const bench_prep_opts *o, bool child, char *err, size_t errlen)
{
    CK_RV rv;
    const char *label = o->token != NULL ? o->token : BENCH_LABEL;

    if (cli_module_load(&t->mod, t->path, err, errlen) != 0)
        return -1;
    t->f = t->mod.f;
    t->prepared = o->token == NULL;
    if (!child && t->prepared && make_dir(t, o->workdir, err, errlen) != 0)
        return -1;
    if (o->token != NULL && t->kind == K_NSS && o->nss_dir != NULL && !child)
        snprintf(t->dir, sizeof(t->dir), "%s", o->nss_dir);
    if (load_pin(t, o, child, err, errlen) != 0)
        return -1;
    if (configure(t, child, err, errlen) != 0)
        return -1;
    if (t->kind == K_NSS)
        label = "NSS Certificate DB"; /* the softoken's key and certificate database token */
    if (t->kind == K_CUSTOS && t->prepared && o->want_kdf_token && !child &&
        custos_kdf_token(t, err, errlen) != 0)
        return -1;
    if (use_conf(t, "custos.conf") != 0)
        return fail_rv(err, errlen, t, "setenv CUSTOS_CONF", CKR_GENERAL_ERROR);
    if ((rv = init_module(t)) != CKR_OK)
        return fail_rv(err, errlen, t, "C_Initialize", rv);
    snprintf(t->label, sizeof(t->label), "%s", label);
    rv = cli_find_token(t->f, label, &t->slot);
    /* A token the bench means to make but finds already there: made by an earlier run on a
     * module whose token storage the bench does not set up (a generic module), with that
     * run's PIN. */
    bool found_unmade = rv == CKR_OK && t->prepared && !child && t->kind == K_GENERIC &&
                        o->workdir == NULL;
    if (rv == CKR_TOKEN_NOT_PRESENT && t->prepared && !child && t->kind != K_NSS)
        rv = init_token(t, label, &t->slot);
    if (rv == CKR_TOKEN_NOT_PRESENT) {
        snprintf(err, errlen, "no token labelled '%s' on %s", label, t->path);
        return -1;
    }
    if (rv != CKR_OK)
        return fail_rv(err, errlen, t, "preparing the token", rv);
    if (t->kind == K_CUSTOS && t->dir[0] != '\0')
        t->has_kdf_token = cli_find_token(t->f, BENCH_KDF_LABEL, &t->kdf_slot) == CKR_OK;
    rv = t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->login_s);
    if (rv != CKR_OK)
        return fail_rv(err, errlen, t, "C_OpenSession", rv);
    rv = t->f->C_Login(t->login_s, CKU_USER, (CK_UTF8CHAR_PTR)t->pin, strlen(t->pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        char what[96];
        if (found_unmade && rv == CKR_PIN_INCORRECT) {
            snprintf(err, errlen,
                     "token '%s' on %s was not made by this run (the bench cannot set up where "
                     "this module keeps its tokens, so an earlier run left it): give it with "
                     "--token and --pin-file, or remove it", label, t->path);
            return -1;
        }
        snprintf(what, sizeof(what), "C_Login to token '%s'", label);
        return fail_rv(err, errlen, t, what, rv);
    }
    rv = t->f->C_GetMechanismList(t->slot, NULL, &t->nmechs);
    if (rv == CKR_OK) {
        t->mechs = calloc(t->nmechs + 1, sizeof(*t->mechs));
        rv = t->mechs == NULL ? CKR_HOST_MEMORY : t->f->C_GetMechanismList(t->slot, t->mechs, &t->nmechs);
    }
    if (rv != CKR_OK)
        return fail_rv(err, errlen, t, "C_GetMechanismList", rv);
    return 0;
}

void peer_release(bench_target *t)
{
    if (t->f != NULL && t->mod.initialized && t->login_s != CK_INVALID_HANDLE) {
        (void)t->f->C_Logout(t->login_s);
        (void)t->f->C_CloseSession(t->login_s);
    }
    if (t->f != NULL)
        cli_module_unload(&t->mod);
    t->f = NULL;
    free(t->mechs);
    t->mechs = NULL;
    cli_wipe(t->pin, sizeof(t->pin));
    if (t->own_dir)
        bench_rmtree(t->dir);
}

int peer_configure(bench_target *t, char *err, size_t errlen)
{
    if (configure(t, true, err, errlen) != 0)
        return -1;
    return use_conf(t, "custos.conf");
}

CK_RV peer_initialize(bench_target *t)
{
    return init_module(t);
}
