/* The PKCS#11 two-call rule for whole values (sec. 5.2): a NULL output asks
 * for the length, a short buffer gets CKR_BUFFER_TOO_SMALL and the length,
 * otherwise the value is copied and *out_len says how much was written. */
#include "util/buf.h"

#include <string.h>

CK_RV out_copy(const void *src, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    if (out_len == NULL)
        return CKR_ARGUMENTS_BAD;
    switch (out_prepare(len, out, out_len)) {
    case OUT_SIZE_ONLY:
        return CKR_OK;
    case OUT_TOO_SMALL:
        return CKR_BUFFER_TOO_SMALL;
    case OUT_WRITE:
        break;
    }
    if (len > 0)
        memcpy(out, src, len);
    *out_len = (CK_ULONG)len;
    return CKR_OK;
}
