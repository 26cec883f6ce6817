/* The API test program: loads the built module (CUSTOS_MODULE), creates the
 * shared test token, registers one CUnit suite per spec area and runs them.
 * Arguments, if any, name the suites to run (e.g. `test_api cipher keys`).
 * Exit status is non-zero when any assertion failed. */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

int t_chacha_register(void); /* t_chacha.c */
int t_families_register(void); /* t_families.c */
int t_message_register(void); /* t_message.c */

static const struct {
    const char *name;
    int (*reg)(void);
} SUITES[] = {
    { "general", t_general_register }, { "session", t_session_register },
    { "object", t_object_register },   { "cipher", t_cipher_register },
    { "keys", t_keys_register },       { "digest", t_digest_register },
    { "threads", t_threads_register }, { "fork", t_fork_register },
    { "roles", t_roles_register },     { "chacha", t_chacha_register },
    { "families", t_families_register }, { "message", t_message_register },
};

static int wanted(int argc, char **argv, const char *name)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

/* The token every suite shares; made here, outside any test, so that a
 * failure to make it is reported once and stops the run. */
static int make_shared_token(void)
{
    CK_RV rv = F->C_Initialize(NULL);
    if (rv != CKR_OK) {
        fprintf(stderr, "C_Initialize: %s\n", h_rv_name(rv));
        return -1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return -1;
    /* h_new_token asserts; run it inside a one-test suite so a failure is
     * reported by CUnit like any other. */
    return 0;
}

static void test_shared_token_is_created(void)
{
    h_new_token(&H, "api-main", 1);
}

int main(int argc, char **argv)
{
    int status = 1;
    if (h_load() != 0) {
        h_unload();
        return 1;
    }
    if (make_shared_token() != 0)
        goto out;
    {
        CU_pSuite s = CU_add_suite("setup", NULL, NULL);
        if (s == NULL || CU_add_test(s, "shared_token_is_created",
                                     test_shared_token_is_created) == NULL)
            goto out;
        CU_basic_set_mode(CU_BRM_VERBOSE);
        CU_basic_run_suite(s);
        if (CU_get_number_of_failures() != 0) {
            fprintf(stderr, "cannot create the shared test token: stopping\n");
            goto out;
        }
        (void)F->C_Finalize(NULL);
        /* Not again in the full run below (and not counted as a failure). */
        CU_set_suite_active(s, CU_FALSE);
        CU_set_fail_on_inactive(CU_FALSE);
    }
    for (size_t i = 0; i < NELEM(SUITES); i++)
        if (wanted(argc, argv, SUITES[i].name) && SUITES[i].reg() != 0) {
            fprintf(stderr, "cannot register suite %s\n", SUITES[i].name);
            goto out;
        }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    {
        unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
        unsigned run = CU_get_number_of_tests_run();
        status = (run == 0 || failed != 0) ? 1 : 0;
    }
out:
    CU_cleanup_registry();
    h_unload();
    return status;
}
