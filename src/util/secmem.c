/* Secure memory for key bytes: 64 KiB mmap'ed arenas, each cut into slots of
 * one power-of-two size class (16..4096 bytes); bigger requests get their own
 * mapping. Bitmaps and lists live in the ordinary heap, outside the secure
 * pages, so a stray write into a key buffer cannot corrupt the bookkeeping. */
#include "util/secmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ARENA_SIZE ((size_t)64 * 1024)
#define MIN_SHIFT 4  /* 16-byte slots: also the alignment every slot gets */
#define MAX_SHIFT 12 /* 4096-byte slots; larger requests are mapped alone */
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define MAX_SLOTS (ARENA_SIZE >> MIN_SHIFT)

typedef struct arena {
    struct arena *next;
    uint8_t *base;
    size_t used;
    uint64_t bits[MAX_SLOTS / 64]; /* bit set = slot handed out */
} arena;

typedef struct big {
    struct big *next;
    uint8_t *base;
    size_t len;
} big;

/* One lock for everything: key allocation is rare next to key use. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static arena *arenas[NCLASSES];
static big *bigs;
static bool mlock_refused;

/* Holding the lock across fork keeps a child from inheriting it locked by
 * a thread that no longer exists there. */
static void fork_lock(void) { pthread_mutex_lock(&lock); }
static void fork_unlock(void) { pthread_mutex_unlock(&lock); }
static void register_atfork(void) { pthread_atfork(fork_lock, fork_unlock, fork_unlock); }

static void *map_secure(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Best effort: RLIMIT_MEMLOCK is often small. After the first refusal
     * keep going unlocked rather than fail every allocation. */
    if (!mlock_refused && mlock(p, len) != 0)
        mlock_refused = true;
    /* Kernels before 3.4 / 4.14 answer EINVAL to these two: carry on. */
    if ((madvise(p, len, MADV_DONTDUMP) != 0 && errno != EINVAL) ||
        (madvise(p, len, MADV_WIPEONFORK) != 0 && errno != EINVAL)) {
        munmap(p, len);
        return NULL;
    }
    return p;
}

static unsigned class_of(size_t n)
{
    if (n <= ((size_t)1 << MIN_SHIFT))
        return 0;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - MIN_SHIFT;
}

static size_t slot_size(unsigned c) { return (size_t)1 << (c + MIN_SHIFT); }

static void *alloc_slot_locked(unsigned c)
{
    size_t nslots = ARENA_SIZE / slot_size(c);
    arena *a = arenas[c];
    while (a != NULL && a->used == nslots)
        a = a->next;
    if (a == NULL) {
        a = calloc(1, sizeof(*a));
        if (a == NULL)
            return NULL;
        a->base = map_secure(ARENA_SIZE);
        if (a->base == NULL) {
            free(a);
            return NULL;
        }
        a->next = arenas[c];
        arenas[c] = a;
    }
    /* used < nslots, so the lowest clear bit is a real slot. */
    size_t w = 0;
    while (a->bits[w] == UINT64_MAX)
        w++;
    size_t i = w * 64 + (size_t)__builtin_ctzll(~a->bits[w]);
    a->bits[w] |= (uint64_t)1 << (i % 64);
    a->used++;
    /* Fresh pages are zero and every free wipes its slot: no memset here. */
    return a->base + i * slot_size(c);
}

static void *alloc_big_locked(size_t n)
{
    big *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->len = n;
    b->base = map_secure(n);
    if (b->base == NULL) {
        free(b);
        return NULL;
    }
    b->next = bigs;
    bigs = b;
    return b->base;
}

void *secmem_alloc(size_t n)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&lock);
    void *p = n > slot_size(NCLASSES - 1) ? alloc_big_locked(n) : alloc_slot_locked(class_of(n));
    pthread_mutex_unlock(&lock);
    return p;
}

/* The arena link and slot index of a live slot of class c holding p. */
static arena **find_slot_locked(const void *p, unsigned c, size_t *idx)
{
    const uint8_t *q = p;
    for (arena **link = &arenas[c]; *link != NULL; link = &(*link)->next) {
        arena *a = *link;
        if (q < a->base || q >= a->base + ARENA_SIZE)
            continue;
        size_t off = (size_t)(q - a->base);
        *idx = off / slot_size(c);
        bool live = a->bits[*idx / 64] & ((uint64_t)1 << (*idx % 64));
        return off % slot_size(c) == 0 && live ? link : NULL;
    }
    return NULL;
}

static big **find_big_locked(const void *p)
{
    for (big **link = &bigs; *link != NULL; link = &(*link)->next)
        if ((*link)->base == p)
            return link;
    return NULL;
}

static void free_slot_locked(void *p, unsigned c)
{
    size_t i = 0;
    arena **link = find_slot_locked(p, c, &i);
    if (link == NULL)
        abort(); /* double free or wrong size: memory safety is already lost */
    arena *a = *link;
    secmem_wipe(p, slot_size(c));
    a->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
    /* Return an empty arena unless it is the last of its class, so locked
     * memory tracks what is in use without churning on a single key. */
    if (--a->used == 0 && (link != &arenas[c] || a->next != NULL)) {
        *link = a->next;
        munmap(a->base, ARENA_SIZE);
        free(a);
    }
}

void secmem_trim(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned c = 0; c < NCLASSES; c++) {
        arena **link = &arenas[c];
        while (*link != NULL) {
            arena *a = *link;
            if (a->used == 0) {
                *link = a->next;
                munmap(a->base, ARENA_SIZE);
                free(a);
            } else {
                link = &a->next;
            }
        }
    }
    pthread_mutex_unlock(&lock);
}

void secmem_free(void *p, size_t n)
{
    if (p == NULL)
        return;
    big *b = NULL;
    pthread_mutex_lock(&lock);
    if (n > slot_size(NCLASSES - 1)) {
        big **link = find_big_locked(p);
        if (link == NULL || (*link)->len != n)
            abort();
        b = *link;
        *link = b->next;
    } else {
        free_slot_locked(p, class_of(n));
    }
    pthread_mutex_unlock(&lock);
    if (b != NULL) {
        secmem_wipe(b->base, b->len);
        munmap(b->base, b->len);
        free(b);
    }
}

void *secmem_dup(const void *src, size_t n)
{
    void *p = secmem_alloc(n);
    if (p != NULL && n > 0)
        memcpy(p, src, n);
    return p;
}

bool secmem_owns(const void *p)
{
    bool owned = false;
    size_t i;
    pthread_mutex_lock(&lock);
    for (unsigned c = 0; c < NCLASSES && !owned; c++)
        owned = find_slot_locked(p, c, &i) != NULL;
    owned = owned || find_big_locked(p) != NULL;
    pthread_mutex_unlock(&lock);
    return owned;
}

void secmem_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

bool ct_memeq(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    uint64_t diff = 0;
    size_t i = 0;
    /* Eight bytes at a time (it runs on every AES-GCM init, comparing the
     * key with the cached one), every byte always read: the time depends on
     * n only. */
    for (; i + 8 <= n; i += 8) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        diff |= u ^ v;
        /* No early exit: the compiler may not assume what diff holds. */
        __asm__ __volatile__("" : "+r"(diff));
    }
    for (; i < n; i++) {
        diff |= (uint64_t)(x[i] ^ y[i]);
        __asm__ __volatile__("" : "+r"(diff));
    }
    return diff == 0;
}
