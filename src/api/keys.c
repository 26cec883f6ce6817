/* PKCS#11 3.2 sec. 5.14-5.15, key management and random numbers. */
#include "api/api.h"

/* Does a template ask for a token object? Keys that live only in a session
 * (a DEK generated, wrapped or unwrapped for one record: the envelope data
 * path) are recorded like data operations, aggregated (docs/audit.md);
 * token keys are recorded one by one. */
static aud_class key_class(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; t != NULL && i < n; i++)
        if (t[i].type == CKA_TOKEN && t[i].pValue != NULL && t[i].ulValueLen == sizeof(CK_BBOOL) &&
            *(const CK_BBOOL *)t[i].pValue != CK_FALSE)
            return AUD_ALWAYS;
    return AUD_DATA;
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
                    CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
    API_SESSION_AUDIT(hSession, __func__, key_class(pTemplate, ulCount));
    if (pMechanism == NULL || (pTemplate == NULL && ulCount > 0) || phKey == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_generate_key(s, pMechanism, pTemplate, ulCount, phKey));
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                        CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                        CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
    API_SESSION_AUDITED(hSession);
    if (pMechanism == NULL || phPublicKey == NULL || phPrivateKey == NULL ||
        (pPublicKeyTemplate == NULL && ulPublicKeyAttributeCount > 0) ||
        (pPrivateKeyTemplate == NULL && ulPrivateKeyAttributeCount > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    /* No asymmetric key type yet: every mechanism is unknown here. */
    API_RETURN(CKR_MECHANISM_INVALID);
}

CK_RV C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
                CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_DATA);
    if (pMechanism == NULL || pulWrappedKeyLen == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_wrap_key(s, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen));
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                  CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,
                  CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
    API_SESSION_AUDIT(hSession, __func__, key_class(pTemplate, ulAttributeCount));
    if (pMechanism == NULL || pWrappedKey == NULL || phKey == NULL ||
        (pTemplate == NULL && ulAttributeCount > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_unwrap_key(s, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate,
                               ulAttributeCount, phKey));
}

CK_RV C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
                  CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
    API_SESSION_AUDITED(hSession);
    if (pMechanism == NULL || (pTemplate == NULL && ulAttributeCount > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    (void)hBaseKey;
    (void)phKey;
    /* No derivation mechanism yet. */
    API_RETURN(CKR_MECHANISM_INVALID);
}

CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
    API_SESSION(hSession);
    if (pSeed == NULL && ulSeedLen > 0)
        API_RETURN(CKR_ARGUMENTS_BAD);
    /* OpenSSL's DRBG reseeds itself from the OS; a caller's seed is not
     * needed and is not taken. */
    API_RETURN(CKR_RANDOM_SEED_NOT_SUPPORTED);
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)
{
    API_SESSION(hSession);
    if (RandomData == NULL && ulRandomLen > 0)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_random(RandomData, ulRandomLen));
}
