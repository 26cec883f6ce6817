/* Functions Custos does not offer yet, or that the standard keeps only for
 * compatibility: each exists, checks initialisation, and says so with the
 * code the standard gives. Dual-function operations (sec. 5.16), legacy
 * parallel functions (sec. 5.19), the 3.2 additions not built yet; and
 * the 3.2 authenticated key wrap (core/messages.c). */
#include "api/api.h"

CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                            CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                            CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                          CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                            CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
    API_NOT_SUPPORTED();
}

/* sec. 5.19: legacy functions; a library without parallel sessions
 * answers CKR_FUNCTION_NOT_PARALLEL. */
CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
    API_LIBRARY();
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession)
{
    API_LIBRARY();
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_EncapsulateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hPublicKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount,
                       CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey)
{
    API_NOT_SUPPORTED();
}

CK_RV C_DecapsulateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                       CK_OBJECT_HANDLE hPrivateKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount,
                       CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifySignatureInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                            CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifySignature(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifySignatureUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifySignatureFinal(CK_SESSION_HANDLE hSession)
{
    API_NOT_SUPPORTED();
}

CK_RV C_AsyncComplete(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName,
                      CK_ASYNC_DATA_PTR pResult)
{
    API_NOT_SUPPORTED();
}

CK_RV C_AsyncGetID(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG_PTR pulID)
{
    API_NOT_SUPPORTED();
}

CK_RV C_AsyncJoin(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG ulID,
                  CK_BYTE_PTR pData, CK_ULONG ulData)
{
    API_NOT_SUPPORTED();
}

CK_RV C_WrapKeyAuthenticated(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                             CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey,
                             CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen,
                             CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
    API_SESSION_AUDITED(hSession);
    if (pMechanism == NULL || pulWrappedKeyLen == NULL || (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_wrap_authenticated(s, pMechanism, hWrappingKey, hKey, pAssociatedData,
                                       ulAssociatedDataLen, pWrappedKey, pulWrappedKeyLen));
}

CK_RV C_UnwrapKeyAuthenticated(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                               CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey,
                               CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate,
                               CK_ULONG ulAttributeCount, CK_BYTE_PTR pAssociatedData,
                               CK_ULONG ulAssociatedDataLen, CK_OBJECT_HANDLE_PTR phKey)
{
    API_SESSION_AUDITED(hSession);
    if (pMechanism == NULL || pWrappedKey == NULL || phKey == NULL ||
        (pTemplate == NULL && ulAttributeCount > 0) || (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_unwrap_authenticated(s, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen,
                                         pTemplate, ulAttributeCount, pAssociatedData, ulAssociatedDataLen,
                                         phKey));
}
