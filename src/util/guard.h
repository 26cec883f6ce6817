/* Guard macros: keep the success path straight down and every CK_RV checked.
 * Modelled on s2n-tls's GUARD/ENSURE; a function that owns resources sets rv
 * and jumps to its single `out:` label, where it wipes and frees. */
#ifndef CUSTOS_UTIL_GUARD_H
#define CUSTOS_UTIL_GUARD_H

#include "pkcs11.h"

#define CUSTOS_WUR __attribute__((warn_unused_result))
#define CUSTOS_UNUSED __attribute__((unused))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Return the callee's CK_RV unless it is CKR_OK. */
#define GUARD(expr)                                                            \
    do {                                                                       \
        CK_RV guard_rv_ = (expr);                                              \
        if (guard_rv_ != CKR_OK)                                               \
            return guard_rv_;                                                  \
    } while (0)

/* Return `code` unless `cond` holds. */
#define ENSURE(cond, code)                                                     \
    do {                                                                       \
        if (!(cond))                                                           \
            return (code);                                                     \
    } while (0)

/* Variants for functions with an `out:` label and a local `CK_RV rv`. */
#define GUARD_OUT(expr)                                                        \
    do {                                                                       \
        rv = (expr);                                                           \
        if (rv != CKR_OK)                                                      \
            goto out;                                                          \
    } while (0)

#define ENSURE_OUT(cond, code)                                                 \
    do {                                                                       \
        if (!(cond)) {                                                         \
            rv = (code);                                                       \
            goto out;                                                          \
        }                                                                      \
    } while (0)

#endif
