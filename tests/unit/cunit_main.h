/* One main() for every CUnit test program: a test file defines
 * `static const cunit_case CASES[]` (name, function) and calls
 * CUNIT_MAIN("suite name", CASES, setup, teardown). Exit status is non-zero
 * when any assertion failed, so automake counts the program as FAIL. */
#ifndef CUSTOS_TESTS_CUNIT_MAIN_H
#define CUSTOS_TESTS_CUNIT_MAIN_H

#include <CUnit/Basic.h>
#include <stdlib.h>

typedef struct cunit_case {
    const char *name;
    void (*fn)(void);
} cunit_case;

#define CASE(f) { #f, f }

static inline int cunit_run(const char *suite_name, const cunit_case *cases, size_t n,
                            int (*setup)(void), int (*teardown)(void))
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite(suite_name, setup, teardown);
    if (s == NULL)
        return 2;
    for (size_t i = 0; i < n; i++)
        if (CU_add_test(s, cases[i].name, cases[i].fn) == NULL)
            return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0)
        return 1; /* a test program that runs nothing is a failure */
    return failed ? 1 : 0;
}

#define CUNIT_MAIN(name, cases, setup, teardown)                               \
    int main(void)                                                             \
    {                                                                          \
        return cunit_run(name, cases, sizeof(cases) / sizeof(cases[0]), setup, \
                         teardown);                                            \
    }

#endif
