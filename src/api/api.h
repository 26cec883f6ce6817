/* The entry layer. Every C_* function checks the caller's arguments the
 * standard tells it to check, then hands off to the core through one of the
 * prologues below, so that initialisation and session checks, locking and
 * (from the audit issue on) the audit record happen in one place. */
#ifndef CUSTOS_API_H
#define CUSTOS_API_H

#include "pkcs11.h"
#include "core/core.h"

/* Open a call on a session: initialised? handle valid? take the session's
 * reference and lock, and open the call's audit record of class `cls`
 * (AUD_NONE: no record). Declares `session *s` in the caller. */
#define API_SESSION_AUDIT(h, fn, cls)                                          \
    session *s;                                                                \
    audit_event api_ev_;                                                       \
    do {                                                                       \
        CK_RV enter_rv_ = api_enter((h), (fn), (cls), &api_ev_, &s);           \
        if (enter_rv_ != CKR_OK)                                               \
            return enter_rv_;                                                  \
    } while (0)

/* A call that leaves no record (info, find, attribute reads). */
#define API_SESSION(h) API_SESSION_AUDIT(h, NULL, AUD_NONE)
/* A call that is always recorded (login, key management). */
#define API_SESSION_AUDITED(h) API_SESSION_AUDIT(h, __func__, AUD_ALWAYS)

/* Close the call opened by API_SESSION* with its result: the audit record
 * is written (or aggregated) with it, then the session is released. */
#define API_RETURN(rv)                                                         \
    do {                                                                       \
        CK_RV leave_rv_ = core_audit_end(s, (rv));                             \
        core_session_release(s);                                               \
        return leave_rv_;                                                      \
    } while (0)

CK_RV api_enter(CK_SESSION_HANDLE h, const char *fn, aud_class cls, audit_event *ev, session **out);

/* A library-level call: initialised? */
#define API_LIBRARY()                                                          \
    do {                                                                       \
        CK_RV enter_rv_ = core_check_initialized();                            \
        if (enter_rv_ != CKR_OK)                                               \
            return enter_rv_;                                                  \
    } while (0)

/* Shared by cipher.c, sign.c and digest.c; fn names the C_* function for
 * the audit record. */
CK_RV api_op_init(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_MECHANISM_PTR m,
                  CK_OBJECT_HANDLE key);
CK_RV api_op_oneshot(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in,
                     CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV api_op_update(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR in,
                    CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV api_op_final(const char *fn, CK_SESSION_HANDLE h, mech_op kind, CK_BYTE_PTR out,
                   CK_ULONG_PTR outlen);

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
CK_RV C_CustosKeyRotate(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFamily, CK_ULONG ulFamilyLen,
                        CK_ULONG_PTR pulNewVersion);
CK_RV C_CustosKeyRotateDue(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulRotated);

/* A function Custos does not offer (yet): initialisation is still checked
 * first, so a client learns the right thing in the right order. */
#define API_NOT_SUPPORTED()                                                    \
    do {                                                                       \
        API_LIBRARY();                                                         \
        return CKR_FUNCTION_NOT_SUPPORTED;                                     \
    } while (0)

#endif
