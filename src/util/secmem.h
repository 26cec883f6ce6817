/* Secure memory: the only place key bytes live. Pages are mlock'ed (best
 * effort), excluded from core dumps (MADV_DONTDUMP) and wiped in a child
 * after fork (MADV_WIPEONFORK); every free zeroes first. */
#ifndef CUSTOS_UTIL_SECMEM_H
#define CUSTOS_UTIL_SECMEM_H

#include <stddef.h>
#include <stdbool.h>

/* Zeroed allocation of n bytes (n may be 0: returns a valid unique pointer).
 * NULL on exhaustion. Thread-safe. */
void *secmem_alloc(size_t n);
/* Wipe n bytes at p and release. p may be NULL. n must be the size given to
 * secmem_alloc. */
void secmem_free(void *p, size_t n);
/* Copy n bytes into fresh secure memory; NULL on exhaustion. */
void *secmem_dup(const void *src, size_t n);
/* True when p was returned by secmem_alloc and not yet freed (for tests). */
bool secmem_owns(const void *p);

/* Return every arena that has no slot in use to the system (C_Finalize
 * calls it, so a module unloaded afterwards leaves nothing behind). */
void secmem_trim(void);

/* Wipe that the compiler cannot elide. */
void secmem_wipe(void *p, size_t n);
/* Constant-time comparison: true when equal. Time depends only on n. */
bool ct_memeq(const void *a, const void *b, size_t n);

#endif
