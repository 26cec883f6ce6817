/* PKCS#11 3.2 sec. 5.5, slot and token management. */
#include <string.h>
#include "api/api.h"

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
    API_LIBRARY();
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    return core_slot_list(tokenPresent != CK_FALSE, pSlotList, pulCount);
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
    API_LIBRARY();
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    return core_slot_info(slotID, pInfo);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
    API_LIBRARY();
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    return core_token_info(slotID, pInfo);
}

/* Legacy (unauthenticated) rows exist only when policy allows them. */
static bool offered(const mech_desc *d)
{
    return d != NULL && (!(d->flags & MECH_LEGACY) || core_config()->legacy_modes);
}

CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                         CK_ULONG_PTR pulCount)
{
    token *t;
    API_LIBRARY();
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    GUARD(core_token(slotID, &t));
    CK_ULONG n = 0;
    for (size_t i = 0; i < mech_count(); i++) {
        const mech_desc *d = mech_at(i);
        if (!offered(d))
            continue;
        if (pMechanismList != NULL && n < *pulCount)
            pMechanismList[n] = d->type;
        n++;
    }
    CK_RV rv = (pMechanismList != NULL && n > *pulCount) ? CKR_BUFFER_TOO_SMALL : CKR_OK;
    *pulCount = n;
    return rv;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
    token *t;
    API_LIBRARY();
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    GUARD(core_token(slotID, &t));
    const mech_desc *d = mech_find(type);
    if (!offered(d))
        return CKR_MECHANISM_INVALID;
    pInfo->ulMinKeySize = d->min_key;
    pInfo->ulMaxKeySize = d->max_key;
    pInfo->flags = d->info_flags;
    return CKR_OK;
}

CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
    API_LIBRARY();
    /* No protected authentication path: the PIN must be given. */
    if (pPin == NULL || pLabel == NULL)
        return CKR_ARGUMENTS_BAD;
    return core_init_token(slotID, pPin, ulPinLen, pLabel);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
    API_SESSION_AUDITED(hSession);
    if (pPin == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_init_pin(s, pPin, ulPinLen));
}

CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
               CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
    API_SESSION_AUDITED(hSession);
    if (pOldPin == NULL || pNewPin == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_set_pin(s, pOldPin, ulOldLen, pNewPin, ulNewLen));
}

CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
    API_LIBRARY();
    if (pSlot == NULL || pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    /* Soft tokens are never inserted or removed. */
    if (flags & CKF_DONT_BLOCK)
        return CKR_NO_EVENT;
    return CKR_FUNCTION_NOT_SUPPORTED;
}
