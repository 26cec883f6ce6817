/* Sealing of secrets at rest: attribute values under the token master key
 * and the master key under each user's PIN-derived key, both AES-256-GCM
 * (crypto_seal) with an AAD that names where the blob belongs, so a blob
 * copied to another object, attribute, user or token fails to open. */
#include <string.h>
#include "store/internal.h"
#include "util/be.h"
#include "util/secmem.h"

#define ATTR_TAG "custos-attr-v1"
#define MK_TAG "custos-mk-v1"
#define SERIAL_LEN 16
#define ATTR_AAD_LEN (sizeof(ATTR_TAG) - 1 + SERIAL_LEN + 8 + 8)
#define MK_AAD_MAX (sizeof(MK_TAG) - 1 + SERIAL_LEN + sizeof(((store_user *)0)->name))

/* "custos-attr-v1" || serial (16 ASCII) || handle (BE64) || type (BE64).
 * Every field has a fixed length, so no two placements share an AAD. */
static CK_RV attr_aad(const char *serial, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                      uint8_t aad[ATTR_AAD_LEN])
{
    /* A file without a token row has no serial to bind secrets to. */
    ENSURE(strlen(serial) == SERIAL_LEN, CKR_TOKEN_NOT_RECOGNIZED);
    memcpy(aad, ATTR_TAG, sizeof(ATTR_TAG) - 1);
    memcpy(aad + sizeof(ATTR_TAG) - 1, serial, SERIAL_LEN);
    be_put(aad + sizeof(ATTR_TAG) - 1 + SERIAL_LEN, (uint64_t)h, 8);
    be_put(aad + sizeof(ATTR_TAG) - 1 + SERIAL_LEN + 8, (uint64_t)type, 8);
    return CKR_OK;
}

/* "custos-mk-v1" || serial (16 ASCII) || user name (the rest). */
static CK_RV mk_aad(const char *serial, const char *user, uint8_t aad[MK_AAD_MAX],
                    size_t *len)
{
    size_t ulen;
    ENSURE(serial != NULL && user != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(strnlen(serial, SERIAL_LEN + 1) == SERIAL_LEN, CKR_ARGUMENTS_BAD);
    ulen = strnlen(user, sizeof(((store_user *)0)->name));
    ENSURE(ulen > 0 && ulen < sizeof(((store_user *)0)->name), CKR_ARGUMENTS_BAD);
    memcpy(aad, MK_TAG, sizeof(MK_TAG) - 1);
    memcpy(aad + sizeof(MK_TAG) - 1, serial, SERIAL_LEN);
    memcpy(aad + sizeof(MK_TAG) - 1 + SERIAL_LEN, user, ulen);
    *len = sizeof(MK_TAG) - 1 + SERIAL_LEN + ulen;
    return CKR_OK;
}

CK_RV store_seal_attr(const char *serial, const uint8_t *mk, CK_OBJECT_HANDLE h,
                      CK_ATTRIBUTE_TYPE type, const uint8_t *pt, size_t len,
                      uint8_t *out)
{
    uint8_t aad[ATTR_AAD_LEN];
    GUARD(attr_aad(serial, h, type, aad));
    return crypto_seal(mk, aad, sizeof(aad), pt, len, out);
}

/* No lock: this reads only st->serial, fixed once the store is open, and
 * never touches the connection; taking the lock would queue every unseal
 * behind whatever commit another thread is syncing to disk. */
CK_RV store_unseal(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                   CK_ATTRIBUTE_TYPE type, const uint8_t *blob, size_t len,
                   uint8_t *out)
{
    uint8_t aad[ATTR_AAD_LEN];
    ENSURE(st != NULL && mk != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(blob != NULL && len >= CRYPTO_SEAL_OVERHEAD, CKR_ENCRYPTED_DATA_INVALID);
    GUARD(attr_aad(st->serial, h, type, aad));
    return crypto_unseal(mk, aad, sizeof(aad), blob, len, out);
}

CK_RV store_seal_mk(const char *serial, const char *user, const uint8_t *kek,
                    const uint8_t mk[STORE_MK_LEN],
                    uint8_t out[STORE_SEALED_MK_LEN])
{
    uint8_t aad[MK_AAD_MAX];
    size_t aadlen;
    ENSURE(kek != NULL && mk != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    GUARD(mk_aad(serial, user, aad, &aadlen));
    return crypto_seal(kek, aad, aadlen, mk, STORE_MK_LEN, out);
}

CK_RV store_unseal_mk(const char *serial, const char *user, const uint8_t *kek,
                      const uint8_t in[STORE_SEALED_MK_LEN],
                      uint8_t mk[STORE_MK_LEN])
{
    uint8_t aad[MK_AAD_MAX];
    size_t aadlen;
    CK_RV rv;
    ENSURE(kek != NULL && in != NULL && mk != NULL, CKR_ARGUMENTS_BAD);
    GUARD(mk_aad(serial, user, aad, &aadlen));
    rv = crypto_unseal(kek, aad, aadlen, in, STORE_SEALED_MK_LEN, mk);
    if (rv == CKR_OK)
        return CKR_OK;
    secmem_wipe(mk, STORE_MK_LEN);
    /* A wrong PIN derives a wrong kek, which is exactly an authentication
     * failure here (PKCS#11 3.2 sec. 5.6, C_Login: CKR_PIN_INCORRECT). */
    return rv == CKR_ENCRYPTED_DATA_INVALID ? CKR_PIN_INCORRECT : rv;
}
