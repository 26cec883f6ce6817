/* fuzz_config.c -- libFuzzer harness of the configuration file parser
 * (policy/config.c over libinih): the input is the file's text, handed to
 * config_load_file through a memfd, and an accepted file must give values
 * inside the ranges config.h documents. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "policy/config.h"
#include "fuzz.h"

static int FD = -1;
static char PATH[64];

static void check_loaded(const custos_config *c)
{
    FUZZ_CHECK(c->store_path[0] == '/' && memchr(c->store_path, 0, sizeof(c->store_path)) != NULL);
    FUZZ_CHECK(strcmp(c->source, PATH) == 0);
    FUZZ_CHECK(c->pin_max_retries >= 1 && c->pin_max_retries <= 100);
    FUZZ_CHECK(c->pin_min_len >= 1 && c->pin_min_len <= c->pin_max_len);
    FUZZ_CHECK(c->pin_max_len <= 4096);
    if (c->kdf.alg == KDF_SCRYPT)
        FUZZ_CHECK(c->kdf.p1 >= 10 && c->kdf.p1 <= 22 && c->kdf.p2 == 8 && c->kdf.p3 == 1);
    else
        FUZZ_CHECK(c->kdf.alg == KDF_PBKDF2_SHA256 && c->kdf.p1 >= 1000 && c->kdf.p1 <= 100000000);
    FUZZ_CHECK(c->audit.flush_ms >= 10 && c->audit.flush_ms <= 60000);
    FUZZ_CHECK(c->audit.alert_window_s >= 1 && c->audit.alert_window_s <= 86400);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The error buffer's size varies with the input, so that truncated
     * messages are exercised too; it is allocated exactly for ASan. */
    static const size_t ERRLENS[] = { 1, 7, 40, 256 };
    size_t errlen = ERRLENS[size % 4];
    char *err = malloc(errlen);
    custos_config *cfg = malloc(sizeof(*cfg));
    FUZZ_CHECK(err != NULL && cfg != NULL);
    memset(err, 'E', errlen);
    FUZZ_CHECK(ftruncate(FD, 0) == 0);
    FUZZ_CHECK(pwrite(FD, data, size, 0) == (ssize_t)size);
    CK_RV rv = config_load_file(cfg, PATH, err, errlen);
    if (rv == CKR_OK)
        check_loaded(cfg);
    else
        FUZZ_CHECK(rv == CKR_GENERAL_ERROR && memchr(err, 0, errlen) != NULL);
    free(cfg);
    free(err);
    return 0;
}

static void write_seeds(void)
{
    static const char FULL[] =
        "[store]\npath = /var/lib/custos\n"
        "[pin]\nmax_retries = 10\nmin_length = 4\nmax_length = 255\nkdf = scrypt\n"
        "scrypt_log2n = 15\n"
        "[policy]\nlegacy_modes = no\ncaller_iv = count\n"
        "[audit]\nenabled = yes\nrequired = no\ndata_ops = aggregate\nflush_ms = 1000\n"
        "syslog = no\n"
        "[alerts]\nwindow_seconds = 60\ndecrypt_per_user = 0\ndecrypt_per_key = 0\n"
        "action = log\n";
    static const char PBKDF2[] =
        "; comment\n[pin]\nkdf = pbkdf2\npbkdf2_iterations = 600000\n"
        "[policy]\nlegacy_modes = true\ncaller_iv = refuse\n"
        "[audit]\ndata_ops = each\nrequired = on\n[alerts]\naction = deny\n";
    static const char BAD[] = "[pin]\nmin_length = 300\n[nope]\nx = 1\n";
    fuzz_seed("full.conf", FULL, sizeof(FULL) - 1);
    fuzz_seed("pbkdf2.conf", PBKDF2, sizeof(PBKDF2) - 1);
    fuzz_seed("bad.conf", BAD, sizeof(BAD) - 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_seeds_if_asked(write_seeds);
    /* One in-memory file for the whole run, read back through its
     * /proc/self/fd path: config_load_file only takes a path. */
    FD = memfd_create("custos-fuzz-config", MFD_CLOEXEC);
    FUZZ_CHECK(FD >= 0);
    snprintf(PATH, sizeof(PATH), "/proc/self/fd/%d", FD);
    return 0;
}
