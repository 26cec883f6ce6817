/* PKCS#11 3.0 sec. 5.13-5.17, message-based encryption and decryption
 * (core/messages.c), for AES-GCM with token-generated IVs and for
 * ChaCha20-Poly1305. Message-based signing and verification are not
 * offered (no mechanism lists CKF_MESSAGE_SIGN): CKR_FUNCTION_NOT_SUPPORTED. */
#include "api/api.h"

CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_FAILURE);
    if (pMechanism == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_msg_init(s, true, pMechanism, hKey));
}

CK_RV C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_DATA);
    if (pParameter == NULL || pulCiphertextLen == NULL || (pPlaintext == NULL && ulPlaintextLen > 0) ||
        (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_encrypt_message(s, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen,
                                    pPlaintext, ulPlaintextLen, pCiphertext, pulCiphertextLen));
}

CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_FAILURE);
    if (pParameter == NULL || (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_message_begin(s, true, pParameter, ulParameterLen, pAssociatedData,
                                  ulAssociatedDataLen));
}

CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)
{
    API_SESSION_AUDIT(hSession, __func__, (flags & CKF_END_OF_MESSAGE) ? AUD_DATA : AUD_FAILURE);
    if (pParameter == NULL || pulCiphertextPartLen == NULL || (pPlaintextPart == NULL && ulPlaintextPartLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_message_next(s, true, pParameter, ulParameterLen, pPlaintextPart, ulPlaintextPartLen,
                                 pCiphertextPart, pulCiphertextPartLen, flags));
}

CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE hSession)
{
    API_SESSION(hSession);
    API_RETURN(core_msg_final(s, true));
}

CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_FAILURE);
    if (pMechanism == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_msg_init(s, false, pMechanism, hKey));
}

CK_RV C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext, CK_ULONG_PTR pulPlaintextLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_DATA);
    if (pParameter == NULL || pulPlaintextLen == NULL || (pCiphertext == NULL && ulCiphertextLen > 0) ||
        (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_decrypt_message(s, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen,
                                    pCiphertext, ulCiphertextLen, pPlaintext, pulPlaintextLen));
}

CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)
{
    API_SESSION_AUDIT(hSession, __func__, AUD_FAILURE);
    if (pParameter == NULL || (pAssociatedData == NULL && ulAssociatedDataLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_message_begin(s, false, pParameter, ulParameterLen, pAssociatedData,
                                  ulAssociatedDataLen));
}

CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)
{
    API_SESSION_AUDIT(hSession, __func__, (flags & CKF_END_OF_MESSAGE) ? AUD_DATA : AUD_FAILURE);
    if (pParameter == NULL || pulPlaintextPartLen == NULL || (pCiphertextPart == NULL && ulCiphertextPartLen > 0))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_message_next(s, false, pParameter, ulParameterLen, pCiphertextPart, ulCiphertextPartLen,
                                 pPlaintextPart, pulPlaintextPartLen, flags));
}

CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE hSession)
{
    API_SESSION(hSession);
    API_RETURN(core_msg_final(s, false));
}

CK_RV C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    API_NOT_SUPPORTED();
}

CK_RV C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_MessageSignFinal(CK_SESSION_HANDLE hSession)
{
    API_NOT_SUPPORTED();
}

CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    API_NOT_SUPPORTED();
}

CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE hSession)
{
    API_NOT_SUPPORTED();
}
