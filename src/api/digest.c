/* PKCS#11 3.2 sec. 5.10, message digesting. */
#include "api/api.h"

CK_RV C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
    return api_op_init(__func__, hSession, MECH_OP_DIGEST, pMechanism, CK_INVALID_HANDLE);
}

CK_RV C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
               CK_ULONG_PTR pulDigestLen)
{
    return api_op_oneshot(__func__, hSession, MECH_OP_DIGEST, pData, ulDataLen, pDigest, pulDigestLen);
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    return api_op_update(__func__, hSession, MECH_OP_DIGEST, pPart, ulPartLen, NULL, NULL);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
    API_SESSION_AUDITED(hSession);
    API_RETURN(core_digest_key(s, hKey));
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
    return api_op_final(__func__, hSession, MECH_OP_DIGEST, pDigest, pulDigestLen);
}
