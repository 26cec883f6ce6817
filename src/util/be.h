/* Big-endian integers in byte strings: the fixed layouts of Custos's file
 * formats (envelopes, DEK files), MAC inputs (the audit chain) and AADs (the
 * store's sealed attributes). One definition for all of them. */
#ifndef CUSTOS_UTIL_BE_H
#define CUSTOS_UTIL_BE_H

#include <stdint.h>

/* The low n bytes (1..8) of v into p[0..n), most significant first. */
static inline void be_put(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

/* The n bytes (1..8) at p as an unsigned integer, most significant first. */
static inline uint64_t be_get(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

#endif
