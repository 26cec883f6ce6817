/* Output buffers and PKCS#11's two-call rule (sec. 5.2: a NULL output
 * pointer asks for the length; a short buffer gives CKR_BUFFER_TOO_SMALL and
 * the needed length, and leaves the operation active). */
#ifndef CUSTOS_UTIL_BUF_H
#define CUSTOS_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "pkcs11.h"

/* A byte string with its length. Owned or borrowed as the owner documents. */
typedef struct buf {
    uint8_t *data;
    size_t len;
} buf;

typedef enum out_check {
    OUT_WRITE = 0,  /* the caller's buffer is large enough: do the work */
    OUT_SIZE_ONLY,  /* pOut was NULL: *pulOutLen now holds the size, CKR_OK */
    OUT_TOO_SMALL,  /* *pulOutLen now holds the size, CKR_BUFFER_TOO_SMALL */
} out_check;

/* Decide what a call producing `need` bytes into (out, *out_len) does.
 * Sets *out_len to need for the two non-writing outcomes. */
static inline out_check out_prepare(size_t need, const void *out, CK_ULONG *out_len)
{
    if (out == NULL) {
        *out_len = (CK_ULONG)need;
        return OUT_SIZE_ONLY;
    }
    if (*out_len < need) {
        *out_len = (CK_ULONG)need;
        return OUT_TOO_SMALL;
    }
    return OUT_WRITE;
}

/* Copy a whole value out under the two-call rule. */
CK_RV out_copy(const void *src, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

#endif
