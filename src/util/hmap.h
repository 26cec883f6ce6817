/* A small open-addressing hash map from 64-bit keys (handles) to pointers,
 * for the session table and the object caches. Not thread-safe: the owner
 * holds its lock. Key 0 is reserved (CK_INVALID_HANDLE). */
#ifndef CUSTOS_UTIL_HMAP_H
#define CUSTOS_UTIL_HMAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct hmap {
    uint64_t *keys;
    void **vals;
    size_t cap;   /* power of two, or 0 */
    size_t n;     /* live entries */
    size_t used;  /* live + tombstones */
} hmap;

void hmap_init(hmap *m);
void hmap_free(hmap *m);
void *hmap_get(const hmap *m, uint64_t key);
/* Insert or replace; false on allocation failure. */
bool hmap_put(hmap *m, uint64_t key, void *val);
/* Remove and return the value, or NULL. */
void *hmap_del(hmap *m, uint64_t key);
/* Iterate: start with *pos = 0; returns false at the end. */
bool hmap_next(const hmap *m, size_t *pos, uint64_t *key, void **val);

#endif
