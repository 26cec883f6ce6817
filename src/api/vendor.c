/* The "Vendor Custos" interface (pkcs11/custos.h): user management for
 * admins, through the same entry prologue as every standard function. */
#include "api/api.h"

CK_RV C_CustosUserAdd(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                      CK_ULONG roles, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
    API_SESSION_AUDITED(hSession);
    if (pName == NULL || pPin == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_add(s, pName, ulNameLen, roles, pPin, ulPinLen));
}

CK_RV C_CustosUserRemove(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen)
{
    API_SESSION_AUDITED(hSession);
    if (pName == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_remove(s, pName, ulNameLen));
}

CK_RV C_CustosUserSetRoles(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                           CK_ULONG roles)
{
    API_SESSION_AUDITED(hSession);
    if (pName == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_set_roles(s, pName, ulNameLen, roles));
}

CK_RV C_CustosUserSetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                         CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
    API_SESSION_AUDITED(hSession);
    if (pName == NULL || pPin == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_set_pin(s, pName, ulNameLen, pPin, ulPinLen));
}

CK_RV C_CustosUserEnable(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                         CK_BBOOL enabled)
{
    API_SESSION_AUDITED(hSession);
    if (pName == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_enable(s, pName, ulNameLen, enabled != CK_FALSE));
}

CK_RV C_CustosUserList(CK_SESSION_HANDLE hSession, CK_CUSTOS_USER_INFO_PTR pList, CK_ULONG_PTR pulCount)
{
    API_SESSION(hSession);
    if (pulCount == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_user_list(s, pList, pulCount));
}

CK_RV C_CustosKeyRotate(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFamily, CK_ULONG ulFamilyLen,
                        CK_ULONG_PTR pulNewVersion)
{
    API_SESSION_AUDITED(hSession);
    if (pFamily == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_key_rotate(s, pFamily, ulFamilyLen, pulNewVersion));
}

CK_RV C_CustosKeyRotateDue(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulRotated)
{
    API_SESSION_AUDITED(hSession);
    if (pulRotated == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_key_rotate_due(s, pulRotated));
}
