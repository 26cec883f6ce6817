/* PKCS#11 3.2 sec. 5.6, session management and login. */
#include <string.h>
#include "api/api.h"

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                    CK_SESSION_HANDLE_PTR phSession)
{
    API_LIBRARY();
    if (phSession == NULL)
        return CKR_ARGUMENTS_BAD;
    /* Custos never calls back: notifications are for tokens with
     * operations that can be cancelled from the device side. */
    (void)pApplication;
    (void)Notify;
    return core_open_session(slotID, flags, phSession);
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
    API_LIBRARY();
    return core_close_session(hSession);
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
    API_LIBRARY();
    return core_close_all_sessions(slotID);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
    API_SESSION(hSession);
    if (pInfo == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_session_info(s, pInfo));
}

/* Operation state would carry key schedules out of the token: refused. */
CK_RV C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG_PTR pulOperationStateLen)
{
    API_SESSION(hSession);
    if (pulOperationStateLen == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    (void)pOperationState;
    API_RETURN(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                          CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                          CK_OBJECT_HANDLE hAuthenticationKey)
{
    API_SESSION(hSession);
    if (pOperationState == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    (void)ulOperationStateLen;
    (void)hEncryptionKey;
    (void)hAuthenticationKey;
    API_RETURN(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
              CK_ULONG ulPinLen)
{
    API_SESSION_AUDITED(hSession);
    if (pPin == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_login(s, userType, pPin, ulPinLen, NULL));
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
    API_SESSION_AUDITED(hSession);
    API_RETURN(core_logout(s));
}

CK_RV C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                  CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
    char name[64];
    API_SESSION_AUDITED(hSession);
    if (pPin == NULL || pUsername == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    /* The name is UTF-8 of the given length, not NUL-terminated. A name
     * no user can have is a wrong login, not a malformed call. */
    if (ulUsernameLen == 0 || ulUsernameLen >= sizeof(name) ||
        memchr(pUsername, '\0', ulUsernameLen) != NULL) {
        name[0] = '*';
        name[1] = '\0';
    } else {
        memcpy(name, pUsername, ulUsernameLen);
        name[ulUsernameLen] = '\0';
    }
    API_RETURN(core_login(s, userType, pPin, ulPinLen, name));
}

CK_RV C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
    static const struct {
        CK_FLAGS flag;
        mech_op kind;
    } map[] = {
        { CKF_ENCRYPT, MECH_OP_ENCRYPT }, { CKF_DECRYPT, MECH_OP_DECRYPT },
        { CKF_SIGN, MECH_OP_SIGN },       { CKF_VERIFY, MECH_OP_VERIFY },
        { CKF_DIGEST, MECH_OP_DIGEST },
    };
    API_SESSION(hSession);
    /* sec. 5.6 C_SessionCancel: end the operations the flags name. */
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (flags & map[i].flag)
            op_end(&s->ops[map[i].kind]);
    CK_RV rv = CKR_OK;
    if ((flags & CKF_FIND_OBJECTS) && s->find.active)
        rv = core_find_final(s);
    API_RETURN(rv);
}

CK_RV C_GetSessionValidationFlags(CK_SESSION_HANDLE hSession, CK_SESSION_VALIDATION_FLAGS_TYPE type,
                                  CK_FLAGS_PTR pFlags)
{
    API_SESSION(hSession);
    if (pFlags == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    (void)type;
    /* Custos has no validated (e.g. FIPS) mode to report. */
    *pFlags = 0;
    API_RETURN(CKR_OK);
}
