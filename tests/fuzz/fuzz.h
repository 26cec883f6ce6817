/* fuzz.h -- what the libFuzzer harnesses of tests/fuzz/ share: the entry
 * points libFuzzer calls, a check that aborts (so that libFuzzer keeps the
 * input as a crash), and the seed writer run.sh uses (FUZZ_SEED_DIR). */
#ifndef CUSTOS_TESTS_FUZZ_H
#define CUSTOS_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property of the code under test does not hold: report and abort. */
#define FUZZ_CHECK(cond)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                     \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Write one seed input as $FUZZ_SEED_DIR/name. */
static inline void fuzz_seed(const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", getenv("FUZZ_SEED_DIR"), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* run.sh runs each harness once with FUZZ_SEED_DIR set: the harness writes
 * valid inputs made with the project's own encoders there and exits, so the
 * seeds follow the formats as they change. */
static inline void fuzz_seeds_if_asked(void (*write_seeds)(void))
{
    if (getenv("FUZZ_SEED_DIR") == NULL)
        return;
    write_seeds();
    exit(0);
}

#endif
