/* The entry layer. Every C_* function checks the caller's arguments the
 * standard tells it to check, then hands off to the core through one of the
 * prologues below, so that initialisation and session checks, locking and
 * (from the audit issue on) the audit record happen in one place. */
#ifndef CUSTOS_API_H
#define CUSTOS_API_H

#include "pkcs11.h"
#include "core/core.h"

/* Open a call on a session: initialised? handle valid? take the session's
 * reference and lock. Declares `session *s` in the caller. */
#define API_SESSION(h)                                                         \
    session *s;                                                                \
    do {                                                                       \
        CK_RV enter_rv_ = core_session_acquire((h), &s);                        \
        if (enter_rv_ != CKR_OK)                                               \
            return enter_rv_;                                                  \
    } while (0)

/* Close the call opened by API_SESSION with its result. */
#define API_RETURN(rv)                                                         \
    do {                                                                       \
        CK_RV leave_rv_ = (rv);                                                \
        core_session_release(s);                                               \
        return leave_rv_;                                                      \
    } while (0)

/* A library-level call: initialised? */
#define API_LIBRARY()                                                          \
    do {                                                                       \
        CK_RV enter_rv_ = core_check_initialized();                            \
        if (enter_rv_ != CKR_OK)                                               \
            return enter_rv_;                                                  \
    } while (0)

/* Shared by cipher.c, sign.c and digest.c. */
CK_RV api_op_init(CK_SESSION_HANDLE h, mech_op kind, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key);
CK_RV api_op_oneshot(CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                     CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV api_op_update(CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                    CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV api_op_final(CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR out, CK_ULONG_PTR outlen);

/* The "Vendor Custos" interface (api/vendor.c). */
CK_RV C_CustosUserAdd(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                      CK_ULONG roles, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
CK_RV C_CustosUserRemove(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen);
CK_RV C_CustosUserSetRoles(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                           CK_ULONG roles);
CK_RV C_CustosUserSetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                         CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
CK_RV C_CustosUserEnable(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                         CK_BBOOL enabled);
CK_RV C_CustosUserList(CK_SESSION_HANDLE hSession, CK_CUSTOS_USER_INFO_PTR pList, CK_ULONG_PTR pulCount);

/* A function Custos does not offer (yet): initialisation is still checked
 * first, so a client learns the right thing in the right order. */
#define API_NOT_SUPPORTED()                                                    \
    do {                                                                       \
        API_LIBRARY();                                                         \
        return CKR_FUNCTION_NOT_SUPPORTED;                                     \
    } while (0)

#endif
