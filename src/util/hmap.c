/* Open addressing with linear probing and tombstones; the table doubles at
 * 50% load (counting tombstones) so probes stay short. */
#include <stdlib.h>
#include "util/hmap.h"

#define TOMB UINT64_MAX

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void hmap_init(hmap *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = m->used = 0;
}

void hmap_free(hmap *m)
{
    free(m->keys);
    free(m->vals);
    hmap_init(m);
}

static size_t probe(const hmap *m, uint64_t key)
{
    size_t i = slot_of(key, m->cap);
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *hmap_get(const hmap *m, uint64_t key)
{
    if (m->cap == 0 || key == 0 || key == TOMB)
        return NULL;
    size_t i = probe(m, key);
    return m->keys[i] == key ? m->vals[i] : NULL;
}

static bool grow(hmap *m)
{
    /* Size for the live entries only: when tombstones fill the table
     * (handles are never reused, so a busy map leaves many), rehashing at
     * the same size clears them instead of doubling forever. */
    size_t ncap = 16;
    while ((m->n + 1) * 4 >= ncap)
        ncap *= 2;
    uint64_t *ok = m->keys;
    void **ov = m->vals;
    size_t ocap = m->cap;
    m->keys = calloc(ncap, sizeof(*m->keys));
    m->vals = calloc(ncap, sizeof(*m->vals));
    if (m->keys == NULL || m->vals == NULL) {
        free(m->keys);
        free(m->vals);
        m->keys = ok;
        m->vals = ov;
        return false;
    }
    m->cap = ncap;
    m->used = m->n;
    for (size_t i = 0; i < ocap; i++) {
        if (ok[i] != 0 && ok[i] != TOMB) {
            size_t j = probe(m, ok[i]);
            m->keys[j] = ok[i];
            m->vals[j] = ov[i];
        }
    }
    free(ok);
    free(ov);
    return true;
}

bool hmap_put(hmap *m, uint64_t key, void *val)
{
    if (key == 0 || key == TOMB)
        return false;
    if ((m->used + 1) * 2 > m->cap && !grow(m))
        return false;
    size_t i = probe(m, key);
    if (m->keys[i] != key) {
        m->keys[i] = key;
        m->n++;
        m->used++;
    }
    m->vals[i] = val;
    return true;
}

void *hmap_del(hmap *m, uint64_t key)
{
    if (m->cap == 0 || key == 0 || key == TOMB)
        return NULL;
    size_t i = probe(m, key);
    if (m->keys[i] != key)
        return NULL;
    void *v = m->vals[i];
    m->keys[i] = TOMB;
    m->vals[i] = NULL;
    m->n--;
    return v;
}

bool hmap_next(const hmap *m, size_t *pos, uint64_t *key, void **val)
{
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->keys[i] != 0 && m->keys[i] != TOMB) {
            *key = m->keys[i];
            *val = m->vals[i];
            *pos = i + 1;
            return true;
        }
    }
    *pos = m->cap;
    return false;
}
