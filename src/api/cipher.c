/* PKCS#11 3.2 sec. 5.8-5.9, encryption and decryption, and the shared
 * entry helpers of every single- and multi-part operation. */
#include "api/api.h"

/* sec. 5.2: a data pointer may be NULL only for an empty input. */
#define DATA_OK(p, n) ((p) != NULL || (n) == 0)

CK_RV api_enter(CK_SESSION_HANDLE h, const char *fn, aud_class cls, audit_event *ev, session **out)
{
    session *s;
    GUARD(core_session_acquire(h, &s));
    CK_RV rv = cls == AUD_NONE ? CKR_OK : core_audit_begin(s, fn, cls, ev);
    if (cls == AUD_NONE)
        s->ev = NULL;
    if (rv != CKR_OK) {
        core_session_release(s);
        return rv;
    }
    *out = s;
    return CKR_OK;
}

/* Digests use no key: they leave no record. */
static aud_class data_class(mech_op kind, aud_class cls)
{
    return kind == MECH_OP_DIGEST ? AUD_NONE : cls;
}

CK_RV api_op_init(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_MECHANISM_PTR m,
                  CK_OBJECT_HANDLE key)
{
    API_SESSION_AUDIT(h, fn, data_class(kind, AUD_FAILURE));
    if (m == NULL) {
        /* PKCS#11 3.0 sec. 5.8 and the like: ...Init with a NULL
         * mechanism ends the active operation of that kind. */
        if (s->ops[kind].state == OP_IDLE)
            API_RETURN(CKR_OPERATION_NOT_INITIALIZED);
        op_end(&s->ops[kind]);
        API_RETURN(CKR_OK);
    }
    API_RETURN(core_op_init(s, kind, m, key));
}

/* A call that fails its argument checks still ends the operation, like
 * any failed call (sec. 5.2). */
static CK_RV bad_args(session *s, mech_op kind)
{
    if (s->ops[kind].state != OP_IDLE)
        op_end(&s->ops[kind]);
    return CKR_ARGUMENTS_BAD;
}

CK_RV api_op_oneshot(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in,
                     CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    API_SESSION_AUDIT(h, fn, data_class(kind, AUD_DATA));
    if (!DATA_OK(in, inlen) || outlen == NULL)
        API_RETURN(bad_args(s, kind));
    API_RETURN(core_op_oneshot(s, kind, in, inlen, out, outlen));
}

CK_RV api_op_update(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in,
                    CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    API_SESSION_AUDIT(h, fn, data_class(kind, AUD_FAILURE));
    bool has_out = kind == MECH_OP_ENCRYPT || kind == MECH_OP_DECRYPT;
    if (!DATA_OK(in, inlen) || (has_out && outlen == NULL))
        API_RETURN(bad_args(s, kind));
    API_RETURN(core_op_update(s, kind, in, inlen, out, outlen));
}

CK_RV api_op_final(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR out,
                   CK_ULONG_PTR outlen)
{
    API_SESSION_AUDIT(h, fn, data_class(kind, AUD_DATA));
    if (outlen == NULL)
        API_RETURN(bad_args(s, kind));
    API_RETURN(core_op_final(s, kind, out, outlen));
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    return api_op_init(__func__, hSession, MECH_OP_ENCRYPT, pMechanism, hKey);
}

CK_RV C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
    return api_op_oneshot(__func__, hSession, MECH_OP_ENCRYPT, pData, ulDataLen, pEncryptedData,
                          pulEncryptedDataLen);
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                      CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
    return api_op_update(__func__, hSession, MECH_OP_ENCRYPT, pPart, ulPartLen, pEncryptedPart,
                         pulEncryptedPartLen);
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
                     CK_ULONG_PTR pulLastEncryptedPartLen)
{
    return api_op_final(__func__, hSession, MECH_OP_ENCRYPT, pLastEncryptedPart, pulLastEncryptedPartLen);
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
    return api_op_init(__func__, hSession, MECH_OP_DECRYPT, pMechanism, hKey);
}

CK_RV C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen,
                CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
    return api_op_oneshot(__func__, hSession, MECH_OP_DECRYPT, pEncryptedData, ulEncryptedDataLen, pData,
                          pulDataLen);
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                      CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
    return api_op_update(__func__, hSession, MECH_OP_DECRYPT, pEncryptedPart, ulEncryptedPartLen, pPart,
                         pulPartLen);
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)
{
    return api_op_final(__func__, hSession, MECH_OP_DECRYPT, pLastPart, pulLastPartLen);
}
