/* Unit tests of policy/config.c: defaults, every key, and refusal of
 * unknown keys, bad values and unreadable files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cunit_main.h"
#include "policy/config.h"

static char dir[] = "/tmp/custos-config-XXXXXX";
static char path[512];

static int setup(void)
{
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/custos.conf", dir);
    return 0;
}

static int teardown(void)
{
    unlink(path);
    rmdir(dir);
    return 0;
}

static CK_RV load_text(const char *text, custos_config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return config_load_file(cfg, path, err, errlen);
}

static void test_defaults_are_safe(void)
{
    custos_config c;
    config_defaults(&c);
    CU_ASSERT_EQUAL(c.pin_max_retries, 10);
    CU_ASSERT_EQUAL(c.kdf.alg, KDF_SCRYPT);
    CU_ASSERT(c.kdf.p1 >= 15);
    CU_ASSERT_FALSE(c.legacy_modes);
    CU_ASSERT(c.store_path[0] == '/');
    CU_ASSERT_EQUAL(c.store_mmap_mib, 2047);
}

static void test_store_path_only_is_enough(void)
{
    custos_config c;
    char err[256];
    CU_ASSERT_EQUAL(load_text("[store]\npath = /some/dir\n", &c, err, sizeof(err)), CKR_OK);
    CU_ASSERT_STRING_EQUAL(c.store_path, "/some/dir");
    CU_ASSERT_EQUAL(c.pin_max_retries, 10);
    CU_ASSERT_STRING_EQUAL(c.source, path);
}

static void test_every_key_is_read(void)
{
    custos_config c;
    char err[256];
    CU_ASSERT_EQUAL(load_text("[store]\npath=/x\nmmap_mib=0\n[pin]\nmax_retries=3\nmin_length=6\n"
                              "max_length=64\nkdf=pbkdf2\npbkdf2_iterations=2000\n"
                              "[policy]\nlegacy_modes=yes\n",
                              &c, err, sizeof(err)),
                    CKR_OK);
    CU_ASSERT_EQUAL(c.pin_max_retries, 3);
    CU_ASSERT_EQUAL(c.pin_min_len, 6);
    CU_ASSERT_EQUAL(c.pin_max_len, 64);
    CU_ASSERT_EQUAL(c.kdf.alg, KDF_PBKDF2_SHA256);
    CU_ASSERT_EQUAL(c.kdf.p1, 2000);
    CU_ASSERT_TRUE(c.legacy_modes);
    CU_ASSERT_EQUAL(c.store_mmap_mib, 0);
}

static void test_scrypt_cost_is_configurable(void)
{
    custos_config c;
    char err[256];
    CU_ASSERT_EQUAL(load_text("[pin]\nkdf=scrypt\nscrypt_log2n=12\n", &c, err, sizeof(err)), CKR_OK);
    CU_ASSERT_EQUAL(c.kdf.alg, KDF_SCRYPT);
    CU_ASSERT_EQUAL(c.kdf.p1, 12);
}

static void test_unknown_key_is_refused(void)
{
    custos_config c;
    char err[256] = "";
    CU_ASSERT_EQUAL(load_text("[store]\npaht=/x\n", &c, err, sizeof(err)), CKR_GENERAL_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown setting"));
}

static void test_bad_values_are_refused(void)
{
    custos_config c;
    char err[256];
    const char *bad[] = {
        "[pin]\nmax_retries=0\n",     "[pin]\nmax_retries=ten\n", "[pin]\nkdf=md5\n",
        "[pin]\nscrypt_log2n=30\n",   "[pin]\npbkdf2_iterations=10\n",
        "[policy]\nlegacy_modes=maybe\n", "[store]\npath=relative/dir\n",
        "[pin]\nmin_length=10\nmax_length=5\n", "[store\npath=/x\n",
        "[store]\nmmap_mib=2048\n", "[store]\nmmap_mib=-1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(load_text(bad[i], &c, err, sizeof(err)), CKR_GENERAL_ERROR);
}

static void test_unreadable_file_is_an_error(void)
{
    custos_config c;
    char err[256] = "";
    CU_ASSERT_EQUAL(config_load_file(&c, "/nonexistent/custos.conf", err, sizeof(err)), CKR_GENERAL_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read"));
}

static void test_custos_conf_env_is_honoured(void)
{
    custos_config c;
    char err[256];
    CU_ASSERT_EQUAL(load_text("[store]\npath=/from/env\n", &c, err, sizeof(err)), CKR_OK);
    setenv("CUSTOS_CONF", path, 1);
    CU_ASSERT_EQUAL(config_load(&c, err, sizeof(err)), CKR_OK);
    CU_ASSERT_STRING_EQUAL(c.store_path, "/from/env");
    setenv("CUSTOS_CONF", "/nonexistent/x.conf", 1);
    CU_ASSERT_EQUAL(config_load(&c, err, sizeof(err)), CKR_GENERAL_ERROR);
    unsetenv("CUSTOS_CONF");
}

static void test_xdg_data_home_picks_the_default_store(void)
{
    custos_config c;
    setenv("XDG_DATA_HOME", "/xdg/data", 1);
    config_defaults(&c);
    CU_ASSERT_STRING_EQUAL(c.store_path, "/xdg/data/custos");
    unsetenv("XDG_DATA_HOME");
}

static const cunit_case CASES[] = {
    CASE(test_defaults_are_safe),
    CASE(test_store_path_only_is_enough),
    CASE(test_every_key_is_read),
    CASE(test_scrypt_cost_is_configurable),
    CASE(test_unknown_key_is_refused),
    CASE(test_bad_values_are_refused),
    CASE(test_unreadable_file_is_an_error),
    CASE(test_custos_conf_env_is_honoured),
    CASE(test_xdg_data_home_picks_the_default_store),
};

CUNIT_MAIN("config", CASES, setup, teardown)
