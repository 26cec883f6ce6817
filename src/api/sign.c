/* PKCS#11 3.2 sec. 5.11-5.13, signing and MACing, verification. */
#include "api/api.h"

CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    return api_op_init(__func__, hSession, MECH_OP_SIGN, pMechanism, hKey);
}

CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
             CK_ULONG_PTR pulSignatureLen)
{
    return api_op_oneshot(__func__, hSession, MECH_OP_SIGN, pData, ulDataLen, pSignature, pulSignatureLen);
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    return api_op_update(__func__, hSession, MECH_OP_SIGN, pPart, ulPartLen, NULL, NULL);
}

CK_RV C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    return api_op_final(__func__, hSession, MECH_OP_SIGN, pSignature, pulSignatureLen);
}

/* No Custos mechanism recovers data from a signature. */
CK_RV C_SignRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    API_SESSION(hSession);
    (void)hKey;
    API_RETURN(pMechanism == NULL ? CKR_ARGUMENTS_BAD : CKR_MECHANISM_INVALID);
}

CK_RV C_SignRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                    CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    API_SESSION(hSession);
    (void)pData;
    (void)ulDataLen;
    (void)pSignature;
    API_RETURN(pulSignatureLen == NULL ? CKR_ARGUMENTS_BAD : CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    return api_op_init(__func__, hSession, MECH_OP_VERIFY, pMechanism, hKey);
}

CK_RV C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
               CK_ULONG ulSignatureLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_DATA);
    if ((pData == NULL && ulDataLen > 0) || pSignature == NULL) {
        op_end(&s->ops[MECH_OP_VERIFY]);
        API_RETURN(CKR_ARGUMENTS_BAD);
    }
    API_RETURN(core_verify(s, pData, ulDataLen, pSignature, ulSignatureLen, true));
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
    return api_op_update(__func__, hSession, MECH_OP_VERIFY, pPart, ulPartLen, NULL, NULL);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_DATA);
    if (pSignature == NULL) {
        op_end(&s->ops[MECH_OP_VERIFY]);
        API_RETURN(CKR_ARGUMENTS_BAD);
    }
    API_RETURN(core_verify(s, NULL, 0, pSignature, ulSignatureLen, false));
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                          CK_OBJECT_HANDLE hKey)
{
    API_SESSION(hSession);
    (void)hKey;
    API_RETURN(pMechanism == NULL ? CKR_ARGUMENTS_BAD : CKR_MECHANISM_INVALID);
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen,
                      CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
    API_SESSION(hSession);
    (void)pSignature;
    (void)ulSignatureLen;
    (void)pData;
    API_RETURN(pulDataLen == NULL ? CKR_ARGUMENTS_BAD : CKR_OPERATION_NOT_INITIALIZED);
}
