/* Unit tests for src/util/secmem.c: size classes and large mappings, zeroed
 * allocations, ownership, concurrent use, wipe-on-fork, and the
 * constant-time comparison. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "util/be.h"
#include "util/secmem.h"

static bool all_byte(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

#define NSIZES 23
static const size_t SIZES[NSIZES] = { 0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 128, 255, 256, 513,
                                1024, 2000, 2048, 4095, 4096, 4097, 8192, 65536, 100000 };

static void test_alloc_free_many_sizes(void)
{
    uint8_t *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = secmem_alloc(SIZES[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
        CU_ASSERT((uintptr_t)p[i] % 16 == 0);
        CU_ASSERT(all_byte(p[i], SIZES[i], 0));
        CU_ASSERT(secmem_owns(p[i]));
        memset(p[i], (int)(i + 1), SIZES[i]);
    }
    /* no two live allocations overlap: each still holds its own pattern */
    for (size_t i = 0; i < NSIZES; i++)
        CU_ASSERT(all_byte(p[i], SIZES[i], (uint8_t)(i + 1)));
    for (size_t i = 0; i < NSIZES; i++) {
        secmem_free(p[i], SIZES[i]);
        CU_ASSERT(!secmem_owns(p[i]));
    }
}

static void test_alloc_after_free_returns_zeroed_memory(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        uint8_t *p = secmem_alloc(SIZES[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        memset(p, 0xff, SIZES[i]);
        secmem_free(p, SIZES[i]);
        /* the same slot comes back first: it must have been wiped */
        uint8_t *q = secmem_alloc(SIZES[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(q);
        CU_ASSERT(all_byte(q, SIZES[i], 0));
        secmem_free(q, SIZES[i]);
    }
}

static void test_alloc_zero_gives_distinct_valid_pointers(void)
{
    void *a = secmem_alloc(0), *b = secmem_alloc(0);
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_PTR_NOT_EQUAL(a, b);
    CU_ASSERT(secmem_owns(a) && secmem_owns(b));
    secmem_free(a, 0);
    secmem_free(b, 0);
    secmem_free(NULL, 16); /* freeing NULL is a no-op */
}

static void test_owns_rejects_foreign_and_interior_pointers(void)
{
    int local = 0;
    uint8_t *heap = malloc(32);
    uint8_t *p = secmem_alloc(64), *big = secmem_alloc(10000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    CU_ASSERT(!secmem_owns(&local));
    CU_ASSERT(!secmem_owns(heap));
    CU_ASSERT(!secmem_owns(NULL));
    CU_ASSERT(!secmem_owns(p + 1));
    CU_ASSERT(!secmem_owns(p + 64)); /* the next, unallocated slot */
    CU_ASSERT(!secmem_owns(big + 16));
    CU_ASSERT(secmem_owns(p) && secmem_owns(big));
    secmem_free(p, 64);
    secmem_free(big, 10000);
    free(heap);
}

static void test_large_allocations_get_their_own_mapping(void)
{
    const size_t n = (size_t)1 << 20;
    uint8_t *a = secmem_alloc(n), *b = secmem_alloc(n + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT(all_byte(a, n, 0) && all_byte(b, n + 1, 0));
    memset(a, 0x11, n);
    memset(b, 0x22, n + 1);
    CU_ASSERT(all_byte(a, n, 0x11) && all_byte(b, n + 1, 0x22));
    CU_ASSERT(secmem_owns(a) && secmem_owns(b));
    secmem_free(a, n);
    secmem_free(b, n + 1);
    CU_ASSERT(!secmem_owns(a) && !secmem_owns(b));
}

/* More 32-byte slots than one 64 KiB arena holds, freed out of order. */
static void test_many_allocations_span_several_arenas(void)
{
    enum { N = 5000 };
    static uint8_t *p[N];
    for (size_t i = 0; i < N; i++) {
        p[i] = secmem_alloc(32);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p[i]);
        memcpy(p[i], &i, sizeof(i));
    }
    for (size_t i = 0; i < N; i += 2)
        secmem_free(p[i], 32);
    for (size_t i = 1; i < N; i += 2) {
        size_t v;
        memcpy(&v, p[i], sizeof(v));
        CU_ASSERT_EQUAL(v, i);
        secmem_free(p[i], 32);
    }
    for (size_t i = 0; i < N; i++)
        CU_ASSERT(!secmem_owns(p[i]));
}

static void test_dup_copies_into_secure_memory(void)
{
    const char key[] = "0123456789abcdef0123456789abcdef";
    uint8_t *p = secmem_dup(key, 32);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT(secmem_owns(p));
    CU_ASSERT(memcmp(p, key, 32) == 0);
    secmem_free(p, 32);
}

typedef struct worker {
    unsigned seed;
    int failures;
} worker;

static void *churn(void *arg)
{
    worker *w = arg;
    uint8_t *held[16] = { 0 };
    size_t len[16] = { 0 };
    uint8_t mark = (uint8_t)(w->seed | 1);
    for (int it = 0; it < 3000; it++) {
        size_t k = (size_t)rand_r(&w->seed) % 16;
        if (held[k] != NULL) {
            if (!all_byte(held[k], len[k], mark))
                w->failures++;
            secmem_free(held[k], len[k]);
            held[k] = NULL;
            continue;
        }
        len[k] = (size_t)rand_r(&w->seed) % 6000;
        held[k] = secmem_alloc(len[k]);
        if (held[k] == NULL || !all_byte(held[k], len[k], 0)) {
            w->failures++;
            continue;
        }
        memset(held[k], mark, len[k]);
    }
    for (size_t k = 0; k < 16; k++)
        secmem_free(held[k], len[k]);
    return NULL;
}

static void test_threads_allocate_concurrently(void)
{
    enum { T = 8 };
    pthread_t th[T];
    worker w[T];
    for (unsigned i = 0; i < T; i++) {
        w[i] = (worker){ .seed = 2 * i + 1, .failures = 0 };
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, churn, &w[i]), 0);
    }
    for (unsigned i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(w[i].failures, 0);
    }
}

static bool kernel_has_wipeonfork(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    bool ok = madvise(p, 4096, MADV_WIPEONFORK) == 0;
    munmap(p, 4096);
    return ok;
}

static void test_fork_child_sees_wiped_pages(void)
{
    uint8_t *small = secmem_alloc(48), *big = secmem_alloc(20000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(small);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(small, 0xab, 48);
    memset(big, 0xcd, 20000);
    bool expect_wipe = kernel_has_wipeonfork();
    if (!expect_wipe)
        printf("\n  note: kernel lacks MADV_WIPEONFORK; only the parent side is checked\n");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        bool wiped = all_byte(small, 48, 0) && all_byte(big, 20000, 0);
        /* the allocator keeps working in the child */
        uint8_t *q = secmem_alloc(48);
        bool works = q != NULL && all_byte(q, 48, 0);
        secmem_free(q, 48);
        _exit(works && (wiped || !expect_wipe) ? 0 : 1);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the parent's copy is untouched */
    CU_ASSERT(all_byte(small, 48, 0xab) && all_byte(big, 20000, 0xcd));
    secmem_free(small, 48);
    secmem_free(big, 20000);
}

static void test_wipe_zeroes_exactly_n_bytes(void)
{
    uint8_t b[32];
    memset(b, 0x5a, sizeof(b));
    secmem_wipe(b + 4, 20);
    CU_ASSERT(all_byte(b, 4, 0x5a));
    CU_ASSERT(all_byte(b + 4, 20, 0));
    CU_ASSERT(all_byte(b + 24, 8, 0x5a));
    secmem_wipe(NULL, 0);
}

static void test_ct_memeq_compares_every_byte(void)
{
    uint8_t a[64], b[64];
    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    CU_ASSERT(ct_memeq(a, b, sizeof(a)));
    CU_ASSERT(ct_memeq(a, b, 0));
    b[0] ^= 1;
    CU_ASSERT(!ct_memeq(a, b, sizeof(a)));
    CU_ASSERT(ct_memeq(a + 1, b + 1, sizeof(a) - 1));
    b[0] ^= 1;
    b[63] ^= 0x80;
    CU_ASSERT(!ct_memeq(a, b, sizeof(a)));
    CU_ASSERT(ct_memeq(a, b, 63));
    b[63] ^= 0x80;
    /* Every length (whole words and a tail), every position, unaligned
     * starts: one differing bit anywhere is found. */
    for (size_t off = 0; off < 3; off++)
        for (size_t n = 1; n <= 20; n++)
            for (size_t p = 0; p < n; p++) {
                b[off + p] ^= 0x10;
                CU_ASSERT(!ct_memeq(a + off, b + off, n));
                CU_ASSERT(ct_memeq(a + off, b + off, p));
                b[off + p] ^= 0x10;
                CU_ASSERT(ct_memeq(a + off, b + off, n));
            }
}

static void test_be_put_and_get_are_big_endian_and_round_trip(void)
{
    uint8_t b[9];
    memset(b, 0xEE, sizeof(b));
    be_put(b, 0x0102030405060708ull, 8);
    static const uint8_t want[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    CU_ASSERT(memcmp(b, want, 8) == 0);
    CU_ASSERT_EQUAL(b[8], 0xEE); /* nothing past n */
    CU_ASSERT_EQUAL(be_get(b, 8), 0x0102030405060708ull);
    /* n bytes: the low ones of v. */
    be_put(b, 0xAABBCCDDu, 2);
    CU_ASSERT_EQUAL(b[0], 0xCC);
    CU_ASSERT_EQUAL(b[1], 0xDD);
    CU_ASSERT_EQUAL(b[2], 3);
    CU_ASSERT_EQUAL(be_get(b, 2), 0xCCDD);
    CU_ASSERT_EQUAL(be_get(b, 1), 0xCC);
    for (unsigned n = 1; n <= 8; n++) {
        uint64_t v = 0xF1E2D3C4B5A69788ull >> (64 - 8 * n);
        be_put(b, v, n);
        CU_ASSERT_EQUAL(be_get(b, n), v);
        CU_ASSERT_EQUAL(b[0], 0xF1);
    }
}

static const cunit_case CASES[] = {
    CASE(test_be_put_and_get_are_big_endian_and_round_trip),
    CASE(test_alloc_free_many_sizes),
    CASE(test_alloc_after_free_returns_zeroed_memory),
    CASE(test_alloc_zero_gives_distinct_valid_pointers),
    CASE(test_owns_rejects_foreign_and_interior_pointers),
    CASE(test_large_allocations_get_their_own_mapping),
    CASE(test_many_allocations_span_several_arenas),
    CASE(test_dup_copies_into_secure_memory),
    CASE(test_threads_allocate_concurrently),
    CASE(test_fork_child_sees_wiped_pages),
    CASE(test_wipe_zeroes_exactly_n_bytes),
    CASE(test_ct_memeq_compares_every_byte),
};

CUNIT_MAIN("secmem", CASES, NULL, NULL)
